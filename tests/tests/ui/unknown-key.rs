use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 2, default = "zero")]
    rip: u64,
}

fn main() {}
