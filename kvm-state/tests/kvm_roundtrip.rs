//! End-to-end save/restore on `/dev/kvm` with the demo guest.

#![cfg(target_arch = "x86_64")]

use kvm_state::demo::{expected_output, DemoExit, DemoVm};

/// Whether `/dev/kvm` is usable; panics when it is not but `KVM_STATE_REQUIRE_KVM=1`.
fn kvm_available() -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        return true;
    }
    if std::env::var("KVM_STATE_REQUIRE_KVM").as_deref() == Ok("1") {
        panic!("/dev/kvm is missing and KVM_STATE_REQUIRE_KVM=1");
    }
    eprintln!("/dev/kvm is missing: skipping the KVM test");
    false
}

#[test]
fn test_demo_guest_uninterrupted() {
    if !kvm_available() {
        return;
    }
    let mut vm = DemoVm::new().unwrap();
    vm.load_guest().unwrap();
    let t = std::time::Instant::now();
    let mut out = Vec::new();
    loop {
        match vm.run_until_report() {
            Ok(DemoExit::Report(v)) => out.push(v),
            Ok(DemoExit::Done) => break,
            Err(e) => panic!("after {:x?}: {e}", out),
        }
    }
    eprintln!("took {:?}", t.elapsed());
    assert_eq!(out, expected_output());
}
