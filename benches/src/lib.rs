//! Payloads and helpers for the criterion benchmarks in `benches/state.rs`.
//!
//! The payload is a `MicrovmState`-shaped value (2 vCPUs with XSAVE areas, LAPIC pages,
//! MSRs and CPUID, the IRQ chip, the PIT, a UART, a virtio device with 2 queues) plus a
//! 10,000-word `Vec<u64>`, built from a fixed seed. Every struct derives both `Versionize`
//! and serde's traits, so the baseline (bincode 2 with `config::legacy()`) encodes the very
//! same value, into the very same bytes at the latest version.
//!
//! The `report` binary turns criterion's results into the table of `benches/README.md`.
//!
//! # Example
//! ```
//! use benchmarks::{version_map, MicrovmState};
//! use versionize::Versionize;
//!
//! let state = MicrovmState::bench_payload();
//! let map = version_map(4);
//! let mut bytes = Vec::new();
//! state.serialize(&mut bytes, &map, map.latest_version()).unwrap();
//! let back = MicrovmState::deserialize(&mut bytes.as_slice(), &map, 4).unwrap();
//! assert_eq!(back, state);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod payload;
pub mod report;

pub use crate::payload::{
    version_map, ArrayField, CpuidEntry, DTable, DeviceStates, IoapicState, MicrovmState, MsrEntry,
    PicState, PitChannel, PitState, QueueState, Regs, Segment, SerialState, SplitMix64, Sregs,
    VcpuEvents, VcpuState, VecField, VirtioDeviceState, VmState, CPUID_ENTRIES, DIRTY_LOG_WORDS,
    LAPIC_BYTES, MSRS_PER_VCPU, MSR_TSC_KHZ_CARRIER, SERIAL_BUFFERED, XSAVE_WORDS,
};
