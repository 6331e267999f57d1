use versionize::prelude::*;

// A variant `default_fn` is a `fn(&self, u16) -> VersionizeResult<Self>`.
#[derive(Versionize)]
enum Irq {
    Legacy(u8),
    #[version(start = 2, default_fn = "to_legacy")]
    Msi(u32),
}

impl Irq {
    // Written like a field `default_fn`.
    fn to_legacy(_: u16) -> Self {
        Irq::Legacy(0)
    }
}

fn main() {}
