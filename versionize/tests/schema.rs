//! The schema checker: one test per rule, each comparing two "builds" of the same types
//! (modules with the same type names) at a released app version, plus the correct
//! evolutions that must pass clean and the committed-files helper.

use versionize::schema::{
    check_schema_dir, compare, export, write_schema_dir, Difference, Schema, SchemaCheckError,
};
use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

fn diff<Old: Versionize + 'static, New: Versionize + 'static>(
    old_map: &VersionMap,
    new_map: &VersionMap,
    app_version: u16,
) -> Vec<Difference> {
    let old = export::<Old>(old_map, app_version).unwrap();
    // What was committed is JSON: go through it.
    let old = Schema::from_json(&old.to_json()).unwrap();
    let new = export::<New>(new_map, app_version).unwrap();
    compare(&old, &new)
}

#[track_caller]
fn assert_one(differences: &[Difference], path: &str, needle: &str) {
    assert!(
        differences
            .iter()
            .any(|d| d.path == path && d.message.contains(needle)),
        "expected {path}: ...{needle}... in {differences:#?}"
    );
}

mod v1 {
    use super::*;

    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: Regs,
        pub(crate) lapic: Vec<u8>,
    }

    #[derive(Versionize)]
    pub(crate) struct Regs {
        pub(crate) rip: u64,
        pub(crate) rflags: u64,
    }

    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Exception(u8),
        Interrupt { vector: u8 },
    }

    pub(crate) fn map() -> VersionMap {
        VersionMap::new()
    }
}

#[test]
fn test_schema_identical_build_passes() {
    let differences = diff::<v1::Vcpu, v1::Vcpu>(&v1::map(), &v1::map(), 1);
    assert!(differences.is_empty(), "{differences:#?}");
}

#[test]
fn test_schema_export_describes_types_fields_and_versions() {
    let schema = export::<v1::Vcpu>(&v1::map(), 1).unwrap();
    assert_eq!(schema.root, "Vcpu");
    assert_eq!(schema.types.len(), 2);
    let json = schema.to_json();
    for needle in [
        "\"Vcpu\"",
        "\"Regs\"",
        "\"lapic\"",
        "\"Vec<u8>\"",
        "\"rip\"",
        "\"u64\"",
    ] {
        assert!(json.contains(needle), "{needle} missing from {json}");
    }
    assert_eq!(Schema::from_json(&json).unwrap(), schema);
}

mod field_added {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: v1::Regs,
        pub(crate) lapic: Vec<u8>,
        pub(crate) tsc_khz: u32,
    }
}

#[test]
fn test_schema_rule_field_added_without_version() {
    let differences = diff::<v1::Vcpu, field_added::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Vcpu.tsc_khz",
        "added without a version change",
    );
}

mod field_removed {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: v1::Regs,
    }
}

#[test]
fn test_schema_rule_field_removed_without_version() {
    let differences = diff::<v1::Vcpu, field_removed::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Vcpu.lapic",
        "removed without a version change",
    );
}

mod field_retyped {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: v1::Regs,
        pub(crate) lapic: Vec<u32>,
    }
}

#[test]
fn test_schema_rule_field_retyped_without_version() {
    let differences = diff::<v1::Vcpu, field_retyped::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Vcpu.lapic",
        "type changed from Vec<u8> to Vec<u32>",
    );
}

mod nested_retyped {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: Regs,
        pub(crate) lapic: Vec<u8>,
    }
    #[derive(Versionize)]
    pub(crate) struct Regs {
        pub(crate) rip: u64,
        pub(crate) rflags: u32,
    }
}

#[test]
fn test_schema_rule_nested_field_retyped_is_found_by_path() {
    let differences = diff::<v1::Vcpu, nested_retyped::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Regs.rflags", "type changed from u64 to u32");
}

mod fields_reordered {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) lapic: Vec<u8>,
        pub(crate) regs: v1::Regs,
    }
}

#[test]
fn test_schema_rule_fields_reordered() {
    let differences = diff::<v1::Vcpu, fields_reordered::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Vcpu",
        "fields reordered from [regs, lapic] to [lapic, regs]",
    );
}

mod variants_reordered {
    use super::*;
    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Interrupt { vector: u8 },
        Exception(u8),
    }
}

