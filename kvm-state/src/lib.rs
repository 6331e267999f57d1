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
//! at start-up (history in [`microvm`]). A VMM saves a paused VM with [`save_vm`] and
//! [`save_vcpu`] for each vCPU (MSRs from [`savable_msr_indices`]), writes the
//! [`MicrovmState`] with [`MicrovmState::save_to_file`], and on the target host loads it with
//! [`MicrovmState::load_file`], checks it ([`check_cpuid`], [`xsave_size`]) and writes it with
//! [`restore_vm`] and then [`restore_vcpu`] for each vCPU. The workspace's `demo-vmm` crate is
//! a complete small VMM built that way on this crate's public API: an SMP guest on `/dev/kvm`,
//! snapshotted to a file mid-run and resumed in a fresh VM.
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

pub mod device;
mod error;
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
#[cfg(target_arch = "x86_64")]
pub use microvm::{
    version_map, DevicesState, MemoryRegionState, MicrovmState, APP_VERSION_1, APP_VERSION_2,
    CURRENT_APP_VERSION,
};
#[cfg(target_arch = "x86_64")]
pub use msr::{savable_msr_indices, MsrEntry, Msrs};
#[cfg(target_arch = "x86_64")]
pub use vcpu::{
    check_cpuid, pause_vcpu, restore_vcpu, save_vcpu, xsave_size, Cpuid, CpuidEntry, DTable,
    DebugRegs, ExceptionEvent, InterruptEvent, Lapic, MpState, NmiEvent, Regs, Segment, SmiEvent,
    Sregs, TripleFaultEvent, VcpuEvents, VcpuState, Xcr, Xcrs, Xsave, LEGACY_XSAVE_SIZE,
};
#[cfg(target_arch = "x86_64")]
pub use vm::{
    restore_vm, save_vm, ClockState, IoapicState, IrqchipState, PicState, PitChannelState,
    PitState, VmState,
};
