//! A small VMM built only on `kvm-state`'s public API: a sample for VMM authors of how to
//! save a running SMP microVM to a snapshot file and resume it in a fresh VM.
//!
//! [`DemoVm`] creates a KVM VM with an in-kernel irqchip and PIT, 2 MiB of memory,
//! [`VCPU_COUNT`] vCPUs, a `vm_superio` 16550A UART on COM1 and a virtio-mmio device whose
//! queue is a `virtio_queue::Queue` (see [`virtio`]), and loads a guest whose three programs
//! (BSP with a small virtio driver, a running AP, an AP halted waiting for an IPI; see
//! [`guest`]) report values to an I/O port. [`DemoVm::run`] runs each vCPU on its own thread until a
//! [`StopWhen`] condition, then kicks every thread out of `KVM_RUN` with its
//! [`kvm_state::VcpuKick`] and pauses its vCPU ([`kvm_state::pause_vcpu`], which completes a
//! pending I/O instruction); the VM can then be saved:
//!
//! 1. [`DemoVm::save_microvm`]: [`kvm_state::save_microvm`] with the MSR list of
//!    [`kvm_state::savable_msr_indices`] and the [`kvm_state::HostSupport`] queried once when
//!    the VM was created (so the host's facts are recorded), the devices (the UART's
//!    `vm_superio` state as a [`kvm_state::SerialState`], the virtio transport and its
//!    `virtio_queue` state as a [`kvm_state::MmioTransportState`]) and guest memory;
//! 2. [`kvm_state::MicrovmState::save_to_file`].
//!
//! [`DemoVm::restore_microvm`] runs [`kvm_state::check_restore`] against the fresh VM's
//! [`DemoVm::layout`] and the demo's own device checks before it touches KVM, then writes
//! memory, [`kvm_state::CheckedRestore::restore_vm`], each vCPU with
//! [`kvm_state::CheckedRestore::restore_vcpu`] on a thread of its own, and the devices.
//!
//! Guest memory at real sizes: [`DemoVm::with_memory_size`] gives the guest up to 1 GiB,
//! across which it touches a page every 64 KiB before and after the snapshot point
//! ([`expected_output_for`]); [`DemoVm::save_with_memory`] keeps memory in a file beside the
//! state file, which [`DemoVm::restore_from_files`] maps back lazily (or reads eagerly);
//! [`DemoVm::save_diff`] and [`DemoVm::restore_from_chain`] do the same for diffs from the
//! dirty log, and [`DemoVm::save_to_chunk_store`] / [`DemoVm::restore_from_chunk_store`]
//! for a shared chunk store.
//!
//! The `demo-vmm` binary wraps this in a stable command line (`docs/DEMO-VMM.md`).
//!
//! ```
//! use demo_vmm::{expected_output, mid_run, DemoVm, StopWhen};
//! use kvm_state::{MicrovmState, CURRENT_APP_VERSION};
//!
//! # fn main() -> Result<(), demo_vmm::DemoVmError> {
//! # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
//! let path = std::env::temp_dir().join(format!("demo-vmm-doc-{}.snap", std::process::id()));
//! let mut source = DemoVm::new()?;
//! source.load_guest()?;
//! // Every vCPU thread runs until the snapshot point, then all are paused.
//! let before = source.run(StopWhen::Condition(mid_run))?;
//! source.save_microvm()?.save_to_file(&path, CURRENT_APP_VERSION)?;
//! drop(source);
//!
//! let (state, _app_version) = MicrovmState::load_file(&path)?;
//! # std::fs::remove_file(&path).ok();
//! let mut target = DemoVm::new()?;
//! target.restore_microvm(&state)?;
//! let after = target.run_to_end()?;
//! for (vcpu, (b, a)) in before.reports.iter().zip(&after).enumerate() {
//!     let resumed: Vec<u32> = b.iter().chain(a).copied().collect();
//!     assert_eq!(resumed, expected_output()[vcpu], "vcpu {vcpu}");
//! }
//! # Ok(())
//! # }
//! ```

#![cfg(target_arch = "x86_64")]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod error;
pub mod guest;
mod guest_code;
mod memory;
mod memory_files;
mod run;
pub mod virtio;
mod vm;

pub use error::{DemoVmError, Result};
pub use guest::{
    expected_output, expected_output_for, expected_virtio_output, mid_run, DONE_MARKER,
    MAX_MEM_SIZE, MEM_SIZE, VCPU_COUNT,
};
pub use run::{RunOutput, StopWhen, VIRTIO_REQUEST_INTERVAL};
pub use vm::{DemoVm, DEFAULT_TIMEOUT, SERIAL_FIFO_SIZE};
