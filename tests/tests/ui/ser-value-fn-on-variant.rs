use versionize::prelude::*;

#[derive(Versionize)]
enum Irq {
    Legacy(u8),
    #[version(end = 2, default_fn = "to_legacy", ser_value_fn = "msi_value")]
    Msi(u32),
}

impl Irq {
    fn to_legacy(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Irq::Legacy(0))
    }
}

fn main() {}
