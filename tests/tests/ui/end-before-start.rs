use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 3, end = 2)]
    rip: u64,
    #[version(start = 2, end = 2)]
    rsp: u64,
}

fn main() {}
