//! Sweeps over a realistic `MicrovmState` snapshot (no KVM needed): two vCPUs with a 4 KiB
//! xsave area, 40 MSRs and 75 CPUID leaves each, LAPIC pages, irqchips, PIT, clock, a UART,
//! a virtio-mmio transport with two queues and a 4 KiB memory region.
//!
//! - every truncation length is rejected;
//! - every single-bit flip of the header (magic and data version, the first 10 bytes) and of
//!   the CRC trailer is rejected;
//! - a seeded sample of single-bit flips and multi-byte corruptions of the body is rejected
//!   by the CRC;
//! - the same corruptions and truncations re-sealed with a correct CRC reach the decoders:
//!   each gives an error or a value, never a panic, and allocates less than the 10 MiB
//!   decode budget (measured with a counting global allocator).
//!
//! Run with `--nocapture` to see the counts (`docs/SECURITY.md` quotes them).

#![cfg(target_arch = "x86_64")]

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;
use kvm_state::{
    version_map, Cpuid, CpuidEntry, DebugRegs, DevicesState, IoapicState, Lapic, MemoryRegionState,
    MicrovmState, MmioTransportState, MpState, MsrEntry, Msrs, PicState, PitChannelState, PitState,
    QueueState, Regs, SerialState, Sregs, VcpuEvents, VcpuState, VmState, Xcr, Xcrs, Xsave,
    CURRENT_APP_VERSION,
};
use snapshot::{Snapshot, SnapshotError};
use versionize::crc::crc64;
use versionize::limits::DEFAULT_BUDGET;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts for the whole process: every test of this binary holds this lock, so
/// no test allocates while another measures.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes of the header the sweep flips every bit of: magic (8) and data version (2).
const HEADER_LEN: usize = 10;
/// Bytes of the CRC trailer.
const CRC_LEN: usize = 8;
/// Seeded single-bit flips of the body.
const BODY_BIT_FLIPS: usize = 4096;
/// Seeded multi-byte corruptions of the body.
const BODY_CORRUPTIONS: usize = 1024;

/// splitmix64: a small deterministic generator, so that every run sweeps the same sample.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vcpu(id: u32, rng: &mut Rng) -> VcpuState {
    let cpuid = Cpuid {
        entries: (0..75u32)
            .map(|i| CpuidEntry {
                function: if i < 32 { i } else { 0x8000_0000 + i - 32 },
                index: i % 3,
                flags: i % 2,
                eax: rng.next() as u32,
                ebx: rng.next() as u32,
                ecx: rng.next() as u32,
                edx: rng.next() as u32,
            })
            .collect(),
    };
    let msrs = Msrs {
        entries: (0..40u32)
            .map(|i| MsrEntry {
                index: match i {
                    0..=19 => 0x10 + i,
                    20..=29 => 0xc000_0080 + i - 20,
                    _ => 0x4b56_4d00 + i - 30,
                },
                data: rng.next(),
            })
            .collect(),
    };
    VcpuState {
        cpuid,
        mp_state: MpState { mp_state: 0 },
        regs: Regs {
            rax: rng.next(),
            rsp: 0x1_f000,
            rip: 0x8000 + u64::from(id) * 0x10,
            rflags: 0x202,
            ..Default::default()
        },
        sregs: Sregs {
            cr0: 0x8000_0011,
            cr3: 0x1000,
            cr4: 0x620,
            efer: 0x500,
            apic_base: 0xfee0_0900,
            interrupt_bitmap: [rng.next(), 0, 0, 0],
            ..Default::default()
        },
        xsave: Xsave {
            region: (0..1024).map(|_| rng.next() as u32).collect(),
            extra: Vec::new(),
        },
        xcrs: Xcrs {
            flags: 0,
            xcrs: vec![Xcr { xcr: 0, value: 7 }],
        },
        debug_regs: DebugRegs {
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            ..Default::default()
        },
        lapic: Lapic {
            regs: (0..1024).map(|_| rng.next() as u8).collect(),
        },
        msrs,
        vcpu_events: VcpuEvents {
            sipi_vector: id,
            flags: 0x1f,
            ..Default::default()
        },
        tsc_khz: Some(2_999_999),
        nested_state: None,
    }
}

