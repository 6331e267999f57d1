use versionize::prelude::*;

// A `ser_value_fn` is a `fn(&self, u16) -> VersionizeResult<FieldType>`.
#[derive(Versionize)]
struct Pit {
    #[version(end = 2, ser_value_fn = "legacy_mode")]
    legacy_mode: u16,
    #[version(start = 2)]
    mode: u8,
}

impl Pit {
    // Returns the value without `VersionizeResult`.
    fn legacy_mode(&self, _: u16) -> u16 {
        u16::from(self.mode)
    }
}

fn main() {}
