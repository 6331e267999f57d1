use versionize::prelude::*;

// No version is ever read without `rip`, so its `de_fn` would never run.
#[derive(Versionize)]
struct Regs {
    #[version(de_fn = "check_rip")]
    rip: u64,
}

impl Regs {
    fn check_rip(&mut self, _: u16) -> VersionizeResult<()> {
        Ok(())
    }
}

fn main() {}