#[test]
fn test_schema_rule_variant_reordered() {
    let differences = diff::<v1::Event, variants_reordered::Event>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Event::Exception",
        "index changed from 1 to 2",
    );
    assert_one(
        &differences,
        "Event::Interrupt",
        "index changed from 2 to 1",
    );
}

mod variant_removed {
    use super::*;
    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Exception(u8),
    }
}

#[test]
fn test_schema_rule_variant_removed() {
    let differences = diff::<v1::Event, variant_removed::Event>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Event::Interrupt", "variant 2 removed");
}

mod variant_added {
    use super::*;
    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Exception(u8),
        Interrupt { vector: u8 },
        Nmi,
    }
}

#[test]
fn test_schema_rule_variant_added_without_version() {
    let differences = diff::<v1::Event, variant_added::Event>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Event::Nmi", "added without a version change");
}

mod variant_field_retyped {
    use super::*;
    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Exception(u16),
        Interrupt { vector: u8 },
    }
}

#[test]
fn test_schema_rule_variant_field_retyped() {
    let differences = diff::<v1::Event, variant_field_retyped::Event>(&v1::map(), &v1::map(), 1);
    assert_one(
        &differences,
        "Event::Exception.0",
        "type changed from u8 to u16",
    );
}

/// A correct evolution: `tsc_khz` added at type version 2, mapped at new app version 2.
mod evolved {
    use super::*;
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) regs: v1::Regs,
        pub(crate) lapic: Vec<u8>,
        #[version(start = 2, ser_fn = "drop_tsc")]
        pub(crate) tsc_khz: u32,
    }
    impl Vcpu {
        fn drop_tsc(&mut self, _: u16) -> VersionizeResult<()> {
            Ok(())
        }
    }
    impl Clone for Vcpu {
        fn clone(&self) -> Self {
            Vcpu {
                regs: v1::Regs {
                    rip: self.regs.rip,
                    rflags: self.regs.rflags,
                },
                lapic: self.lapic.clone(),
                tsc_khz: self.tsc_khz,
            }
        }
    }
    pub(crate) fn map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version().set_type_version(Vcpu::type_id(), 2);
        map
    }
}

#[test]
fn test_schema_correct_evolution_passes_clean() {
    let differences = diff::<v1::Vcpu, evolved::Vcpu>(&v1::map(), &evolved::map(), 1);
    assert!(differences.is_empty(), "{differences:#?}");
}

#[test]
fn test_schema_rule_type_version_lowered() {
    // The evolved build released app version 2 with Vcpu v2; a build that lost the field
    // (Vcpu back to v1) both lowers the type version and changes app version 2's mapping.
    let mut map = VersionMap::new();
    map.new_version();
    let differences = diff::<evolved::Vcpu, v1::Vcpu>(&evolved::map(), &map, 2);
    assert_one(
        &differences,
        "Vcpu",
        "latest type version lowered from 2 to 1",
    );
    assert_one(
        &differences,
        "Vcpu",
        "app version 2 now maps to type version 1 instead of 2",
    );
}

#[test]
fn test_schema_rule_mapping_changed_for_old_app_version() {
    // Someone maps the new type version into the already released app version 1.
    let mut wrong = VersionMap::new();
    wrong.set_type_version(evolved::Vcpu::type_id(), 2);
    let differences = diff::<evolved::Vcpu, evolved::Vcpu>(&evolved::map(), &wrong, 1);
    assert_one(
        &differences,
        "Vcpu",
        "app version 1 now maps to type version 2 instead of 1",
    );
}

#[test]
fn test_schema_rule_type_no_longer_reachable() {
    #[derive(Versionize)]
    pub(crate) struct Vcpu {
        pub(crate) lapic: Vec<u8>,
    }
    let differences = diff::<v1::Vcpu, Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Regs", "no longer part of app version 1");
    assert_one(
        &differences,
        "Vcpu.regs",
        "removed without a version change",
    );
}

#[test]
fn test_schema_recursive_types_terminate() {
    #[derive(Versionize)]
    pub(crate) struct Node {
        pub(crate) value: u8,
        pub(crate) next: Option<Box<Node>>,
    }
    let schema = export::<Node>(&VersionMap::new(), 1).unwrap();
    assert_eq!(schema.types["Node"].name, "Node");
    assert!(schema.to_json().contains("Option<Box<Node>>"));
}

