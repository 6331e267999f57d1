use versionize::{prelude::Versionize, VersionizeResult};

#[derive(Versionize)]
enum Irq {
    Legacy(u8),
    #[version(start = 2, default_fn = "to_legacy", ser_fn = "before", de_fn = "after")]
    Msi(u32),
}

impl Irq {
    fn to_legacy(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Irq::Legacy(0))
    }
}

fn main() {}
