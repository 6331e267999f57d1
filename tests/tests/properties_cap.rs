//! A state that fits the cap on disk loads: the decode budget counts memory, which exceeds
//! the bytes on disk, so the snapshot loader decodes a state that passed its cap with a
//! budget of at least `BUDGET_PER_STATE_BYTE` times the state's size.

#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;

use kvm_state::MemoryRegionState;
use kvm_state::{MicrovmState, VcpuState, CURRENT_APP_VERSION};
use snapshot::{DEFAULT_MAX_STATE_LEN, MIN_SNAPSHOT_LEN};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("properties-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A valid state of `regions` memory regions whose snapshot holds exactly `state_len`
/// bytes of state: the last region's contents fill what the rest leaves.
fn state_of_len(state_len: u64, regions: usize) -> MicrovmState {
    let mut state = MicrovmState {
        vcpus: vec![VcpuState::default(); 2],
        ..MicrovmState::default()
    };
    for index in 0..regions {
        let address = u64::try_from(index).unwrap() << 32;
        state
            .memory
            .push(MemoryRegionState::with_contents(address, vec![0x5A; 16]));
    }
    let without = state.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap().len() as u64;
    let fill = state_len - (without - MIN_SNAPSHOT_LEN);
    let last = state.memory.last_mut().unwrap();
    *last = MemoryRegionState::with_contents(last.guest_phys_addr, vec![0xA5; 16 + fill as usize]);
    let bytes = state.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap();
    assert_eq!(bytes.len() as u64 - MIN_SNAPSHOT_LEN, state_len);
    state
}

#[test]
fn test_properties_cap_state_of_exactly_the_default_cap_loads() {
    // Few regions (as a real microVM) and many (in-memory size well above the encoding).
    for regions in [1, 4096] {
        let state = state_of_len(DEFAULT_MAX_STATE_LEN, regions);
        let path = temp_path(&format!("exact-{regions}.snap"));
        state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
        let (loaded, version) =
            MicrovmState::load_file(&path).unwrap_or_else(|err| panic!("{regions} regions: {err}"));
        assert_eq!((loaded == state, version), (true, CURRENT_APP_VERSION));
        // One byte more is refused by the cap, before decoding.
        let over = state_of_len(DEFAULT_MAX_STATE_LEN + 1, regions);
        over.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
        let err = MicrovmState::load_file(&path).unwrap_err();
        assert!(format!("{err:?}").contains("StateTooLarge"), "{err:?}");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn test_properties_cap_load_file_with_cap_of_the_state_size_loads() {
    let state_len = 12 << 20;
    for regions in [1, 4096] {
        let state = state_of_len(state_len, regions);
        let path = temp_path(&format!("cap-{regions}.snap"));
        state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
        let (loaded, _) = MicrovmState::load_file_with_cap(&path, state_len)
            .unwrap_or_else(|err| panic!("{regions} regions: {err}"));
        assert!(loaded == state);
        let err = MicrovmState::load_file_with_cap(&path, state_len - 1).unwrap_err();
        assert!(format!("{err:?}").contains("StateTooLarge"), "{err:?}");
        std::fs::remove_file(&path).unwrap();
    }
}
