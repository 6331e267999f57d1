use versionize::prelude::Versionize;

const TWO: u16 = 2;

#[derive(Versionize)]
struct Regs {
    #[version(start = "2")]
    rip: u64,
    #[version(start = TWO)]
    rsp: u64,
    #[version(end = 2.5)]
    rflags: u64,
}

fn main() {}
