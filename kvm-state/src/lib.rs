//! Named, versionable x86_64 KVM state: vCPU registers, LAPIC, MSRs, events and CPUID; the VM's
//! irqchips, PIT and clock; and the state of common emulated devices. Each type converts
//! losslessly from and to its `kvm-bindings` structure, and [`save_vcpu`]/[`restore_vcpu`] and
//! [`save_vm`]/[`restore_vm`] read and write them through live `kvm-ioctls` fds in the order
//! KVM needs.
//!
//! # Example
//!
//! ```
//! # #[cfg(target_arch = "x86_64")] {
//! use kvm_state::{version_map, Regs, CURRENT_APP_VERSION};
//! use versionize::Versionize;
//!
//! let kvm_regs = kvm_bindings::kvm_regs {
//!     rip: 0x8000,
//!     rflags: 0x2,
//!     ..Default::default()
//! };
//! let regs = Regs::from(&kvm_regs);
//! assert_eq!(regs.rip, 0x8000);
//!
//! // Versioned bytes: 18 little-endian u64 registers, no tags.
//! let map = version_map();
//! let mut bytes = Vec::new();
//! regs.serialize(&mut bytes, &map, CURRENT_APP_VERSION).unwrap();
//! assert_eq!(bytes.len(), 18 * 8);
//! let back = Regs::deserialize(&mut bytes.as_slice(), &map, CURRENT_APP_VERSION).unwrap();
//! assert_eq!(kvm_bindings::kvm_regs::from(&back), kvm_regs);
//! # }
//! ```
//!
//! Every state type derives `versionize::Versionize`; [`MicrovmState`] gathers them with the
//! device state and guest memory, and [`version_map`] is the app version map a VMM registers
//! at start-up (history in [`microvm`]). A full save to a snapshot file and restore into a
//! fresh VM on `/dev/kvm` (see `examples/microvm.rs` and `tests/microvm_snapshot.rs`):
//!
//! ```no_run
//! # #[cfg(target_arch = "x86_64")]
//! # fn main() -> Result<(), kvm_state::KvmStateError> {
//! use kvm_state::demo::DemoVm;
//! use kvm_state::{MicrovmState, APP_VERSION_1, CURRENT_APP_VERSION};
//!
//! let mut source = DemoVm::new()?;
//! source.load_guest()?;
//! source.run_until_report()?;
//! // Pause (complete the pending I/O), then read the VM, the vCPU and guest memory.
//! let state = source.save_microvm()?;
//! drop(source);
//! state.save_to_file("/tmp/vm.snap", CURRENT_APP_VERSION)?;
//! // For a build that only knows app version 1 (rollback):
//! state.save_to_file("/tmp/vm-v1.snap", APP_VERSION_1)?;
//!
//! let (loaded, _app_version) = MicrovmState::load_file("/tmp/vm.snap")?;
//! let mut target = DemoVm::new()?;
//! target.restore_microvm(&loaded)?;
//! let rest = target.run_to_end()?;
//! # Ok(())
//! # }
//! # #[cfg(not(target_arch = "x86_64"))]
//! # fn main() {}
//! ```
//!
//! # Cargo features
//!
//! - `cli` (default): the `vmstate` binary, which inspects, verifies, dumps and converts
//!   snapshot files of [`MicrovmState`] and exports or compares its schema (`vmstate --help`).
//!   Turn it off (`default-features = false`) to build the library without `clap`.
//! - `vm-superio`: `From` conversions between [`SerialState`] and
//!   `vm_superio::serial::SerialState`.
//! - `virtio-queue`: `From` conversions between [`QueueState`] and `virtio_queue::QueueState`.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(target_arch = "x86_64")]
pub mod demo;
pub mod device;
mod error;
mod memory;
#[cfg(target_arch = "x86_64")]
pub mod microvm;
#[cfg(target_arch = "x86_64")]
pub mod msr;
#[cfg(test)]
mod test_util;
#[cfg(target_arch = "x86_64")]
pub mod vcpu;
#[cfg(target_arch = "x86_64")]
pub mod vm;

pub use device::serial::SerialState;
pub use device::virtio::{MmioTransportState, QueueState};
pub use error::{KvmStateError, Result};
pub use memory::{
    kvm_dirty_bitmap, merge_memory_chain, read_memory_diff_info, restore_memory_chain,
    restore_memory_file, save_memory_diff, save_memory_file, verify_memory_file, ChunkSaveStats,
    ChunkStore, DiffRegion, GcStats, GuestMemoryMapping, GuestRegion, MemoryDiffInfo, MemoryError,
    MemoryFileDescriptor, MemoryFileRegion, MemoryLayerId, MemoryResult, PageHashes, RestoreMode,
    DEFAULT_CHUNK_SIZE, PAGE_SIZE,
};
#[cfg(target_arch = "x86_64")]
pub use microvm::{
    version_map, DevicesState, MemoryRegionState, MicrovmState, APP_VERSION_1, APP_VERSION_2,
    CURRENT_APP_VERSION,
};
#[cfg(target_arch = "x86_64")]
pub use msr::{MsrEntry, Msrs};
#[cfg(target_arch = "x86_64")]
pub use vcpu::{
    pause_vcpu, restore_vcpu, save_vcpu, Cpuid, CpuidEntry, DTable, DebugRegs, ExceptionEvent,
    InterruptEvent, Lapic, MpState, NmiEvent, Regs, Segment, SmiEvent, Sregs, TripleFaultEvent,
    VcpuEvents, VcpuState, Xcr, Xcrs, Xsave,
};
#[cfg(target_arch = "x86_64")]
pub use vm::{
    restore_vm, save_vm, ClockState, IoapicState, IrqchipState, PicState, PitChannelState,
    PitState, VmState,
};
