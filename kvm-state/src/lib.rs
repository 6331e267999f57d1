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
//! use kvm_state::Regs;
//!
//! let kvm_regs = kvm_bindings::kvm_regs {
//!     rip: 0x8000,
//!     rflags: 0x2,
//!     ..Default::default()
//! };
//! let regs = Regs::from(&kvm_regs);
//! assert_eq!(regs.rip, 0x8000);
//! assert_eq!(kvm_bindings::kvm_regs::from(&regs), kvm_regs);
//! # }
//! ```
//!
//! A full save and restore on `/dev/kvm` (see `tests/kvm_roundtrip.rs`):
//!
//! ```no_run
//! # #[cfg(target_arch = "x86_64")]
//! # fn main() -> Result<(), kvm_state::KvmStateError> {
//! use kvm_state::demo::DemoVm;
//! use kvm_state::{pause_vcpu, restore_vcpu, restore_vm, save_vcpu, save_vm};
//!
//! let mut source = DemoVm::new()?;
//! source.load_guest()?;
//! source.run_until_report()?;
//! pause_vcpu(source.vcpu_mut())?;
//! let vm_state = save_vm(source.vm())?;
//! let vcpu_state = save_vcpu(source.vcpu(), source.caps())?;
//! let memory = source.read_memory();
//! drop(source);
//!
//! let mut target = DemoVm::new()?;
//! target.write_memory(0, &memory)?;
//! restore_vm(target.vm(), &vm_state)?;
//! restore_vcpu(target.vcpu(), target.caps(), &vcpu_state)?;
//! let rest = target.run_to_end()?;
//! # Ok(())
//! # }
//! # #[cfg(not(target_arch = "x86_64"))]
//! # fn main() {}
//! ```

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod device;
mod error;
#[cfg(target_arch = "x86_64")]
pub mod demo;
#[cfg(target_arch = "x86_64")]
pub mod msr;
#[cfg(target_arch = "x86_64")]
pub mod vcpu;
#[cfg(target_arch = "x86_64")]
pub mod vm;

pub use device::serial::SerialState;
pub use device::virtio::{MmioTransportState, QueueState};
pub use error::{KvmStateError, Result};
#[cfg(target_arch = "x86_64")]
pub use msr::{MsrEntry, Msrs};
#[cfg(target_arch = "x86_64")]
pub use vcpu::{
    pause_vcpu, restore_vcpu, save_vcpu, Cpuid, CpuidEntry, DTable, DebugRegs, ExceptionEvent,
    InterruptEvent, Lapic, MpState, NmiEvent, Regs, Segment, SmiEvent, Sregs, TripleFaultEvent,
    VcpuCaps, VcpuEvents, VcpuState, Xcr, Xcrs, Xsave,
};
#[cfg(target_arch = "x86_64")]
pub use vm::{
    restore_vm, save_vm, ClockState, IoapicState, IrqchipState, PicState, PitChannelState,
    PitState, VmState,
};