/// The state the sweeps corrupt: what a 2-vCPU microVM with a UART and a virtio device saves
/// (its memory kept small so the sweeps stay fast).
fn realistic_state() -> MicrovmState {
    let mut rng = Rng(0x5eed);
    let pic = PicState {
        irr: 0x01,
        imr: 0xfb,
        irq_base: 0x20,
        init_state: 0,
        elcr_mask: 0xf8,
        ..Default::default()
    };
    let mut redirtbl = [0x1_0000u64; 24];
    redirtbl[4] = 0x24;
    let channel = PitChannelState {
        count: 0x1_0000,
        rw_mode: 3,
        mode: 2,
        gate: 1,
        count_load_time: 123_456_789,
        ..Default::default()
    };
    MicrovmState {
        vm: VmState {
            pic_master: pic.clone(),
            pic_slave: PicState {
                irq_base: 0x28,
                ..pic
            },
            ioapic: IoapicState {
                base_address: 0xfec0_0000,
                id: 0,
                redirtbl,
                ..Default::default()
            },
            pit: PitState {
                channels: [channel.clone(), channel.clone(), channel],
                flags: 0,
            },
            clock: kvm_state::ClockState {
                clock: 987_654_321,
                flags: 0,
                ..Default::default()
            },
        },
        vcpus: vec![vcpu(0, &mut rng), vcpu(1, &mut rng)],
        devices: DevicesState {
            serial: vec![SerialState {
                line_control: 0x03,
                line_status: 0x60,
                modem_control: 0x08,
                in_buffer: b"login: ".to_vec(),
                ..Default::default()
            }],
            virtio_mmio: vec![MmioTransportState {
                device_status: 0xf,
                acked_features: 0x1_3000_0000,
                queues: (0..2u64)
                    .map(|i| QueueState {
                        max_size: 256,
                        size: 256,
                        ready: true,
                        desc_table: 0x10_0000 + i * 0x1_0000,
                        avail_ring: 0x10_1000 + i * 0x1_0000,
                        used_ring: 0x10_2000 + i * 0x1_0000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        },
        memory: vec![MemoryRegionState::with_contents(
            0,
            (0..4096).map(|_| rng.next() as u8).collect(),
        )],
        ..Default::default()
    }
}

fn snapshot() -> Vec<u8> {
    realistic_state()
        .to_snapshot_bytes(CURRENT_APP_VERSION)
        .unwrap()
}

fn load(bytes: &[u8]) -> Result<(MicrovmState, u16), SnapshotError> {
    Snapshot::load::<_, MicrovmState>(&mut &bytes[..], bytes.len(), version_map())
}

/// Loads `bytes`, returning the result and the bytes allocated meanwhile.
fn load_counting(bytes: &[u8]) -> (Result<(MicrovmState, u16), SnapshotError>, usize) {
    let before = ALLOCATOR.total_allocated();
    let result = load(bytes);
    (result, ALLOCATOR.total_allocated() - before)
}

/// The error loading `bytes` gives; panics (without printing the state) if it loads.
fn rejected_by(bytes: &[u8], what: &str) -> SnapshotError {
    match load(bytes) {
        Ok(_) => panic!("{what}: loaded"),
        Err(err) => err,
    }
}

fn seal(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&crc64(body).to_le_bytes());
    bytes
}

/// One multi-byte corruption of `body` (which is changed): overwrite a run with random
/// bytes, zeros or 0xff, swap two runs, or move a run (shift the bytes after it).
fn corrupt(body: &mut Vec<u8>, rng: &mut Rng) {
    let len = 2 + rng.below(15);
    let at = HEADER_LEN + rng.below(body.len() - HEADER_LEN - len);
    match rng.below(5) {
        0 => body[at..at + len]
            .iter_mut()
            .for_each(|b| *b = rng.next() as u8),
        1 => body[at..at + len].fill(0),
        2 => body[at..at + len].fill(0xff),
        3 => {
            let other = HEADER_LEN + rng.below(body.len() - HEADER_LEN - len);
            let run: Vec<u8> = body[other..other + len].to_vec();
            body.copy_within(at..at + len, other);
            body[at..at + len].copy_from_slice(&run);
        }
        _ => {
            // Insert a run of random bytes: every later field moves.
            let run: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            body.splice(at..at, run);
        }
    }
}

/// Counts of a re-sealed sweep: how many loaded as a value, how many were errors, and the
/// most any one load allocated.
#[derive(Debug, Default)]
struct Outcomes {
    values: usize,
    errors: usize,
    max_allocated: usize,
}

impl Outcomes {
    fn record(&mut self, what: &str, bytes: &[u8]) {
        let (result, allocated) = load_counting(bytes);
        match result {
            Ok(_) => self.values += 1,
            Err(err) => {
                let _ = err.to_string();
                self.errors += 1;
            }
        }
        assert!(
            (allocated as u64) < DEFAULT_BUDGET,
            "{what}: allocated {allocated} bytes"
        );
        self.max_allocated = self.max_allocated.max(allocated);
    }
}

#[test]
fn test_hostile_state_realistic_snapshot_loads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let state = realistic_state();
    let bytes = snapshot();
    assert_eq!(load(&bytes).unwrap(), (state, CURRENT_APP_VERSION));
    eprintln!("realistic MicrovmState snapshot: {} bytes", bytes.len());
}

#[test]
fn test_hostile_state_every_truncation_is_rejected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = snapshot();
    for len in 0..bytes.len() {
        assert!(load(&bytes[..len]).is_err(), "length {len}");
        // The length the caller believes, with fewer bytes behind it.
        let err = Snapshot::load::<_, MicrovmState>(&mut &bytes[..len], bytes.len(), version_map())
            .unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::Io {
                    kind: std::io::ErrorKind::UnexpectedEof,
                    ..
                }
            ),
            "length {len}: {err}"
        );
    }
    // Re-sealed: a truncated state with a correct CRC reaches the decoders.
    let body = &bytes[..bytes.len() - CRC_LEN];
    let mut outcomes = Outcomes::default();
    for len in 0..body.len() {
        outcomes.record(&format!("sealed truncation {len}"), &seal(&body[..len]));
    }
    // A state cut anywhere cannot decode completely.
    assert_eq!(outcomes.values, 0, "{outcomes:?}");
    eprintln!(
        "truncations: {} rejected with the CRC, {} re-sealed: {outcomes:?}",
        bytes.len(),
        body.len()
    );
}

