//! The schema checker: one test per rule, each comparing two "builds" of the same types
//! (modules with the same type names) at a released app version, plus the correct
//! evolutions that must pass clean, the newest-version check and the guard workflow.

use std::path::{Path, PathBuf};

use versionize::schema::{
    check_latest, compare, export, Difference, Schema, SchemaCheckError, SchemaGuard,
};
use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

/// The schema as the build it simulates would export it: each module of this file stands
/// for one build of the same crate, so its name is dropped from the paths
/// (`schema::v1::Vcpu` and `schema::field_added::Vcpu` are both `Vcpu`;
/// `schema::old::net::Config` is `net::Config`).
fn as_build(schema: &Schema) -> Schema {
    let json = schema.to_json();
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find("schema::") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "schema::".len()..];
        let ident = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if rest[ident..].starts_with("::") {
            rest = &rest[ident + 2..];
        }
    }
    out.push_str(rest);
    Schema::from_json(&out).unwrap()
}

fn diff<Old: Versionize + 'static, New: Versionize + 'static>(
    old_map: &VersionMap,
    new_map: &VersionMap,
    app_version: u16,
) -> Vec<Difference> {
    // What was committed is JSON: go through it.
    let old = as_build(&export::<Old>(old_map, app_version).unwrap());
    let new = as_build(&export::<New>(new_map, app_version).unwrap());
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
    assert_eq!(schema.root, "schema::v1::Vcpu");
    assert_eq!(schema.types.len(), 2);
    let json = schema.to_json();
    for needle in [
        "\"format\": 2",
        "\"schema::v1::Vcpu\"",
        "\"schema::v1::Regs\"",
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
    assert_one(&differences, "Regs", "no longer reachable from the root");
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
    assert_eq!(schema.types["schema::Node"].name, "schema::Node");
    assert!(schema.to_json().contains("Option<Box<schema::Node>>"));
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
    assert_one(&differences, "Event", "newly reachable from the root");
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

// ---------------------------------------------------------------------------------------
// Same-name types (issue 11, item 3): keyed by full path, so a change to one is seen.

mod old {
    pub(crate) mod net {
        #[derive(versionize::prelude::Versionize)]
        pub(crate) struct Config {
            pub(crate) mtu: u16,
            pub(crate) csum: bool,
        }
    }
    pub(crate) mod block {
        #[derive(versionize::prelude::Versionize)]
        pub(crate) struct Config {
            pub(crate) read_only: bool,
            pub(crate) writable_cache: bool,
        }
    }
    #[derive(versionize::prelude::Versionize)]
    pub(crate) struct Devices {
        pub(crate) net: net::Config,
        pub(crate) block: block::Config,
    }
}

mod swapped {
    pub(crate) mod block {
        /// The two bools swapped in place: a read-only disk reads back writable.
        #[derive(versionize::prelude::Versionize)]
        pub(crate) struct Config {
            pub(crate) writable_cache: bool,
            pub(crate) read_only: bool,
        }
    }
    #[derive(versionize::prelude::Versionize)]
    pub(crate) struct Devices {
        pub(crate) net: crate::old::net::Config,
        pub(crate) block: block::Config,
    }
}

#[test]
fn test_schema_same_name_types_are_keyed_by_full_path() {
    let schema = export::<old::Devices>(&VersionMap::new(), 1).unwrap();
    let names: Vec<&str> = schema.types.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "schema::old::Devices",
            "schema::old::block::Config",
            "schema::old::net::Config"
        ]
    );
}

#[test]
fn test_schema_same_name_types_change_to_one_is_found() {
    // Keyed by bare name, `block::Config` was never described (`net::Config` had taken
    // the name `Config`), so the swap went unseen.
    let old = export::<old::Devices>(&VersionMap::new(), 1).unwrap();
    let new = export::<swapped::Devices>(&VersionMap::new(), 1).unwrap();
    let renames = {
        let mut renames = versionize::schema::Renames::new();
        renames
            .rename_type("schema::old::Devices", "schema::swapped::Devices")
            .rename_type(
                "schema::old::block::Config",
                "schema::swapped::block::Config",
            );
        renames
    };
    let differences = compare(&renames.apply(&old), &new);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_one(
        &differences,
        "schema::swapped::block::Config",
        "fields reordered from [read_only, writable_cache] to [writable_cache, read_only]",
    );
}

