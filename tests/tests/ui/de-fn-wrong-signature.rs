use versionize::prelude::*;

// A `de_fn` is a `fn(&mut self, u16) -> VersionizeResult<()>`.
#[derive(Versionize)]
struct Regs {
    #[version(start = 2, de_fn = "unfold_rip")]
    rip: u64,
}

impl Regs {
    // Returns nothing: it could not report an error.
    fn unfold_rip(&mut self, _: u16) {}
}

fn main() {}
