//! `vmstate verify` runs the checks every restore runs before it touches KVM
//! (`kvm_state::check_state`): states that no restore accepts are refused with their cause,
//! never "ok", and never a panic.

#![cfg(all(target_arch = "x86_64", feature = "cli"))]

mod common;

use std::process::Command;

use common::TempDir;
use kvm_state::{
    check_state, CpuidEntry, Lapic, MemoryRegionState, MicrovmState, VcpuState, Xcr, Xsave,
    CURRENT_APP_VERSION, LAPIC_REGS_SIZE,
};

/// A state every check accepts: two vCPUs with kernel-sized areas, two memory regions.
fn sound() -> MicrovmState {
    let vcpu = VcpuState {
        xsave: Xsave {
            region: vec![0; 1024],
            extra: Vec::new(),
        },
        lapic: Lapic {
            regs: vec![0; LAPIC_REGS_SIZE],
        },
        ..Default::default()
    };
    // The second vCPU has APIC id 1 (register 0x20, bits 31:24): no two share one.
    let mut second = vcpu.clone();
    second.lapic.regs[0x23] = 1;
    MicrovmState {
        vcpus: vec![vcpu, second],
        memory: vec![
            MemoryRegionState::with_contents(0, vec![0; 4096]),
            MemoryRegionState {
                guest_phys_addr: 0x1_0000,
                size: 0x1000,
                contents: Vec::new(),
            },
        ],
        ..Default::default()
    }
}

/// Runs `vmstate verify` on `state` written to a file; returns success and the output.
fn verify(dir: &TempDir, name: &str, state: &MicrovmState) -> (bool, String) {
    let path = dir.path().join(name);
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .arg("verify")
        .arg(&path)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("panicked"), "{name}: {text}");
    (output.status.success(), text)
}

#[test]
fn test_verify_refuses_what_no_restore_accepts() {
    let dir = TempDir::new("verify-checks");
    check_state(&sound()).unwrap();
    let (ok, text) = verify(&dir, "sound.snap", &sound());
    assert!(ok, "{text}");
    assert!(text.contains("ok"), "{text}");

    let mut cases: Vec<(&str, MicrovmState, &str)> = Vec::new();
    let mut s = sound();
    s.vcpus[1].lapic.regs.clear();
    cases.push((
        "empty-lapic",
        s,
        "vcpu 1: lapic registers has 0 elements, expected 1024",
    ));
    let mut s = sound();
    s.vcpus[0].xsave.region = vec![0; 10];
    cases.push((
        "short-xsave",
        s,
        "vcpu 0: xsave region has 10 elements, expected 1024",
    ));
    let mut s = sound();
    s.vcpus[0].xcrs.xcrs = vec![Xcr::default(); 17];
    cases.push(("17-xcrs", s, "vcpu 0: xcrs has 17 elements, expected 16"));
    let mut s = sound();
    s.vcpus[0].cpuid.entries = (0..300)
        .map(|function| CpuidEntry {
            function,
            ..Default::default()
        })
        .collect();
    cases.push((
        "300-cpuid",
        s,
        "vcpu 0: cpuid entries has 300 elements, expected 256",
    ));
    let mut s = sound();
    s.vcpus[0].cpuid.entries = vec![CpuidEntry::default(), CpuidEntry::default()];
    cases.push((
        "duplicate-cpuid",
        s,
        "vcpu 0: cpuid leaf 0x0 index 0 duplicates an earlier entry",
    ));
    let mut s = sound();
    s.vcpus[1].lapic.regs[0x23] = 0;
    cases.push((
        "duplicate-apic-id",
        s,
        "vcpus 0 and 1 of the state have the same apic id 0",
    ));
    let mut s = sound();
    s.memory[1].guest_phys_addr = u64::MAX - 0xfff;
    s.memory[1].size = 0x2000;
    cases.push(("overflowing-region", s, "address plus size overflows"));
    let mut s = sound();
    s.memory[1].guest_phys_addr = 0x800;
    cases.push(("overlapping-regions", s, "overlaps another region"));
    // Sizes that add up past u64::MAX (the old verify summed them and panicked).
    let mut s = sound();
    s.memory = vec![
        MemoryRegionState {
            guest_phys_addr: 0,
            size: u64::MAX,
            contents: Vec::new(),
        },
        MemoryRegionState {
            guest_phys_addr: 0,
            size: u64::MAX,
            contents: Vec::new(),
        },
    ];
    cases.push(("sizes-overflow", s, "sizes of all regions overflow"));

    for (name, state, cause) in cases {
        assert!(check_state(&state).is_err(), "{name}");
        let (ok, text) = verify(&dir, &format!("{name}.snap"), &state);
        assert!(!ok, "{name}: verify said {text}");
        assert!(text.contains(cause), "{name}: {text}");
    }
}