// ---------------------------------------------------------------------------------------
// The newest app version maps every reachable type to its newest version (item 1).

mod unmapped {
    use super::*;

    #[derive(Versionize)]
    pub(crate) struct RxDesc {
        pub(crate) addr: u64,
    }

    #[derive(Versionize)]
    pub(crate) struct TxDesc {
        pub(crate) addr: u64,
    }

    #[derive(Versionize)]
    pub(crate) struct Ring<D> {
        pub(crate) descriptors: Vec<D>,
        #[version(start = 2)]
        pub(crate) event_idx: u16,
    }

    #[derive(Versionize)]
    pub(crate) struct Net {
        pub(crate) rx: Ring<RxDesc>,
        pub(crate) tx: Ring<TxDesc>,
    }

    #[derive(Versionize)]
    pub(crate) struct Rtc {
        pub(crate) seconds: u32,
        #[version(start = 2)]
        pub(crate) alarm: u32,
        #[version(start = 3)]
        pub(crate) century: u8,
    }

    #[derive(Versionize)]
    pub(crate) struct Uart {
        pub(crate) lcr: u8,
        #[version(start = 2)]
        pub(crate) scratch: u8,
    }

    #[derive(Versionize)]
    pub(crate) struct Vm {
        pub(crate) rtc: Rtc,
        pub(crate) uart: Uart,
        pub(crate) net: Net,
    }
}

fn not_latest(error: SchemaCheckError) -> Vec<(String, u16, u16)> {
    match error {
        SchemaCheckError::NotLatest { types, .. } => types
            .into_iter()
            .map(|ty| (ty.name, ty.mapped, ty.latest))
            .collect(),
        other => panic!("expected NotLatest, got {other}"),
    }
}

#[test]
fn test_schema_check_latest_finds_a_start_never_mapped() {
    use unmapped::*;
    // Rtc v3 added `century`, but the newest app version still maps Rtc to 2: the newest
    // build would drop `century` on its own save and restore.
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Rtc::type_id(), 2)
        .set_type_version(Uart::type_id(), 2)
        .set_type_version(Ring::<RxDesc>::type_id(), 2)
        .set_type_version(Ring::<TxDesc>::type_id(), 2);
    assert_eq!(
        not_latest(check_latest::<Vm>(&map).unwrap_err()),
        [("schema::unmapped::Rtc".to_owned(), 2, 3)]
    );
    map.new_version().set_type_version(Rtc::type_id(), 3);
    check_latest::<Vm>(&map).unwrap();
}

#[test]
fn test_schema_check_latest_finds_one_of_two_changed_types_unmapped() {
    use unmapped::*;
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Rtc::type_id(), 3)
        .set_type_version(Ring::<RxDesc>::type_id(), 2)
        .set_type_version(Ring::<TxDesc>::type_id(), 2);
    let error = check_latest::<Vm>(&map).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("app version 2, the newest of the version map")
            && text.contains("schema::unmapped::Uart: at v1, newest v2"),
        "{text}"
    );
    assert_eq!(
        not_latest(error),
        [("schema::unmapped::Uart".to_owned(), 1, 2)]
    );
}

#[test]
fn test_schema_check_latest_sees_each_generic_instantiation() {
    use unmapped::*;
    // Ring<RxDesc> and Ring<TxDesc> are separate map entries: mapping one leaves the other.
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Rtc::type_id(), 3)
        .set_type_version(Uart::type_id(), 2)
        .set_type_version(Ring::<RxDesc>::type_id(), 2);
    assert_eq!(
        not_latest(check_latest::<Vm>(&map).unwrap_err()),
        [(
            "schema::unmapped::Ring<schema::unmapped::TxDesc>".to_owned(),
            1,
            2
        )]
    );
}

