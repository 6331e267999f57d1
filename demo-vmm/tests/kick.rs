//! The demo VMM stops its vCPU threads with `kvm_state::VcpuKick`, which blocks the kick
//! signal in each vCPU thread instead of handling it: after runs that were stopped by kicks
//! (at a report, and at an arbitrary moment), no signal handler is installed in the process.

#![cfg(target_arch = "x86_64")]

mod common;

use std::time::Duration;

use common::{kvm_available, loaded_vm};
use demo_vmm::StopWhen;

/// The disposition of `signal` in this process: `SIG_DFL`, `SIG_IGN` or a handler's address.
fn disposition(signal: libc::c_int) -> libc::sighandler_t {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is a writable `sigaction` the kernel
    // fills, zero-initialised before.
    let rc = unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) };
    assert_eq!(rc, 0, "sigaction({signal})");
    // SAFETY: zero-initialised above and filled by the successful call.
    unsafe { old.assume_init() }.sa_sigaction
}

#[test]
fn test_kick_installs_no_signal_handler() {
    if !kvm_available() {
        return;
    }
    let signals: Vec<libc::c_int> =
        (vmm_sys_util::signal::SIGRTMIN()..=vmm_sys_util::signal::SIGRTMAX()).collect();
    let before: Vec<_> = signals.iter().map(|&s| disposition(s)).collect();
    let mut vm = loaded_vm();
    let out = vm.run(StopWhen::Reports(5)).unwrap();
    assert!(!out.finished);
    vm.save_microvm().unwrap();
    let mut vm = loaded_vm();
    vm.run(StopWhen::After(Duration::from_millis(2))).unwrap();
    vm.save_microvm().unwrap();
    let after: Vec<_> = signals.iter().map(|&s| disposition(s)).collect();
    assert_eq!(after, before, "a real-time signal's handler changed");
    assert!(
        after.iter().all(|&d| d == libc::SIG_DFL),
        "real-time signal dispositions {after:x?}"
    );
}
