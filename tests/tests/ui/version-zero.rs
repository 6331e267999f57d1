use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 0)]
    rip: u64,
}

fn main() {}
