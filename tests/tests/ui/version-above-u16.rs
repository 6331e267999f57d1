use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(end = 65536)]
    rip: u64,
}

fn main() {}
