//! Schema-driven decoding of kvm-state's `MicrovmState` from its committed schema files
//! (`kvm-state/schema/v*.json`) with no Rust type: a realistic state and a live KVM one,
//! JSON that keeps 64-bit values exact, and field-level diffs (also across data versions).
#![cfg(target_arch = "x86_64")]

use std::collections::BTreeSet;

use integration_tests::to_bytes;
use kvm_state::{
    version_map, ClockState, Cpuid, CpuidEntry, DevicesState, Lapic, MemoryRegionState,
    MicrovmState, MsrEntry, Msrs, Regs, SerialState, VcpuState, VmState, Xsave,
};
use versionize::schema::{
    compare, decode_value, diff_values, encode_value, export, JsonOptions, Schema, Value,
    ValueError,
};
use versionize::Limits;

/// `realtime` of issue 16: above 2^53, so a double rounds it (to ...600 in `jq`).
const REALTIME: u64 = 1_796_122_410_083_834_518;

/// The committed schema file of `app_version`, as `vmstate dump --schema` reads it.
fn committed_schema(app_version: u16) -> Schema {
    let json = match app_version {
        1 => include_str!("../../kvm-state/schema/v1.json"),
        2 => include_str!("../../kvm-state/schema/v2.json"),
        3 => include_str!("../../kvm-state/schema/v3.json"),
        4 => include_str!("../../kvm-state/schema/v4.json"),
        5 => include_str!("../../kvm-state/schema/v5.json"),
        6 => include_str!("../../kvm-state/schema/v6.json"),
        other => panic!("no schema file for app version {other}"),
    };
    Schema::from_json(json).unwrap()
}

