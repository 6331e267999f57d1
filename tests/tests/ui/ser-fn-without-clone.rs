use versionize::{prelude::Versionize, VersionizeResult};

#[derive(Versionize)]
struct Regs {
    rip: u64,
    #[version(start = 2, ser_fn = "fold_rsp")]
    rsp: u64,
}

impl Regs {
    fn fold_rsp(&mut self, _: u16) -> VersionizeResult<()> {
        self.rip ^= self.rsp;
        Ok(())
    }
}

fn main() {}
