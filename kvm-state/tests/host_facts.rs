//! Host facts on `/dev/kvm`: a state records the CPU vendor, family/model/stepping, TSC
//! frequency, KVM capabilities and kernel release of the host it was saved on, and a restore
//! on a host that cannot honour them fails with a named error before it touches KVM.

#![cfg(target_arch = "x86_64")]

mod common;

use common::kvm_available;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_state::{
    check_restore, restore_microvm, savable_msr_indices, save_microvm, HostFacts, HostSupport,
    KvmStateError, MicrovmState, VmLayout,
};

/// A VM with an in-kernel irqchip and PIT and one vCPU given the CPUID KVM supports.
fn vm(kvm: &Kvm) -> (VmFd, VcpuFd) {
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
    (vm, vcpu)
}

fn saved(kvm: &Kvm) -> MicrovmState {
    let (vm, vcpu) = vm(kvm);
    let host = HostSupport::query(kvm, &vm).unwrap();
    save_microvm(
        &vm,
        &[&vcpu],
        &host,
        &savable_msr_indices(kvm).unwrap(),
        Default::default(),
        Vec::new(),
    )
    .unwrap()
}

#[test]
fn test_host_facts_recorded() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let state = saved(&kvm);
    let facts = &state.host;
    assert!(
        [
            "GenuineIntel",
            "AuthenticAMD",
            "HygonGenuine",
            "CentaurHauls"
        ]
        .contains(&facts.cpu_vendor.as_str()),
        "{facts:?}"
    );
    assert!(facts.cpu_family >= 6, "{facts:?}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(facts.kernel_release, release.trim());
    assert_eq!(facts.tsc_khz, state.vcpus[0].tsc_khz);
    // Every capability this host has among those a restore relies on.
    for &(cap, name) in HostFacts::relied_capabilities() {
        assert_eq!(
            facts.kvm_capabilities.contains(&cap),
            kvm.check_extension_raw(cap.into()) > 0,
            "{name}"
        );
    }
    // Through a snapshot at the current app version and back.
    let bytes = state
        .to_snapshot_bytes(kvm_state::CURRENT_APP_VERSION)
        .unwrap();
    let (loaded, _) = snapshot::Snapshot::load::<_, MicrovmState>(
        &mut bytes.as_slice(),
        bytes.len(),
        kvm_state::version_map(),
    )
    .unwrap();
    assert_eq!(&loaded.host, facts);
}

#[test]
fn test_host_facts_refused_before_touching_kvm() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let state = saved(&kvm);
    let (vm, vcpu) = vm(&kvm);
    let host = HostSupport::query(&kvm, &vm).unwrap();
    let layout = VmLayout::of_state(&state);

    let mut other_vendor = state.clone();
    other_vendor.host.cpu_vendor = if host.facts().cpu_vendor == "GenuineIntel" {
        "AuthenticAMD".to_owned()
    } else {
        "GenuineIntel".to_owned()
    };
    assert!(matches!(
        restore_microvm(&vm, &[&vcpu], &other_vendor, &host, &layout),
        Err(KvmStateError::HostVendor { .. })
    ));

    // A TSC slower than this host's: refused up front unless KVM can scale the TSC.
    if let Some(khz) = state.vcpus[0].tsc_khz {
        let mut slower = state.clone();
        slower.vcpus[0].tsc_khz = Some(khz - khz / 100);
        let result = check_restore(&slower, &host, &layout).map(drop);
        if kvm.check_extension(kvm_ioctls::Cap::TscControl) {
            result.unwrap();
        } else {
            match result {
                Err(KvmStateError::Vcpu { index: 0, source }) => assert!(
                    matches!(*source, KvmStateError::TscNotSettable { host_khz, .. } if host_khz == khz),
                    "{source:?}"
                ),
                other => panic!("expected a tsc error, got {other:?}"),
            }
        }
    }

    // Refused before any write: the same VM takes the real state, facts and all.
    restore_microvm(&vm, &[&vcpu], &state, &host, &layout).unwrap();
}
