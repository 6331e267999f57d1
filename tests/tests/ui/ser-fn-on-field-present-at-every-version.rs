use versionize::prelude::*;

// `rip` exists at every version (here even with an explicit `start = 1`): no version is
// ever written without it, so its `ser_fn` would never run.
#[derive(Clone, Versionize)]
struct Regs {
    #[version(start = 1, ser_fn = "fold_rip")]
    rip: u64,
    #[version(start = 2)]
    rsp: u64,
}

impl Regs {
    fn fold_rip(&mut self, _: u16) -> VersionizeResult<()> {
        self.rsp = self.rip;
        Ok(())
    }
}

fn main() {}
