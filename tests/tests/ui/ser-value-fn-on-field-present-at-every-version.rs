use versionize::prelude::*;

// `ser_value_fn` replaces what is written for a retired field; `count` is not retired, so
// the value in memory would never be written at any version.
#[derive(Versionize)]
struct Pit {
    #[version(ser_value_fn = "count_to_write")]
    count: u32,
}

impl Pit {
    fn count_to_write(&self, _: u16) -> VersionizeResult<u32> {
        Ok(self.count + 1)
    }
}

fn main() {}
