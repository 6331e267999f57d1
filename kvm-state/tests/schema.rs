//! The "forgot to bump" guard for `MicrovmState`: the current code must describe every
//! released app version exactly as its committed schema file in `kvm-state/schema/` does,
//! and the newest app version must map every state type to its newest version.
//!
//! When the guard fails with a list of differences, a state type changed in a way that makes
//! snapshots of a released app version load differently. Do not edit the committed files:
//! give the change a new type version (`#[version(start = N)]`), map it in a new app version
//! in `version_map()`, and bless that new app version's file.
//!
//! Releasing a new app version: run
//!
//! ```sh
//! VERSIONIZE_BLESS=1 cargo test -p kvm-state --test schema
//! ```
//!
//! which writes `v<N>.json` for the app versions above the newest committed file (never
//! overwriting one, and only when everything else checks clean), then commit the new file.

#![cfg(target_arch = "x86_64")]

use kvm_state::{version_map, MicrovmState};
use versionize::schema::{compare, export, Schema, SchemaGuard, TypeKind};

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");

#[test]
fn test_microvm_state_schema_guard() {
    let map = version_map();
    let written = SchemaGuard::new(&map, SCHEMA_DIR)
        .run::<MicrovmState>()
        .unwrap_or_else(|error| panic!("{error}"));
    for path in written {
        eprintln!("wrote {}: commit it", path.display());
    }
}

/// What the guard reports when a field appears in the code but not in a released file,
/// simulated by removing the field from the committed file instead.
#[test]
fn test_microvm_state_schema_guard_names_the_field() {
    let committed = std::fs::read_to_string(format!("{SCHEMA_DIR}/v1.json")).unwrap();
    let mut old = Schema::from_json(&committed).unwrap();
    let vcpu = old.types.get_mut("kvm_state::vcpu::VcpuState").unwrap();
    let TypeKind::Struct { fields } = &mut vcpu.kind else {
        panic!("VcpuState is a struct");
    };
    fields.retain(|field| field.name != "lapic");
    let differences = compare(&old, &export::<MicrovmState>(&version_map(), 1).unwrap());
    let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "kvm_state::vcpu::VcpuState.lapic: field of type kvm_state::vcpu::lapic::Lapic added \
             without a version change (give it `start = <new version>` and map the new version)"
        ]
    );
}
