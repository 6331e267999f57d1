use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = -1)]
    rip: u64,
}

fn main() {}
