use versionize::Versionize;

#[derive(Versionize)]
struct Borrowed<'a> {
    name: &'a str,
}

fn main() {}
