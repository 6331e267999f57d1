use versionize::prelude::*;

// `rip` has no `start` or `end`: it is never absent, so its `default_fn` would never run.
#[derive(Versionize)]
struct Regs {
    #[version(default_fn = "default_rip")]
    rip: u64,
}

impl Regs {
    fn default_rip(_: u16) -> u64 {
        0xfff0
    }
}

fn main() {}
