use versionize::prelude::*;

// A `ser_fn` is a `fn(&mut self, u16) -> VersionizeResult<()>`.
#[derive(Clone, Versionize)]
struct Regs {
    #[version(end = 2)]
    legacy_rip: u32,
    #[version(start = 2, ser_fn = "fold_rip")]
    rip: u64,
}

impl Regs {
    // Takes `&self`: it could not change the copy that is written.
    fn fold_rip(&self, _: u16) -> VersionizeResult<()> {
        Ok(())
    }
}

fn main() {}
