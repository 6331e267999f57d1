use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 2, default_fn = default_rip)]
    rip: u64,
}

impl Regs {
    fn default_rip(_: u16) -> u64 {
        0
    }
}

fn main() {}
