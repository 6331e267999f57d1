use versionize::prelude::*;

// `Legacy` exists at every version of `Irq`, so it is never replaced and its `default_fn`
// would never run.
#[derive(Clone, Versionize)]
enum Irq {
    #[version(default_fn = "to_msi")]
    Legacy(u8),
    Msi(u32),
}

impl Irq {
    fn to_msi(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Irq::Msi(0))
    }
}

fn main() {}