/// Two vCPUs with CPUID, MSRs, xsave and LAPIC pages, a clock with the v2 readings, a UART
/// and a 16 KiB memory region.
fn realistic_state() -> MicrovmState {
    let vcpu = |id: u64| VcpuState {
        cpuid: Cpuid {
            entries: (0..6)
                .map(|function| CpuidEntry {
                    function,
                    eax: 0x1234_5678 + function,
                    ..Default::default()
                })
                .collect(),
        },
        regs: Regs {
            rip: 0x1000 + id,
            rsp: 0x8000,
            rflags: 0x2,
            ..Default::default()
        },
        xsave: Xsave {
            region: (0..1024).collect(),
            extra: vec![],
        },
        lapic: Lapic {
            regs: vec![0x42; 1024],
        },
        msrs: Msrs {
            entries: vec![
                MsrEntry {
                    index: 0x10,
                    data: u64::MAX - id,
                },
                MsrEntry {
                    index: 0xc000_0080,
                    data: 0x500,
                },
            ],
        },
        tsc_khz: Some(2_500_000),
        ..Default::default()
    };
    MicrovmState {
        vm: VmState {
            clock: ClockState {
                clock: 123_456_789,
                flags: 0x6,
                realtime: REALTIME,
                host_tsc: 0x0123_4567_89ab_cdef,
            },
            ..Default::default()
        },
        vcpus: vec![vcpu(0), vcpu(1)],
        devices: DevicesState {
            serial: vec![SerialState {
                in_buffer: b"ok".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        },
        memory: vec![MemoryRegionState::with_contents(
            0,
            (0..16 * 1024).map(|i| (i % 251) as u8).collect(),
        )],
        host: kvm_state::HostFacts {
            cpu_vendor: "GenuineIntel".to_owned(),
            cpu_family: 6,
            cpu_model: 0x8f,
            cpu_stepping: 8,
            tsc_khz: Some(2_600_000),
            kvm_capabilities: vec![33, 75],
            kernel_release: "6.18.0".to_owned(),
        },
        memory_source: kvm_state::MemorySource::Inline,
    }
}

fn decode(schema: &Schema, bytes: &[u8]) -> Value {
    decode_value(schema, &mut &bytes[..], &Limits::default())
        .unwrap_or_else(|e| panic!("app version {}: {e}", schema.app_version))
}

fn pointer(value: &Value, path: &str) -> Option<serde_json::Value> {
    value.to_json().pointer(path).cloned()
}

#[test]
fn test_schema_decode_microvm_state_from_the_committed_files() {
    let state = realistic_state();
    for app_version in 1..=kvm_state::CURRENT_APP_VERSION {
        let schema = committed_schema(app_version);
        // The layout the file records is the one this build writes at that version (later
        // type versions add absent fields to the export, never to a released file).
        let differences = compare(
            &schema,
            &export::<MicrovmState>(&version_map(), app_version).unwrap(),
        );
        assert!(differences.is_empty(), "{differences:?}");
        let bytes = to_bytes(&state, &version_map(), app_version);
        let value = decode(&schema, &bytes);

        let mut again = Vec::new();
        encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
        assert_eq!(again, bytes, "app version {app_version}");

        assert_eq!(pointer(&value, "/vcpus/1/regs/rip"), Some("0x1001".into()));
        assert_eq!(
            pointer(&value, "/vcpus/0/msrs/entries/0/data"),
            Some("0xffffffffffffffff".into())
        );
        assert_eq!(
            pointer(&value, "/vcpus/0/cpuid/entries/5/eax"),
            Some(0x1234_567d.into())
        );
        assert_eq!(
            pointer(&value, "/devices/serial/0/in_buffer"),
            Some("6f6b".into())
        );
        let (tsc_khz, realtime) = match app_version {
            1 => (None, None),
            _ => (
                Some(2_500_000.into()),
                Some(format!("{REALTIME:#x}").into()),
            ),
        };
        assert_eq!(pointer(&value, "/vcpus/0/tsc_khz"), tsc_khz);
        assert_eq!(pointer(&value, "/vm/clock/realtime"), realtime);
    }
}

/// Every number of the rendering is exact as a double (what `jq` and JavaScript read), and
/// the 64-bit values are strings that give back every bit; the serde rendering of the same
/// state (what `vmstate dump` printed) does not survive a double.
#[test]
fn test_schema_decode_json_keeps_64_bit_values_through_a_double_reader() {
    let state = realistic_state();
    let schema = committed_schema(2);
    let value = decode(&schema, &to_bytes(&state, &version_map(), 2));
    let mut text = Vec::new();
    value
        .to_json_writer(&mut text, &JsonOptions::new().summarize_bytes_over(64))
        .unwrap();
    let reread: serde_json::Value = serde_json::from_slice(&text).unwrap();

    fn all_numbers_exact_as_doubles(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, Some(f)) => f as u64 == u && f < 2f64.powi(53),
                (None, Some(i), Some(f)) => f as i64 == i && f.abs() < 2f64.powi(53),
                (None, None, Some(f)) => f.is_finite(),
                _ => false,
            },
            serde_json::Value::Array(items) => items.iter().all(all_numbers_exact_as_doubles),
            serde_json::Value::Object(map) => map.values().all(all_numbers_exact_as_doubles),
            _ => true,
        }
    }
    assert!(all_numbers_exact_as_doubles(&reread));
    let realtime = reread
        .pointer("/vm/clock/realtime")
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(
        u64::from_str_radix(realtime.trim_start_matches("0x"), 16).unwrap(),
        REALTIME
    );
    // Memory is summarised, not a hex string of 16 KiB.
    let contents = reread.pointer("/memory/0/contents").unwrap();
    assert_eq!(contents["len"], 16 * 1024);
    assert!(contents["crc64"].as_str().unwrap().starts_with("0x"));

    // What the typed serde rendering gives a reader of doubles.
    let serde = serde_json::to_value(&state).unwrap();
    let number = serde
        .pointer("/vm/clock/realtime")
        .unwrap()
        .as_f64()
        .unwrap();
    assert_ne!(number as u64, REALTIME);
}

#[test]
fn test_schema_decode_diff_names_fields_and_summarises_memory() {
    let schema = committed_schema(2);
    let old = realistic_state();
    let mut new = old.clone();
    new.vcpus[1].regs.rip += 4;
    new.vm.clock.realtime += 1;
    for offset in [0x1000, 0x1001, 0x1002, 0x1003, 0x3000] {
        new.memory[0].contents[offset] ^= 0xff;
    }
    new.vcpus[0].xsave.region[7] = 0;
    let old_value = decode(&schema, &to_bytes(&old, &version_map(), 2));
    let new_value = decode(&schema, &to_bytes(&new, &version_map(), 2));
    let lines: Vec<String> = diff_values(&old_value, &new_value)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "vm.clock.realtime: 0x18ed1bd0d22a5a96 -> 0x18ed1bd0d22a5a97",
            "vcpus[0].xsave.region[7]: 7 -> 0",
            "vcpus[1].regs.rip: 0x1001 -> 0x1005",
            "memory[0].contents: 5 byte(s) differ in 2 page(s) of 4096 bytes, first at offset 0x1000",
        ]
    );
    assert!(diff_values(&old_value, &old_value.clone()).is_empty());
}