#[test]
fn test_hostile_state_every_header_and_crc_bit_flip_is_rejected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = snapshot();
    let positions = (0..HEADER_LEN).chain(bytes.len() - CRC_LEN..bytes.len());
    let mut rejected = 0;
    for byte in positions {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[byte] ^= 1 << bit;
            let err = rejected_by(&flipped, &format!("byte {byte} bit {bit}"));
            assert!(
                matches!(
                    err,
                    SnapshotError::InvalidMagic { .. }
                        | SnapshotError::InvalidFormatVersion { .. }
                        | SnapshotError::Crc64 { .. }
                ),
                "byte {byte} bit {bit}: {err}"
            );
            rejected += 1;
        }
    }
    assert_eq!(rejected, (HEADER_LEN + CRC_LEN) * 8);
    // Re-sealed, a flipped data version is named as such (or, for 1, read as app version 1
    // and refused for its leftover bytes).
    let body = &bytes[..bytes.len() - CRC_LEN];
    for byte in 8..HEADER_LEN {
        for bit in 0..8 {
            let mut flipped = body.to_vec();
            flipped[byte] ^= 1 << bit;
            let err = rejected_by(&seal(&flipped), &format!("sealed byte {byte} bit {bit}"));
            assert!(
                matches!(
                    err,
                    SnapshotError::InvalidDataVersion { .. }
                        | SnapshotError::TrailingBytes { .. }
                        | SnapshotError::Versionize(_)
                ),
                "byte {byte} bit {bit}: {err}"
            );
        }
    }
    eprintln!("header and CRC bit flips: {rejected} rejected");
}

#[test]
fn test_hostile_state_body_flips_and_corruptions_are_rejected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = snapshot();
    let body = &bytes[..bytes.len() - CRC_LEN];
    let mut rng = Rng(0xb0d7);
    let mut sealed = Outcomes::default();
    let mut rejected = 0;

    for i in 0..BODY_BIT_FLIPS {
        let bit = HEADER_LEN * 8 + rng.below((body.len() - HEADER_LEN) * 8);
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let err = rejected_by(&flipped, &format!("flip {i} (bit {bit})"));
        assert!(
            matches!(err, SnapshotError::Crc64 { .. }),
            "flip {i} (bit {bit}): {err}"
        );
        rejected += 1;
        sealed.record(
            &format!("sealed flip {i} (bit {bit})"),
            &seal(&flipped[..body.len()]),
        );
    }
    for i in 0..BODY_CORRUPTIONS {
        let mut corrupted = body.to_vec();
        // A corruption can happen to write what was there (zeros over zeros): draw another.
        while corrupted == body {
            corrupt(&mut corrupted, &mut rng);
        }
        // Keep the original CRC: it no longer matches.
        let mut with_old_crc = corrupted.clone();
        with_old_crc.extend_from_slice(&bytes[body.len()..]);
        let err = rejected_by(&with_old_crc, &format!("corruption {i}"));
        assert!(
            matches!(err, SnapshotError::Crc64 { .. }),
            "corruption {i}: {err}"
        );
        rejected += 1;
        sealed.record(&format!("sealed corruption {i}"), &seal(&corrupted));
    }
    assert_eq!(rejected, BODY_BIT_FLIPS + BODY_CORRUPTIONS);
    eprintln!(
        "body: {BODY_BIT_FLIPS} bit flips and {BODY_CORRUPTIONS} multi-byte corruptions \
         rejected with the CRC; re-sealed: {sealed:?}"
    );
}