#[test]
fn test_schema_check_latest_finds_a_version_the_type_does_not_have() {
    use unmapped::*;
    let mut map = VersionMap::new();
    map.set_type_version(Uart::type_id(), 7);
    let text = check_latest::<Uart>(&map).unwrap_err().to_string();
    assert!(
        text.contains("schema::unmapped::Uart: mapped to v7, which it does not have (newest v2)"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The guard workflow (item 4) and the false alarms it must not raise (item 5).

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("versionize-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn file(&self, app_version: u16) -> PathBuf {
        self.0.join(format!("v{app_version}.json"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes what the build of module `build` would have committed for `app_version`.
fn release<T: Versionize + 'static>(dir: &Path, map: &VersionMap, app_version: u16, build: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let json = export::<T>(map, app_version)
        .unwrap()
        .to_json()
        .replace(&format!("schema::{build}::"), "schema::current::");
    std::fs::write(dir.join(format!("v{app_version}.json")), json).unwrap();
}

mod current {
    //! The build under test in the guard tests; `released` is the build before it.
    use super::*;

    #[derive(Versionize)]
    pub(crate) struct Balloon {
        pub(crate) target_pages: u32,
    }

    #[derive(Versionize)]
    pub(crate) struct Vm {
        pub(crate) id: u32,
        #[version(start = 2)]
        pub(crate) balloon: Option<Balloon>,
    }

    pub(crate) fn map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version().set_type_version(Vm::type_id(), 2);
        map
    }
}

mod released {
    use super::*;

    #[derive(Versionize)]
    pub(crate) struct Vm {
        pub(crate) id: u32,
    }
}

#[test]
fn test_schema_guard_new_type_through_a_versioned_field_passes() {
    // `balloon: Option<Balloon>` starts at Vm v2: app version 1 does not write it, so
    // `Balloon` is not part of app version 1 (it was reported "newly part of app version 1").
    let dir = TempDir::new("balloon");
    release::<released::Vm>(&dir.0, &VersionMap::new(), 1, "released");
    let map = current::map();
    let guard = SchemaGuard::new(&map, &dir.0);
    assert_eq!(
        guard.bless::<current::Vm>().unwrap(),
        [dir.file(2)],
        "v1.json checks clean, v2.json is new"
    );
    guard.check::<current::Vm>().unwrap();
    let v1 = export::<current::Vm>(&current::map(), 1).unwrap();
    assert_eq!(v1.types.len(), 1, "{v1:#?}");
    let v2 = export::<current::Vm>(&current::map(), 2).unwrap();
    assert!(v2.types.contains_key("schema::current::Balloon"));
}

#[test]
fn test_schema_guard_bless_never_rewrites_a_released_file() {
    let dir = TempDir::new("never-rewrite");
    // A released v1.json that the current build no longer matches.
    release::<v1::Vcpu>(&dir.0, &VersionMap::new(), 1, "v1");
    let released = std::fs::read_to_string(dir.file(1)).unwrap();
    let map = current::map();
    let guard = SchemaGuard::new(&map, &dir.0);
    let error = guard.bless::<current::Vm>().unwrap_err();
    assert!(
        matches!(error, SchemaCheckError::Mismatch { .. }),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(dir.file(1)).unwrap(), released);
    assert!(
        !dir.file(2).exists(),
        "nothing written while released files mismatch"
    );
}

#[test]
fn test_schema_guard_bless_writes_only_new_app_versions() {
    let dir = TempDir::new("bless-new");
    let map = current::map();
    let guard = SchemaGuard::new(&map, &dir.0);
    // Nothing released: both app versions are unblessed, and the check says so.
    match guard.check::<current::Vm>() {
        Err(SchemaCheckError::Unblessed { app_versions, .. }) => assert_eq!(app_versions, [1, 2]),
        other => panic!("expected Unblessed, got {other:?}"),
    }
    assert_eq!(
        guard.bless::<current::Vm>().unwrap(),
        [dir.file(1), dir.file(2)]
    );
    let written: Vec<String> = [1, 2]
        .map(|n| std::fs::read_to_string(dir.file(n)).unwrap())
        .to_vec();
    // Blessing again writes nothing and rewrites nothing.
    assert!(guard.bless::<current::Vm>().unwrap().is_empty());
    assert!(guard.run::<current::Vm>().unwrap().is_empty());
    for (n, text) in (1u16..).zip(&written) {
        assert_eq!(&std::fs::read_to_string(dir.file(n)).unwrap(), text);
    }
}

#[test]
fn test_schema_guard_missing_file_of_an_app_version_fails() {
    let dir = TempDir::new("missing");
    let mut map = current::map();
    map.new_version();
    let guard = SchemaGuard::new(&map, &dir.0);
    guard.bless::<current::Vm>().unwrap();
    // The newest app version's file missing: not blessed yet.
    std::fs::remove_file(dir.file(3)).unwrap();
    let text = guard.check::<current::Vm>().unwrap_err().to_string();
    assert!(
        text.contains("no schema file for app version(s) 3 of the version map")
            && text.contains("VERSIONIZE_BLESS=1"),
        "{text}"
    );
    // A released one missing: bless refuses to write it again.
    std::fs::remove_file(dir.file(1)).unwrap();
    for error in [
        guard.check::<current::Vm>().unwrap_err(),
        guard.bless::<current::Vm>().unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                SchemaCheckError::MissingFile {
                    app_version: 1,
                    released: 2,
                    ..
                }
            ),
            "{error}"
        );
    }
    assert!(!dir.file(1).exists());
}

#[test]
fn test_schema_guard_file_beyond_the_map_fails() {
    let dir = TempDir::new("beyond");
    SchemaGuard::new(&current::map(), &dir.0)
        .bless::<current::Vm>()
        .unwrap();
    let error = SchemaGuard::new(&VersionMap::new(), &dir.0)
        .check::<released::Vm>()
        .unwrap_err();
    assert!(
        matches!(
            error,
            SchemaCheckError::MissingAppVersion {
                app_version: 2,
                latest: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn test_schema_guard_runs_check_latest_with_opt_out() {
    use unmapped::*;
    let dir = TempDir::new("latest");
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Rtc::type_id(), 3)
        .set_type_version(Uart::type_id(), 2)
        .set_type_version(Ring::<RxDesc>::type_id(), 2);
    let guard = SchemaGuard::new(&map, &dir.0);
    assert!(matches!(
        guard.bless::<Vm>(),
        Err(SchemaCheckError::NotLatest { app_version: 2, .. })
    ));
    assert!(!dir.0.exists(), "nothing blessed while a type is behind");
    // The explicit opt-out.
    let guard = guard.allow_behind::<Ring<TxDesc>>();
    assert_eq!(guard.bless::<Vm>().unwrap().len(), 2);
    guard.check::<Vm>().unwrap();
}

#[test]
fn test_schema_guard_reports_a_difference_once() {
    // Four app versions, one field added to `Regs` without a version change: one line
    // naming the four files (it was four identical lines).
    let dir = TempDir::new("once");
    let mut map = VersionMap::new();
    map.new_version().new_version().new_version();
    let guard = SchemaGuard::new(&map, &dir.0);
    guard.bless::<v1::Vcpu>().unwrap();
    let json: Vec<String> = (1..=4)
        .map(|n| {
            std::fs::read_to_string(dir.file(n))
                .unwrap()
                .replace("schema::v1::", "schema::nested_retyped::")
        })
        .collect();
    for (n, json) in (1..).zip(json) {
        std::fs::write(dir.file(n), json).unwrap();
    }
    let error = guard.check::<nested_retyped::Vcpu>().unwrap_err();
    let SchemaCheckError::Mismatch { findings, .. } = &error else {
        panic!("expected Mismatch, got {error}");
    };
    assert_eq!(findings.len(), 1, "{error}");
    assert_eq!(findings[0].app_versions, [1, 2, 3, 4]);
    let text = error.to_string();
    assert_eq!(text.matches("rflags").count(), 1, "{text}");
    assert!(
        text.contains(
            "schema::nested_retyped::Regs.rflags: type changed from u64 to u32 without a \
             version change (add a new field with `start` and retire this one with `end`) \
             (in v1.json, v2.json, v3.json, v4.json)"
        ),
        "{text}"
    );
}

mod renamed {
    use super::*;

    /// `v1::Vcpu` renamed to `Cpu`, its field `lapic` to `apic`, `Regs` moved into a module.
    #[derive(Versionize)]
    pub(crate) struct Cpu {
        pub(crate) regs: arch::Registers,
        pub(crate) apic: Vec<u8>,
    }

    pub(crate) mod arch {
        #[derive(versionize::prelude::Versionize)]
        pub(crate) struct Registers {
            pub(crate) rip: u64,
            pub(crate) rflags: u64,
        }
    }

    /// `v1::Event` with its variant `Exception` renamed `Fault`.
    #[derive(Versionize)]
    pub(crate) enum Event {
        None,
        Fault(u8),
        Interrupt { vector: u8 },
    }
}

#[test]
fn test_schema_guard_declared_renames_pass() {
    let dir = TempDir::new("renames");
    let map = VersionMap::new();
    SchemaGuard::new(&map, &dir.0).bless::<v1::Vcpu>().unwrap();
    // Undeclared, a rename reads as a removal and an addition.
    let error = SchemaGuard::new(&map, &dir.0)
        .check::<renamed::Cpu>()
        .unwrap_err();
    assert!(
        matches!(error, SchemaCheckError::Mismatch { .. }),
        "{error}"
    );
    // Declared, it passes: no byte changed.
    SchemaGuard::new(&map, &dir.0)
        .rename_type("schema::v1::Vcpu", "schema::renamed::Cpu")
        .rename_type("schema::v1::Regs", "schema::renamed::arch::Registers")
        .rename_field("schema::renamed::Cpu", "lapic", "apic")
        .check::<renamed::Cpu>()
        .unwrap();
    // Declaring the wrong field still fails.
    let error = SchemaGuard::new(&map, &dir.0)
        .rename_type("schema::v1::Vcpu", "schema::renamed::Cpu")
        .rename_type("schema::v1::Regs", "schema::renamed::arch::Registers")
        .rename_field("schema::renamed::Cpu", "regs", "apic")
        .check::<renamed::Cpu>()
        .unwrap_err();
    assert!(error.to_string().contains("Cpu.lapic"), "{error}");
}

#[test]
fn test_schema_guard_declared_variant_and_module_renames_pass() {
    let dir = TempDir::new("variant-renames");
    let map = VersionMap::new();
    SchemaGuard::new(&map, &dir.0).bless::<v1::Event>().unwrap();
    assert!(SchemaGuard::new(&map, &dir.0)
        .check::<renamed::Event>()
        .is_err());
    SchemaGuard::new(&map, &dir.0)
        .rename_module("schema::v1", "schema::renamed")
        .rename_variant("schema::renamed::Event", "Exception", "Fault")
        .check::<renamed::Event>()
        .unwrap();
}

#[test]
fn test_schema_guard_refuses_a_file_of_another_app_version_or_format() {
    let dir = TempDir::new("format");
    let map = evolved::map();
    let guard = SchemaGuard::new(&map, &dir.0);
    guard.bless::<evolved::Vcpu>().unwrap();
    // v1.json holding app version 2's export.
    std::fs::copy(dir.file(2), dir.file(1)).unwrap();
    let text = guard.check::<evolved::Vcpu>().unwrap_err().to_string();
    assert!(
        text.contains("v1.json: not a schema export: describes app version 2, its name says 1"),
        "{text}"
    );
    // A format 1 file (no `format`, bare names).
    let json = std::fs::read_to_string(dir.file(2))
        .unwrap()
        .replace("  \"format\": 2,\n", "");
    std::fs::write(dir.file(1), json).unwrap();
    let text = guard.check::<evolved::Vcpu>().unwrap_err().to_string();
    assert!(
        text.contains("schema format 1 (types keyed by bare names)"),
        "{text}"
    );
    // A future format.
    let json = std::fs::read_to_string(dir.file(2))
        .unwrap()
        .replace("\"format\": 2", "\"format\": 3");
    std::fs::write(dir.file(1), json).unwrap();
    let text = guard.check::<evolved::Vcpu>().unwrap_err().to_string();
    assert!(
        text.contains("schema format 3, this build reads format 2"),
        "{text}"
    );
}

#[test]
fn test_schema_guard_doc_workflow_in_a_few_lines() {
    // What a VMM's guard test looks like: one call.
    let dir = TempDir::new("few-lines");
    let map = evolved::map();
    SchemaGuard::new(&map, &dir.0)
        .bless::<evolved::Vcpu>()
        .unwrap();
    SchemaGuard::new(&map, &dir.0)
        .run::<evolved::Vcpu>()
        .unwrap_or_else(|error| panic!("{error}"));
}
