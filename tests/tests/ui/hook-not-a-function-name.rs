use versionize::prelude::Versionize;

#[derive(Clone, Versionize)]
struct Regs {
    #[version(start = 2, default_fn = "default rip", ser_fn = "", de_fn = "fix()")]
    rip: u64,
}

fn main() {}
