use versionize::prelude::Versionize;

#[derive(Versionize)]
enum Never {}

fn main() {}
