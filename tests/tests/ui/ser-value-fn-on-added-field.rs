use versionize::prelude::*;

// `mode` is new in Pit v2 and is never retired: at the latest version its value in memory
// is the state, so a `ser_value_fn` replacing it there is refused. Filling an older field
// when writing older versions is what `ser_fn` does.
#[derive(Versionize)]
struct Pit {
    count: u32,
    #[version(start = 2, ser_value_fn = "mode_to_write")]
    mode: u8,
}

impl Pit {
    fn mode_to_write(&self, _: u16) -> VersionizeResult<u8> {
        Ok(self.mode)
    }
}

fn main() {}
