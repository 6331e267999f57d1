use versionize::Versionize;

#[derive(Versionize)]
enum Never {}

fn main() {}
