//! Named, versionable x86_64 KVM state: vCPU registers, LAPIC, MSRs, events and CPUID; the VM's
//! irqchips, PIT and clock; and the state of common emulated devices. Each type converts
//! losslessly from and to its `kvm-bindings` structure, and the functions below read and write
//! them through a VMM's live `kvm-ioctls` fds, checking first, in the order KVM needs.
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
//! at start-up (its history is in its docs).
//!
//! # The map
//!
//! - **Whole VM**, over the VMM's own fds: [`save_microvm`]; [`check_state`] (the checks that
//!   need no host, which `vmstate verify` runs), [`check_restore`] (every check a restore
//!   runs before it touches KVM: vCPU and device counts, memory layout ([`VmLayout`]), the
//!   CPUID and xsave size this host offers and whether it can honour the saved
//!   [`HostFacts`] ([`HostSupport`])), then [`CheckedRestore`] to
//!   write the VM and each vCPU, on the vCPU's own thread if need be; [`restore_microvm`]
//!   does both for a VMM that lends all its vCPU fds.
//! - **One vCPU**: [`save_vcpu`], [`restore_vcpu`] (which runs [`check_vcpu`] first),
//!   [`pause_vcpu`]; [`VcpuKick`] stops a vCPU that runs on another thread, without signal
//!   handlers.
//! - **VM-wide**: [`save_vm`], [`restore_vm`].
//! - **Helpers**: [`savable_msr_indices`], [`get_msrs`]/[`set_msrs`] (any number of MSRs),
//!   [`check_cpuid`], [`xsave_size`], [`restore_tsc_khz`].
//! - **Files**: [`MicrovmState::save_to_file`], [`MicrovmState::load_file`]; with guest
//!   memory in a file beside the state, [`MicrovmState::save_with_memory`],
//!   [`MicrovmState::load_with_memory`] (lazy or eager), and diff snapshots
//!   ([`MicrovmState::save_diff_with_memory`], [`MicrovmState::load_with_memory_chain`]).
//!
//! The workspace's `demo-vmm` crate is a complete small VMM built on this public API alone:
//! an SMP guest with a `vm-superio` UART and a virtio-mmio device on `/dev/kvm`, snapshotted
//! to a file mid-run and resumed in a fresh VM.
//!
//! # Saving and restoring a VM whose vCPUs run on their own threads
//!
//! ```no_run
//! # #[cfg(target_arch = "x86_64")]
//! # fn sketch(
//! #     kvm: &kvm_ioctls::Kvm,
//! #     vm: &kvm_ioctls::VmFd,
//! #     vcpu_threads: Vec<(kvm_ioctls::VcpuFd, kvm_state::VcpuKick)>,
//! #     new_vm: &kvm_ioctls::VmFd,
//! #     new_vcpus: Vec<kvm_ioctls::VcpuFd>,
//! #     memory: Vec<kvm_state::MemoryRegionState>,
//! #     layout: kvm_state::VmLayout,
//! # ) -> kvm_state::Result<()> {
//! use kvm_state::{
//!     check_restore, pause_vcpu, save_vcpu, save_vm, savable_msr_indices, HostSupport,
//!     MicrovmState, CURRENT_APP_VERSION,
//! };
//!
//! // Save. Each vCPU thread, kicked out of KVM_RUN by its `VcpuKick` (see its docs), calls
//! // `pause_vcpu` and `save_vcpu` on its own fd; shown here in one loop.
//! let msr_indices = savable_msr_indices(kvm)?;
//! let mut vcpus = Vec::new();
//! for (mut vcpu, _kick) in vcpu_threads {
//!     pause_vcpu(&mut vcpu)?;
//!     vcpus.push(save_vcpu(vm, &vcpu, &msr_indices)?);
//! }
//! let mut state = MicrovmState { vm: save_vm(vm)?, vcpus, memory, ..Default::default() };
//! state.host = HostSupport::query(kvm, vm)?.facts().clone();
//! state.save_to_file("/tmp/vm.snap", CURRENT_APP_VERSION)?;
//!
//! // Restore into a fresh VM with the same layout: every check first, nothing written if
//! // one fails; then guest memory (the VMM's), the VM-wide state, each vCPU on its thread.
//! let (loaded, _app_version) = MicrovmState::load_file("/tmp/vm.snap")?;
//! let host = HostSupport::query(kvm, new_vm)?;
//! let checked = check_restore(&loaded, &host, &layout)?;
//! // ... write `loaded.memory` into guest memory ...
//! checked.restore_vm(new_vm)?;
//! std::thread::scope(|s| {
//!     let threads: Vec<_> = (new_vcpus.iter().enumerate())
//!         .map(|(index, vcpu)| {
//!             let checked = &checked;
//!             s.spawn(move || checked.restore_vcpu(index, vcpu))
//!         })
//!         .collect();
//!     threads.into_iter().try_for_each(|t| t.join().expect("vcpu thread panicked"))
//! })?;
//! // ... restore `loaded.devices`, then run the vCPUs ...
//! # Ok(())
//! # }
//! ```
//!
//! # Cargo features
//!
//! - `cli` (default): the `vmstate` binary ([`vmstate-cli`](https://docs.rs/vmstate-cli)
//!   for [`MicrovmState`]), which inspects, verifies, dumps, compares and converts snapshot
//!   files and exports or compares their schema (`vmstate --help`). Turn it off
//!   (`default-features = false`) to build the library without `clap`.
//! - `vm-superio`: `From` conversions between [`SerialState`] and
//!   `vm_superio::serial::SerialState`.
//! - `virtio-queue`: `From` conversions between [`QueueState`] and `virtio_queue::QueueState`.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod device;
mod error;
#[cfg(target_arch = "x86_64")]
mod host;
mod memory;
#[cfg(target_arch = "x86_64")]
mod microvm;
#[cfg(target_arch = "x86_64")]
mod msr;
#[cfg(target_arch = "x86_64")]
mod pause;
#[cfg(test)]
mod test_util;
#[cfg(target_arch = "x86_64")]
mod vcpu;
#[cfg(target_arch = "x86_64")]
mod vm;
#[cfg(target_arch = "x86_64")]
mod whole_vm;

