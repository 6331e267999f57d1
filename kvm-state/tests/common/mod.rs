//! Helpers shared by the KVM integration tests.

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
            "kvm-state-{name}-{}-{}",
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

/// Runs `vm` until it has reported `reports` values (stopped at that I/O exit) and returns
/// them.
#[cfg(target_arch = "x86_64")]
pub fn run_reports(vm: &mut kvm_state::demo::DemoVm, reports: usize) -> Vec<u32> {
    use kvm_state::demo::DemoExit;
    let mut out = Vec::new();
    while out.len() < reports {
        match vm.run_until_report().unwrap() {
            DemoExit::Report(v) => out.push(v),
            DemoExit::Done => panic!("guest finished before {reports} reports"),
        }
    }
    out
}

/// Restores a state into a brand-new VM and runs it to the end.
#[cfg(target_arch = "x86_64")]
pub fn restore_and_finish(state: &kvm_state::MicrovmState) -> kvm_state::Result<Vec<u32>> {
    let mut vm = kvm_state::demo::DemoVm::new()?;
    vm.restore_microvm(state)?;
    vm.set_timeout(std::time::Duration::from_millis(500));
    vm.run_to_end()
}
