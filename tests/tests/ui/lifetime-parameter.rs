use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Borrowed<'a> {
    name: &'a str,
}

fn main() {}