#[test]
fn test_schema_dir_helper() {
    let dir = std::env::temp_dir().join(format!("versionize-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Nothing committed yet: a clear error.
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        check_schema_dir::<v1::Vcpu>(&v1::map(), &dir),
        Err(SchemaCheckError::Empty { .. })
    ));
    // Release app version 1, then evolve correctly: clean.
    write_schema_dir::<v1::Vcpu>(&v1::map(), &dir).unwrap();
    check_schema_dir::<evolved::Vcpu>(&evolved::map(), &dir).unwrap();
    // Forget the version bump: a readable diff naming the file and the field.
    let err = check_schema_dir::<field_added::Vcpu>(&v1::map(), &dir).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("v1.json"), "{text}");
    assert!(
        text.contains("Vcpu.tsc_khz: field of type u32 added without a version change"),
        "{text}"
    );
    // A released app version missing from the map.
    write_schema_dir::<evolved::Vcpu>(&evolved::map(), &dir).unwrap();
    let err = check_schema_dir::<v1::Vcpu>(&v1::map(), &dir).unwrap_err();
    assert!(
        matches!(
            err,
            SchemaCheckError::MissingAppVersion {
                app_version: 2,
                latest: 1,
                ..
            }
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

mod two_versions {
    use super::*;
    #[derive(Clone, Versionize)]
    pub(crate) enum Event {
        None,
        Exception(u8),
        #[version(start = 2, default_fn = "as_none")]
        Nmi,
    }
    impl Event {
        fn as_none(&self, _: u16) -> VersionizeResult<Self> {
            Ok(Event::None)
        }
    }
    pub(crate) fn map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version().set_type_version(Event::type_id(), 2);
        map
    }
}

mod start_moved {
    use super::*;
    /// Someone "moved" `Exception` to version 2 without adding a type version.
    #[derive(Clone, Versionize)]
    pub(crate) enum Event {
        None,
        #[version(start = 2, default_fn = "as_none")]
        Exception(u8),
        #[version(start = 2, default_fn = "as_none")]
        Nmi,
    }
    impl Event {
        fn as_none(&self, _: u16) -> VersionizeResult<Self> {
            Ok(Event::None)
        }
    }
    pub(crate) fn map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version().set_type_version(Event::type_id(), 2);
        map
    }
}

#[test]
fn test_schema_rule_variant_no_longer_exists_at_released_version() {
    let differences = diff::<two_versions::Event, start_moved::Event>(
        &two_versions::map(),
        &start_moved::map(),
        1,
    );
    assert_one(
        &differences,
        "Event::Exception",
        "no longer exists at this version",
    );
    // At app version 2 both have it: clean.
    let differences = diff::<two_versions::Event, start_moved::Event>(
        &two_versions::map(),
        &start_moved::map(),
        2,
    );
    assert!(differences.is_empty(), "{differences:#?}");
}

#[test]
fn test_schema_rule_root_changed() {
    let differences = diff::<v1::Vcpu, v1::Regs>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Vcpu", "root type changed from Vcpu to Regs");
}

#[test]
fn test_schema_rule_type_newly_reachable() {
    mod grown {
        use super::*;
        #[derive(Versionize)]
        pub(crate) struct Vcpu {
            pub(crate) regs: v1::Regs,
            pub(crate) lapic: Vec<u8>,
            pub(crate) events: Vec<v1::Event>,
        }
    }
    let differences = diff::<v1::Vcpu, grown::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Event", "newly part of app version 1");
    assert_one(
        &differences,
        "Vcpu.events",
        "added without a version change",
    );
}

#[test]
fn test_schema_rule_kind_changed() {
    mod as_enum {
        use super::*;
        #[derive(Versionize)]
        pub(crate) enum Regs {
            Short(u64),
            Long { rip: u64, rflags: u64 },
        }
        #[derive(Versionize)]
        pub(crate) struct Vcpu {
            pub(crate) regs: Regs,
            pub(crate) lapic: Vec<u8>,
        }
    }
    let differences = diff::<v1::Vcpu, as_enum::Vcpu>(&v1::map(), &v1::map(), 1);
    assert_one(&differences, "Regs", "changed from a struct to an enum");
}

#[test]
fn test_schema_rule_different_app_versions_are_not_compared_silently() {
    let old = export::<evolved::Vcpu>(&evolved::map(), 1).unwrap();
    let new = export::<evolved::Vcpu>(&evolved::map(), 2).unwrap();
    let differences = compare(&old, &new);
    assert_one(
        &differences,
        "",
        "comparing app version 1 with app version 2",
    );
}
