use versionize::prelude::Versionize;

#[derive(Versionize)]
#[version(start = 2)]
struct Regs {
    rip: u64,
}

fn main() {}
