//! Fuzz target `restore_checks`: the checks every restore runs before it touches KVM
//! (`kvm_state::check_state`, `kvm_state::check_restore`), on any state the decoder accepts.
//!
//! The first byte picks the app version; the rest is decoded as a `MicrovmState` without a
//! snapshot container (no CRC to get past), so the fuzzer reaches the checks with states of
//! every shape: empty or oversized LAPIC pages and xsave areas, many CPUID leaves, duplicate
//! leaves, memory regions that overflow or overlap. The checks must return, never panic, and
//! agree with each other: what `check_restore` accepts, `check_state` accepts.

/// Runs the checks on the state decoded from `data`.
#[cfg(target_arch = "x86_64")]
pub fn restore_checks(data: &[u8]) {
    use kvm_state::{check_restore, check_state, GuestRegion, HostSupport, MicrovmState, VmLayout};
    use versionize::Versionize;

    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let map = crate::oracle::fuzz_version_map();
    let app_version = u16::from(selector) % map.latest_version() + 1;
    let Ok(state) = MicrovmState::deserialize(&mut rest, &map, app_version) else {
        return;
    };
    let state_ok = check_state(&state).is_ok();

    // A host that offers the state's own CPUID (the widest a check could accept) and one that
    // offers nothing; the layout the state describes and one with a region moved.
    let own_cpuid: Vec<_> = state
        .vcpus
        .first()
        .map(|vcpu| vcpu.cpuid.entries.iter().map(Into::into).collect())
        .unwrap_or_default();
    let hosts = [
        HostSupport::new(own_cpuid, None),
        HostSupport::new(Vec::new(), Some(4096)),
    ];
    let own = VmLayout::of_state(&state);
    let mut moved = own.clone();
    if let Some(region) = moved.memory.first_mut() {
        *region = GuestRegion {
            guest_phys_addr: region.guest_phys_addr.wrapping_add(4096),
            size: region.size,
        };
    }
    for host in &hosts {
        for layout in [&own, &moved] {
            if check_restore(&state, host, layout).is_ok() {
                assert!(
                    state_ok,
                    "check_restore accepted a state that check_state refuses"
                );
            }
        }
    }
}
