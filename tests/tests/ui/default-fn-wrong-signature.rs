use versionize::prelude::*;

// A field `default_fn` is a `fn(u16) -> FieldType`.
#[derive(Versionize)]
struct Regs {
    #[version(start = 2, default_fn = "default_rip")]
    rip: u64,
    #[version(start = 2, default_fn = "default_rsp")]
    rsp: u64,
}

impl Regs {
    // Forgets the version argument.
    fn default_rip() -> u64 {
        0xfff0
    }
    // Returns another type.
    fn default_rsp(_: u16) -> u32 {
        0
    }
}

fn main() {}
