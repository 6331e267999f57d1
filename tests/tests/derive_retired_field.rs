//! `ser_value_fn`: builds older than a retired field's `end` receive the value it computes
//! from the current state, not the stale in-memory value of the retired field.

use integration_tests::{from_bytes, round_trip, to_bytes};
use versionize::prelude::*;

/// The build that released Pit v2: it still has `legacy_mode`.
mod old_build {
    use versionize::prelude::*;

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct Pit {
        pub(crate) count: u32,
        pub(crate) legacy_mode: u16,
        #[version(start = 2)]
        pub(crate) gate: bool,
    }

    pub(crate) fn version_map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version().set_type_version(Pit::type_id(), 2);
        map
    }
}

/// This build: Pit v3 replaced `legacy_mode` (a `u16`, in tenths) by `mode`.
#[derive(Clone, Debug, PartialEq, Versionize)]
struct Pit {
    count: u32,
    #[version(end = 3, ser_value_fn = "legacy_mode_for_old_builds")]
    legacy_mode: u16,
    #[version(start = 2)]
    gate: bool,
    #[version(start = 3, de_fn = "mode_from_legacy")]
    mode: u8,
}

impl Pit {
    fn legacy_mode_for_old_builds(&self, type_version: u16) -> VersionizeResult<u16> {
        assert!(
            type_version < 3,
            "called only at versions that write the field"
        );
        if self.mode == u8::MAX {
            return Err(VersionizeError::Semantic(
                "mode 255 has no legacy encoding".to_owned(),
            ));
        }
        Ok(u16::from(self.mode) * 10)
    }

    fn mode_from_legacy(&mut self, _: u16) -> VersionizeResult<()> {
        self.mode = u8::try_from(self.legacy_mode / 10)
            .map_err(|_| VersionizeError::Semantic("legacy mode above 2550".to_owned()))?;
        Ok(())
    }
}

/// The same app versions 1 and 2 as the old build, and app version 3.
fn version_map() -> VersionMap {
    let mut map = VersionMap::new(); // app 1: Pit v1
    map.new_version().set_type_version(Pit::type_id(), 2); // app 2
    map.new_version().set_type_version(Pit::type_id(), 3); // app 3
    map
}

/// New code sets only `mode`; `legacy_mode` stays at whatever it was (here 0).
fn current() -> Pit {
    Pit {
        count: 7,
        legacy_mode: 0,
        gate: true,
        mode: 4,
    }
}

#[test]
fn test_ser_value_fn_older_builds_receive_the_computed_value() {
    let pit = current();
    for app_version in [1, 2] {
        let bytes = to_bytes(&pit, &version_map(), app_version);
        let old: old_build::Pit =
            from_bytes(&bytes, &old_build::version_map(), app_version).unwrap();
        assert_eq!(
            old,
            old_build::Pit {
                count: 7,
                legacy_mode: 40,
                gate: app_version == 2,
            },
            "app version {app_version}"
        );
    }
}

#[test]
fn test_ser_value_fn_bytes_at_every_app_version() {
    let pit = current();
    let bytes = round_trip(&pit, &version_map(), |app_version| Pit {
        // Read back from an old layout, `legacy_mode` holds what was written and `mode`
        // is rebuilt from it; from v3 on, `legacy_mode` is absent and takes its default.
        legacy_mode: if app_version < 3 { 40 } else { 0 },
        gate: app_version >= 2,
        ..current()
    });
    assert_eq!(bytes[0], [7, 0, 0, 0, 40, 0]);
    assert_eq!(bytes[1], [7, 0, 0, 0, 40, 0, 1]);
    assert_eq!(bytes[2], [7, 0, 0, 0, 1, 4]);
    // The value written never changed the caller's state.
    assert_eq!(pit, current());
}

#[test]
fn test_ser_value_fn_error_names_type_field_and_version() {
    let pit = Pit {
        mode: u8::MAX,
        ..current()
    };
    let error = pit
        .serialize(&mut Vec::new(), &version_map(), 2)
        .unwrap_err();
    assert!(matches!(error.root(), VersionizeError::Semantic(_)));
    let frame = &error.path()[0];
    assert_eq!(
        (frame.type_name, frame.field, frame.version),
        ("Pit", Some("legacy_mode"), 2)
    );
    // The newest layout does not write the retired field, so the hook does not run.
    assert!(pit.serialize(&mut Vec::new(), &version_map(), 3).is_ok());
}

/// Hooks compose: the `ser_fn`s of the fields absent at the target version run first, on
/// the copy, and `ser_value_fn` reads that copy.
#[derive(Clone, Debug, PartialEq, Versionize)]
struct Clock {
    #[version(end = 2, ser_value_fn = "khz_for_v1")]
    frequency_khz: u32,
    #[version(start = 2, ser_fn = "round_to_khz")]
    frequency_hz: u64,
}

impl Clock {
    fn round_to_khz(&mut self, _: u16) -> VersionizeResult<()> {
        self.frequency_hz = self.frequency_hz / 1000 * 1000;
        Ok(())
    }

    fn khz_for_v1(&self, _: u16) -> VersionizeResult<u32> {
        assert_eq!(self.frequency_hz % 1000, 0, "runs on the copy after ser_fn");
        u32::try_from(self.frequency_hz / 1000)
            .map_err(|_| VersionizeError::Semantic("too fast for v1".to_owned()))
    }
}

#[test]
fn test_ser_value_fn_runs_after_ser_fn_on_the_copy() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Clock::type_id(), 2);
    let clock = Clock {
        frequency_khz: 0,
        frequency_hz: 2_400_000_999,
    };
    assert_eq!(to_bytes(&clock, &map, 1), 2_400_000u32.to_le_bytes());
    assert_eq!(to_bytes(&clock, &map, 2), 2_400_000_999u64.to_le_bytes());
}