/// A snapshot of data version 1 against one of data version 2 of the same state: what
/// version 1 does not carry shows as absent, plus the flags its `ser_fn` cleared.
#[test]
fn test_schema_decode_diff_across_data_versions() {
    let state = realistic_state();
    let v1 = decode(&committed_schema(1), &to_bytes(&state, &version_map(), 1));
    let v2 = decode(&committed_schema(2), &to_bytes(&state, &version_map(), 2));
    let differences = diff_values(&v1, &v2);
    let paths: BTreeSet<&str> = differences.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "vm.clock.flags",
            "vm.clock.realtime",
            "vm.clock.host_tsc",
            "vcpus[0].tsc_khz",
            "vcpus[1].tsc_khz",
        ])
    );
    let line = differences
        .iter()
        .find(|d| d.path == "vcpus[1].tsc_khz")
        .unwrap()
        .to_string();
    assert_eq!(line, "vcpus[1].tsc_khz: absent -> some 2500000 (0x2625a0)");
}

/// The wrong schema for a state is an error, not a misread value: the other app version's
/// file, and the schema of another root type.
#[test]
fn test_schema_decode_wrong_schema_is_an_error() {
    let state = realistic_state();
    let v2_bytes = to_bytes(&state, &version_map(), 2);
    let error = decode_value(
        &committed_schema(1),
        &mut v2_bytes.as_slice(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::TrailingBytes { .. }
                | ValueError::Truncated { .. }
                | ValueError::Codec { .. }
                | ValueError::UnknownVariant { .. }
        ),
        "{error:?}"
    );
    let v1_bytes = to_bytes(&state, &version_map(), 1);
    assert!(decode_value(
        &committed_schema(2),
        &mut v1_bytes.as_slice(),
        &Limits::default()
    )
    .is_err());
    let vcpu_schema = export::<VcpuState>(&version_map(), 2).unwrap();
    let error =
        decode_value(&vcpu_schema, &mut v2_bytes.as_slice(), &Limits::default()).unwrap_err();
    assert!(!error.to_string().is_empty());
}

/// A state saved from a live KVM guest decodes from the committed file and encodes back to
/// the same bytes.
#[test]
fn test_schema_decode_live_kvm_state() {
    if !std::path::Path::new("/dev/kvm").exists() {
        assert_ne!(
            std::env::var("KVM_STATE_REQUIRE_KVM").as_deref(),
            Ok("1"),
            "/dev/kvm is missing and KVM_STATE_REQUIRE_KVM=1"
        );
        eprintln!("/dev/kvm is missing: skipping the KVM test");
        return;
    }
    // A VM with an in-kernel irqchip and PIT and one vCPU with the host's CPUID, saved
    // through the library's whole-VM API: every part of the state comes from KVM.
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    vm.create_pit2(kvm_bindings::kvm_pit_config::default())
        .unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid2(
        &kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .unwrap(),
    )
    .unwrap();
    let host = kvm_state::HostSupport::query(&kvm, &vm).unwrap();
    let msr_indices = kvm_state::savable_msr_indices(&kvm).unwrap();
    let state = kvm_state::save_microvm(
        &vm,
        &[&vcpu],
        &host,
        &msr_indices,
        DevicesState::default(),
        vec![MemoryRegionState::with_contents(
            0,
            (0..4096u32).map(|i| (i % 251) as u8).collect(),
        )],
    )
    .unwrap();
    let schema = committed_schema(kvm_state::CURRENT_APP_VERSION);
    let bytes = to_bytes(&state, &version_map(), kvm_state::CURRENT_APP_VERSION);
    let value = decode(&schema, &bytes);
    let mut again = Vec::new();
    encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
    assert_eq!(again, bytes);
    assert_eq!(
        pointer(&value, "/vcpus/0/regs/rip"),
        Some(format!("{:#x}", state.vcpus[0].regs.rip).into())
    );
    assert_eq!(
        pointer(&value, "/vm/clock/clock"),
        Some(format!("{:#x}", state.vm.clock.clock).into())
    );
    let Some(serde_json::Value::String(memory)) = pointer(&value, "/memory/0/contents") else {
        panic!("no memory contents")
    };
    assert_eq!(memory.len(), state.memory[0].contents.len() * 2);
}
