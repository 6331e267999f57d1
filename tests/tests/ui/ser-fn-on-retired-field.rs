use versionize::prelude::*;

// The author wants builds older than Pit v3 to receive `legacy_mode` computed from `mode`.
// A `ser_fn` on `legacy_mode` runs when writing v3 and later, where `legacy_mode` is not
// written, so those builds would receive the stale in-memory value: `ser_value_fn` is the
// key that computes it.
#[derive(Clone, Versionize)]
struct Pit {
    #[version(end = 3, ser_fn = "legacy_mode_from_mode")]
    legacy_mode: u16,
    #[version(start = 3)]
    mode: u8,
}

impl Pit {
    fn legacy_mode_from_mode(&mut self, _: u16) -> VersionizeResult<()> {
        self.legacy_mode = u16::from(self.mode);
        Ok(())
    }
}

fn main() {}