pub use device::{MmioTransportState, QueueState, SerialState};
pub use error::{KvmStateError, Result};
#[cfg(target_arch = "x86_64")]
pub use host::{HostFacts, HostSupport};
pub use memory::{
    kvm_dirty_bitmap, merge_memory_chain, read_memory_diff_info, restore_memory_chain,
    restore_memory_file, save_memory_diff, save_memory_file, verify_memory_file, ChunkSaveStats,
    ChunkStore, DiffRegion, GcStats, GuestMemoryMapping, GuestRegionBytes, MemoryDiffInfo,
    MemoryError, MemoryFileDescriptor, MemoryFileRegion, MemoryLayerId, MemoryResult, PageHashes,
    RestoreMode, DEFAULT_CHUNK_SIZE, PAGE_SIZE,
};
#[cfg(target_arch = "x86_64")]
pub use microvm::{
    releases_reading, version_map, DevicesState, MemoryRegionState, MemorySource, MicrovmState,
    Release, APP_VERSION_1, APP_VERSION_2, APP_VERSION_3, APP_VERSION_4, APP_VERSION_5,
    APP_VERSION_6, CURRENT_APP_VERSION, RELEASES,
};
#[cfg(target_arch = "x86_64")]
pub use msr::{
    get_msrs, is_savable_msr, savable_msr_indices, set_msrs, MsrEntry, Msrs, MAX_MSRS_PER_CALL,
    MSR_IA32_KERNEL_GS_BASE, MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE, MSR_KVM_PV_FIRST,
    MSR_KVM_PV_LAST,
};
#[cfg(target_arch = "x86_64")]
pub use pause::{pause_vcpu, VcpuKick};
#[cfg(target_arch = "x86_64")]
pub use vcpu::{
    check_cpuid, check_vcpu, restore_tsc_khz, restore_vcpu, save_vcpu, xsave_size, Cpuid,
    CpuidEntry, DTable, DebugRegs, ExceptionEvent, InterruptEvent, Lapic, MpState, NmiEvent, Regs,
    Segment, SmiEvent, Sregs, TripleFaultEvent, VcpuEvents, VcpuState, Xcr, Xcrs, Xsave,
    LAPIC_REGS_SIZE, LEGACY_XSAVE_SIZE, TSC_KHZ_TOLERANCE_PPM,
};
#[cfg(target_arch = "x86_64")]
pub use vm::{
    restore_vm, save_vm, ClockState, IoapicState, IrqchipState, PicState, PitChannelState,
    PitState, VmState, CLOCK_HOST_ONLY_FLAGS, IOAPIC_NUM_PINS,
};
#[cfg(target_arch = "x86_64")]
pub use whole_vm::{
    check_restore, check_state, restore_microvm, save_microvm, CheckedRestore, GuestRegion,
    VmLayout,
};
