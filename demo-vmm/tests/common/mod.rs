//! Helpers shared by the integration tests of the demo VMM.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether `/dev/kvm` is usable; panics when it is not but `KVM_STATE_REQUIRE_KVM=1`.
pub fn kvm_available() -> bool {
    if Path::new("/dev/kvm").exists() {
        return true;
    }
    if std::env::var("KVM_STATE_REQUIRE_KVM").as_deref() == Ok("1") {
        panic!("/dev/kvm is missing and KVM_STATE_REQUIRE_KVM=1");
    }
    eprintln!("/dev/kvm is missing: skipping the KVM test");
    false
}

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "demo-vmm-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh VM with the guest loaded.
pub fn loaded_vm() -> demo_vmm::DemoVm {
    let mut vm = demo_vmm::DemoVm::new().unwrap();
    vm.load_guest().unwrap();
    vm
}

/// Restores a state into a brand-new VM and runs it to the end; returns what each vCPU
/// reported after the restore.
pub fn restore_and_finish(state: &kvm_state::MicrovmState) -> demo_vmm::Result<Vec<Vec<u32>>> {
    let mut vm = demo_vmm::DemoVm::new()?;
    vm.restore_microvm(state)?;
    vm.run_to_end()
}

/// Restores a state into a brand-new VM and runs it to the end; returns everything the run
/// did (reports per vCPU, virtio payloads).
pub fn restore_and_run(state: &kvm_state::MicrovmState) -> demo_vmm::Result<demo_vmm::RunOutput> {
    let mut vm = demo_vmm::DemoVm::new()?;
    vm.restore_microvm(state)?;
    vm.run(demo_vmm::StopWhen::Done)
}

/// Checks that a run resumed from a snapshot (`before`, then `after` in a fresh VM) did
/// exactly what an uninterrupted run does: each vCPU's reports and the virtio payloads.
pub fn assert_resumed(before: &demo_vmm::RunOutput, after: &demo_vmm::RunOutput, what: &str) {
    assert!(after.finished, "{what}: the restored guest did not finish");
    assert_eq!(
        joined(&before.reports, &after.reports),
        demo_vmm::expected_output(),
        "{what}: before {:x?}",
        before.reports
    );
    let virtio: Vec<u32> = before.virtio.iter().chain(&after.virtio).copied().collect();
    assert_eq!(virtio, demo_vmm::expected_virtio_output(), "{what}: virtio");
}

/// `before` and `after` joined per vCPU.
pub fn joined(before: &[Vec<u32>], after: &[Vec<u32>]) -> Vec<Vec<u32>> {
    assert_eq!(before.len(), after.len());
    before
        .iter()
        .zip(after)
        .map(|(b, a)| b.iter().chain(a).copied().collect())
        .collect()
}

/// What each vCPU still reports in an uninterrupted run after it has reported `before`.
pub fn expected_rest(before: &[Vec<u32>]) -> Vec<Vec<u32>> {
    demo_vmm::expected_output()
        .iter()
        .zip(before)
        .map(|(all, b)| all[b.len()..].to_vec())
        .collect()
}
