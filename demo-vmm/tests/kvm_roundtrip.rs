//! `kvm-state`'s vCPU and VM functions on `/dev/kvm`, on the demo VM's fds: MSR and TSC
//! frequency restore, and error paths (fds that are not KVM fds, malformed states). The
//! snapshot proofs are in `smp.rs` and `microvm_snapshot.rs`.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{kvm_available, loaded_vm};
use demo_vmm::{DemoVm, StopWhen};
use kvm_state::{
    pause_vcpu, restore_vcpu, restore_vm, save_vcpu, save_vm, MicrovmState, VcpuState,
};

/// Runs a fresh guest until the vCPUs have made `reports` reports; returns its saved state.
fn run_and_snapshot(reports: usize) -> MicrovmState {
    let mut vm = loaded_vm();
    vm.run(StopWhen::Reports(reports)).unwrap();
    vm.save_microvm().unwrap()
    // `vm` (and with it the VM and vCPU fds) is dropped here.
}

/// Reports (all vCPUs together) after which the BSP has its XMM registers loaded, the MSR
/// written and the LAPIC timer running.
const MID_RUN: usize = 8;

#[test]
fn test_restore_refused_msr_is_named() {
    if !kvm_available() {
        return;
    }
    let mut saved = run_and_snapshot(MID_RUN);
    saved.vcpus[0].msrs.entries.insert(
        3,
        kvm_state::MsrEntry {
            index: 0x0bad_0bad,
            data: 1,
        },
    );
    let target = DemoVm::new().unwrap();
    restore_vm(target.vm(), &saved.vm).unwrap();
    let err = restore_vcpu(&target.vcpus()[0], &saved.vcpus[0], &host(target.vm())).unwrap_err();
    match err {
        kvm_state::KvmStateError::MsrWrite {
            index,
            written,
            requested,
        } => {
            assert_eq!(index, 0x0bad_0bad);
            assert_eq!(written, 3);
            assert_eq!(requested, saved.vcpus[0].msrs.entries.len());
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn test_restore_tsc_khz() {
    if !kvm_available() {
        return;
    }
    let mut saved = run_and_snapshot(1);
    let Some(khz) = saved.vcpus[0].tsc_khz else {
        eprintln!("KVM_GET_TSC_KHZ unsupported: skipping");
        return;
    };
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    // Within 250 ppm: nothing to set, restore works everywhere.
    saved.vcpus[0].tsc_khz = Some(khz + khz / 10_000);
    let target = DemoVm::new().unwrap();
    restore_vcpu(&target.vcpus()[0], &saved.vcpus[0], &host(target.vm())).unwrap();
    // 1% slower: needs KVM_SET_TSC_KHZ, which only hosts with TSC scaling honour (without it
    // KVM accepts a faster TSC, by catching up in software, but refuses a slower one).
    let slower = khz - khz / 100;
    saved.vcpus[0].tsc_khz = Some(slower);
    let target = DemoVm::new().unwrap();
    let result = restore_vcpu(&target.vcpus()[0], &saved.vcpus[0], &host(target.vm()));
    if kvm.check_extension(kvm_ioctls::Cap::TscControl) {
        result.unwrap();
        assert_eq!(target.vcpus()[0].get_tsc_khz().unwrap(), slower);
    } else {
        match result {
            Err(kvm_state::KvmStateError::TscFrequency {
                saved_khz,
                current_khz,
                ..
            }) => {
                assert_eq!(saved_khz, slower);
                assert_eq!(current_khz, Some(khz));
            }
            other => panic!("expected a tsc frequency error, got {other:?}"),
        }
    }
}

/// A VM fd and a vCPU fd that are not KVM fds at all, so every ioctl fails (ENOTTY).
fn bad_fds() -> (kvm_ioctls::VmFd, kvm_ioctls::VcpuFd) {
    use std::os::fd::IntoRawFd;
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let good_vm = kvm.create_vm().unwrap();
    let not_a_vm = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    // SAFETY: `not_a_vm` is an open fd whose ownership we hand over; the VmFd closes it.
    let vm = unsafe { kvm.create_vmfd_from_rawfd(not_a_vm) }.unwrap();
    // The vCPU wrapper mmaps its fd for `kvm_run`, so use a file large enough for that.
    // One name per call: the tests of this binary run on parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("kvm-state-bad-vcpu-{}-{call}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.set_len(kvm.get_vcpu_mmap_size().unwrap() as u64)
        .unwrap();
    // SAFETY: the fd is open and handed over; the VcpuFd owns and closes it, and its mapping
    // is of a regular file of the size the wrapper maps.
    let vcpu = unsafe { good_vm.create_vcpu_from_rawfd(file.into_raw_fd()) }.unwrap();
    (vm, vcpu)
}

fn assert_ioctl_error(err: kvm_state::KvmStateError, name: &str) {
    use std::error::Error;
    match &err {
        kvm_state::KvmStateError::Ioctl { ioctl, source } => {
            assert_eq!(*ioctl, name);
            assert_eq!(source.errno(), libc::ENOTTY);
            assert!(err.source().is_some());
            assert_eq!(err.to_string(), format!("ioctl {name} failed"));
        }
        other => panic!("expected an ioctl error for {name}, got {other:?}"),
    }
}

#[test]
fn test_bad_fd_errors_name_the_ioctl() {
    if !kvm_available() {
        return;
    }
    let (saved_vcpu, saved_vm) = {
        let saved = run_and_snapshot(1);
        (saved.vcpus[0].clone(), saved.vm)
    };
    let (bad_vm, mut bad_vcpu) = bad_fds();
    assert_ioctl_error(save_vm(&bad_vm).unwrap_err(), "KVM_GET_IRQCHIP");
    assert_ioctl_error(
        restore_vm(&bad_vm, &saved_vm).unwrap_err(),
        "KVM_SET_IRQCHIP",
    );
    // A bad vCPU fd with a good VM fd: the first vCPU ioctl fails.
    let good = DemoVm::new().unwrap();
    assert_ioctl_error(
        save_vcpu(good.vm(), &bad_vcpu, good.msr_indices()).unwrap_err(),
        "KVM_GET_MP_STATE",
    );
    let no_tsc = VcpuState {
        tsc_khz: None,
        ..saved_vcpu.clone()
    };
    assert_ioctl_error(
        restore_vcpu(&bad_vcpu, &no_tsc, &host(good.vm())).unwrap_err(),
        "KVM_SET_CPUID2",
    );
    assert_ioctl_error(pause_vcpu(&mut bad_vcpu).unwrap_err(), "KVM_RUN");
    // A bad VM fd: the host query (xsave size) fails, before any vCPU ioctl.
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let err = kvm_state::HostSupport::query(&kvm, &bad_vm).unwrap_err();
    assert!(
        matches!(
            err,
            kvm_state::KvmStateError::Ioctl {
                ioctl: "KVM_CHECK_EXTENSION",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_malformed_state_fails_before_touching_the_vcpu() {
    if !kvm_available() {
        return;
    }
    let saved = run_and_snapshot(1);
    let (_, bad_vcpu) = bad_fds();
    let good = DemoVm::new().unwrap();
    let mut state = saved.vcpus[0].clone();
    state.lapic.regs.truncate(10);
    // The conversion error wins over the ioctl error the bad fd would give.
    assert!(matches!(
        restore_vcpu(&bad_vcpu, &state, &host(good.vm())),
        Err(kvm_state::KvmStateError::BadLength {
            what: "lapic registers",
            ..
        })
    ));
}

/// What this host offers the vCPUs of `vm`.
fn host(vm: &kvm_ioctls::VmFd) -> kvm_state::HostSupport {
    kvm_state::HostSupport::query(&kvm_ioctls::Kvm::new().unwrap(), vm).unwrap()
}
