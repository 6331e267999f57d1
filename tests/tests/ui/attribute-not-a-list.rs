use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version]
    rip: u64,
    #[version = "2"]
    rsp: u64,
    #[version(start, end(3))]
    rflags: u64,
}

fn main() {}
