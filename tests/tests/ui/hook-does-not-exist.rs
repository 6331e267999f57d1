use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Regs {
    #[version(start = 2, default_fn = "default_rip")]
    rip: u64,
}

fn main() {}
