use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 2, end = 4)]
    #[version(start = 3)]
    rip: u64,
}

fn main() {}
