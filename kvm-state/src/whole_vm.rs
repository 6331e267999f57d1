//! Whole-VM save and restore over a VMM's own fds: the checks a restore runs before it touches
//! KVM ([`check_state`], [`check_restore`]), and the functions that save and restore the VM
//! and N vCPUs in the order KVM needs.

use kvm_ioctls::{VcpuFd, VmFd};

use crate::error::{KvmStateError, Result};
use crate::host::HostSupport;
use crate::microvm::{DevicesState, MemoryRegionState, MicrovmState};
use crate::vcpu::{save_vcpu, CheckedVcpu};
use crate::vm::{restore_vm, save_vm};

/// One region of guest memory as the VMM registered it with KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegion {
    /// Guest physical address of the first byte.
    pub guest_phys_addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The VM a state is restored into, as its VMM created it: how many vCPUs, which memory
/// regions, how many devices of each kind. [`check_restore`] compares a state with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmLayout {
    /// Number of vCPUs (vCPU ids `0..vcpus`).
    pub vcpus: usize,
    /// Guest memory regions, in any order.
    pub memory: Vec<GuestRegion>,
    /// Number of 16550 UARTs ([`DevicesState::serial`]).
    pub serial: usize,
    /// Number of virtio-mmio transports ([`DevicesState::virtio_mmio`]).
    pub virtio_mmio: usize,
}

impl VmLayout {
    /// The layout a state was saved from, for a VMM that re-creates the VM the state
    /// describes.
    pub fn of_state(state: &MicrovmState) -> Self {
        VmLayout {
            vcpus: state.vcpus.len(),
            memory: state
                .memory
                .iter()
                .map(|r| GuestRegion {
                    guest_phys_addr: r.guest_phys_addr,
                    size: r.size,
                })
                .collect(),
            serial: state.devices.serial.len(),
            virtio_mmio: state.devices.virtio_mmio.len(),
        }
    }
}

/// Wraps an error of vCPU `index` so it says which vCPU.
fn in_vcpu(index: usize) -> impl FnOnce(KvmStateError) -> KvmStateError {
    move |source| KvmStateError::Vcpu {
        index,
        source: Box::new(source),
    }
}

/// Every check of a state that needs neither a host nor a target VM; the checks `vmstate
/// verify` runs, and the first ones [`check_restore`] runs.
///
/// - each vCPU ([`VcpuState::check`](crate::VcpuState::check)): at most 256 CPUID entries and
///   none that KVM could serve for the same query, a 1024-word xsave region, a 1024-byte
///   LAPIC page, at most 16 XCRs;
/// - memory: each region's contents are `size` bytes or absent, its address plus size does
///   not overflow, no two regions overlap, and the sizes add up without overflow.
///
/// # Errors
///
/// [`KvmStateError::Vcpu`] wrapping the first vCPU's error ([`KvmStateError::BadLength`],
/// [`KvmStateError::CpuidDuplicate`]), [`KvmStateError::MemoryRegion`] saying what is wrong
/// with a region.
pub fn check_state(state: &MicrovmState) -> Result<()> {
    for (index, vcpu) in state.vcpus.iter().enumerate() {
        vcpu.check().map_err(in_vcpu(index))?;
    }
    check_memory(&state.memory)?;
    Ok(())
}

/// The memory checks of [`check_state`]; returns the total size.
fn check_memory(regions: &[MemoryRegionState]) -> Result<u64> {
    let refuse = |r: &MemoryRegionState, reason| KvmStateError::MemoryRegion {
        guest_phys_addr: r.guest_phys_addr,
        size: r.size,
        reason,
    };
    let mut spans = Vec::with_capacity(regions.len());
    let mut total = 0u64;
    for region in regions {
        region.check(region.guest_phys_addr, region.size)?;
        let end = region
            .guest_phys_addr
            .checked_add(region.size)
            .ok_or_else(|| refuse(region, "address plus size overflows"))?;
        total = total
            .checked_add(region.size)
            .ok_or_else(|| refuse(region, "sizes of all regions overflow"))?;
        spans.push((region.guest_phys_addr, end, region));
    }
    spans.sort_unstable_by_key(|&(start, end, _)| (start, end));
    for pair in spans.windows(2) {
        let (_, end, _) = pair[0];
        let (start, _, region) = pair[1];
        if start < end {
            return Err(refuse(region, "overlaps another region"));
        }
    }
    Ok(total)
}

/// The state matches the layout of the VM it goes into: vCPU count, device counts, memory
/// regions (same addresses and sizes).
fn check_layout(state: &MicrovmState, layout: &VmLayout) -> Result<()> {
    if state.vcpus.len() != layout.vcpus {
        return Err(KvmStateError::VcpuCount {
            saved: state.vcpus.len(),
            target: layout.vcpus,
        });
    }
    for (kind, saved, target) in [
        ("serial", state.devices.serial.len(), layout.serial),
        (
            "virtio-mmio",
            state.devices.virtio_mmio.len(),
            layout.virtio_mmio,
        ),
    ] {
        if saved != target {
            return Err(KvmStateError::DeviceCount {
                kind,
                saved,
                target,
            });
        }
    }
    if state.memory.len() != layout.memory.len() {
        return Err(KvmStateError::BadLength {
            what: "memory regions",
            found: state.memory.len(),
            expected: layout.memory.len(),
        });
    }
    let mut saved: Vec<&MemoryRegionState> = state.memory.iter().collect();
    saved.sort_unstable_by_key(|r| r.guest_phys_addr);
    let mut target = layout.memory.clone();
    target.sort_unstable_by_key(|r| r.guest_phys_addr);
    for (region, slot) in saved.into_iter().zip(&target) {
        region.check(slot.guest_phys_addr, slot.size)?;
    }
    Ok(())
}

/// Runs every check a restore runs before it touches KVM, and returns the state ready to be
/// written ([`CheckedRestore`]).
///
/// In order: [`check_state`] (shape, memory regions), the layout of the target VM (vCPU count,
/// device counts, the memory regions' addresses and sizes), the facts of the host the state
/// was saved on against this one ([`HostSupport::check_facts`]: CPU vendor, KVM capabilities,
/// TSC frequency), then each vCPU against the host (CPUID feature flags offered, xsave area
/// size; see [`check_vcpu`](crate::check_vcpu)). Nothing is written: a refused state leaves the target
/// VM as it was.
///
/// # Errors
///
/// Any error of [`check_state`]; [`KvmStateError::VcpuCount`], [`KvmStateError::DeviceCount`],
/// [`KvmStateError::BadLength`] (number of memory regions), [`KvmStateError::MemoryRegion`];
/// any error of [`HostSupport::check_facts`]; [`KvmStateError::Vcpu`] wrapping a vCPU's
/// [`KvmStateError::CpuidNotOffered`] or [`KvmStateError::XsaveTooLarge`].
pub fn check_restore<'a>(
    state: &'a MicrovmState,
    host: &HostSupport,
    layout: &VmLayout,
) -> Result<CheckedRestore<'a>> {
    check_state(state)?;
    check_layout(state, layout)?;
    host.check_facts(&state.host_facts(), &state.vcpus)?;
    let vcpus = state
        .vcpus
        .iter()
        .enumerate()
        .map(|(index, vcpu)| CheckedVcpu::new(vcpu, host).map_err(in_vcpu(index)))
        .collect::<Result<Vec<_>>>()?;
    Ok(CheckedRestore { state, vcpus })
}

/// A state that passed [`check_restore`], ready to be written into KVM.
///
/// Restore in this order, which [`CheckedRestore::restore`] follows for a VMM that can lend
/// all its vCPU fds at once:
///
/// 1. guest memory contents (the VMM's mapping; [`MicrovmState::memory`]), before any vCPU
///    runs;
/// 2. the VM-wide state, [`CheckedRestore::restore_vm`]: the irqchips, PIT and clock that the
///    vCPUs' LAPIC state refers to;
/// 3. each vCPU, [`CheckedRestore::restore_vcpu`], on any thread (the vCPU's own, typically),
///    in any order among vCPUs; see [`restore_vcpu`](crate::restore_vcpu) for the order
///    within one;
/// 4. the devices ([`MicrovmState::devices`], the VMM's emulation), before the vCPUs run.
///
/// It is `Sync`: the vCPU threads can share one by reference.
#[derive(Debug)]
pub struct CheckedRestore<'a> {
    state: &'a MicrovmState,
    vcpus: Vec<CheckedVcpu<'a>>,
}

impl CheckedRestore<'_> {
    /// The checked state.
    pub fn state(&self) -> &MicrovmState {
        self.state
    }

    /// Step 2: writes the VM-wide state ([`restore_vm`](crate::restore_vm)).
    ///
    /// # Errors
    ///
    /// As [`restore_vm`](crate::restore_vm).
    pub fn restore_vm(&self, vm: &VmFd) -> Result<()> {
        restore_vm(vm, &self.state.vm)
    }

    /// Step 3, for vCPU `index`: writes its checked state into `vcpu`, which must not have
    /// run.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::NoSuchVcpu`] if the state has no vCPU `index`; otherwise
    /// [`KvmStateError::Vcpu`] wrapping the write error of
    /// [`restore_vcpu`](crate::restore_vcpu).
    pub fn restore_vcpu(&self, index: usize, vcpu: &VcpuFd) -> Result<()> {
        let checked = self.vcpus.get(index).ok_or(KvmStateError::NoSuchVcpu {
            index,
            vcpus: self.vcpus.len(),
        })?;
        checked.write(vcpu).map_err(in_vcpu(index))
    }

    /// Steps 2 and 3 for a VMM that lends every vCPU fd, vCPU `i` of the state into
    /// `vcpus[i]`: the VM-wide state, then each vCPU in order.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::VcpuCount`] (before any write) unless there are as many fds as
    /// vCPUs in the state; any error of [`CheckedRestore::restore_vm`] and
    /// [`CheckedRestore::restore_vcpu`].
    pub fn restore(&self, vm: &VmFd, vcpus: &[&VcpuFd]) -> Result<()> {
        if vcpus.len() != self.vcpus.len() {
            return Err(KvmStateError::VcpuCount {
                saved: self.vcpus.len(),
                target: vcpus.len(),
            });
        }
        self.restore_vm(vm)?;
        for (index, vcpu) in vcpus.iter().enumerate() {
            self.restore_vcpu(index, vcpu)?;
        }
        Ok(())
    }
}

/// Restores a whole VM whose fds the VMM lends: [`check_restore`], then the VM-wide state and
/// every vCPU ([`CheckedRestore::restore`]). Write guest memory and device state afterwards,
/// before the vCPUs run; or call [`check_restore`] yourself to write memory between the
/// checks and the first KVM write.
///
/// # Errors
///
/// Any error of [`check_restore`] (nothing written) or [`CheckedRestore::restore`].
pub fn restore_microvm(
    vm: &VmFd,
    vcpus: &[&VcpuFd],
    state: &MicrovmState,
    host: &HostSupport,
    layout: &VmLayout,
) -> Result<()> {
    check_restore(state, host, layout)?.restore(vm, vcpus)
}

/// Saves a whole VM whose vCPUs are paused ([`pause_vcpu`](crate::pause_vcpu)) and whose fds
/// the VMM lends: the VM-wide state, then vCPU `i` from `vcpus[i]`, with the device state and
/// memory regions the VMM supplies and the facts of `host` ([`HostSupport::query`] of this
/// host).
///
/// A VMM whose vCPU threads keep their fds calls [`save_vcpu`] on each vCPU thread once it is
/// paused, [`save_vm`](crate::save_vm) on any thread, and builds the [`MicrovmState`] itself
/// (recording `host.facts()` with [`MicrovmState::set_host_facts`]).
///
/// # Errors
///
/// Any error of [`save_vm`](crate::save_vm), or [`KvmStateError::Vcpu`] wrapping an error of
/// [`save_vcpu`].
pub fn save_microvm(
    vm: &VmFd,
    vcpus: &[&VcpuFd],
    host: &HostSupport,
    msr_indices: &[u32],
    devices: DevicesState,
    memory: Vec<MemoryRegionState>,
) -> Result<MicrovmState> {
    let vm_state = save_vm(vm)?;
    let vcpus = vcpus
        .iter()
        .enumerate()
        .map(|(index, vcpu)| save_vcpu(vm, vcpu, msr_indices).map_err(in_vcpu(index)))
        .collect::<Result<Vec<_>>>()?;
    let mut state = MicrovmState {
        vm: vm_state,
        vcpus,
        devices,
        memory,
        ..Default::default()
    };
    state.set_host_facts(host.facts().clone());
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidEntry, Lapic, VcpuState, Xcr, Xsave, LAPIC_REGS_SIZE};

    fn vcpu() -> VcpuState {
        VcpuState {
            xsave: Xsave {
                region: vec![0; 1024],
                extra: Vec::new(),
            },
            lapic: Lapic {
                regs: vec![0; LAPIC_REGS_SIZE],
            },
            ..Default::default()
        }
    }

    fn state() -> MicrovmState {
        MicrovmState {
            vcpus: vec![vcpu(), vcpu()],
            memory: vec![
                MemoryRegionState::with_contents(0, vec![0; 4096]),
                MemoryRegionState {
                    guest_phys_addr: 0x10_0000,
                    size: 0x1000,
                    contents: Vec::new(),
                },
            ],
            ..Default::default()
        }
    }

    fn vcpu_error(state: &MicrovmState) -> (usize, KvmStateError) {
        match check_state(state) {
            Err(KvmStateError::Vcpu { index, source }) => (index, *source),
            other => panic!("expected a vcpu error, got {other:?}"),
        }
    }

    #[test]
    fn test_check_state_accepts_a_sound_state() {
        check_state(&state()).unwrap();
        assert_eq!(check_memory(&state().memory).unwrap(), 0x2000);
    }

    #[test]
    fn test_check_state_empty_lapic_page() {
        let mut s = state();
        s.vcpus[1].lapic.regs.clear();
        assert!(matches!(
            vcpu_error(&s),
            (
                1,
                KvmStateError::BadLength {
                    what: "lapic registers",
                    found: 0,
                    expected: 1024
                }
            )
        ));
    }

    #[test]
    fn test_check_state_short_xsave_area() {
        let mut s = state();
        s.vcpus[0].xsave.region = vec![0; 10];
        assert!(matches!(
            vcpu_error(&s),
            (
                0,
                KvmStateError::BadLength {
                    what: "xsave region",
                    found: 10,
                    ..
                }
            )
        ));
    }

    #[test]
    fn test_check_state_17_xcrs() {
        let mut s = state();
        s.vcpus[0].xcrs.xcrs = vec![Xcr::default(); 17];
        assert!(matches!(
            vcpu_error(&s),
            (
                0,
                KvmStateError::BadLength {
                    what: "xcrs",
                    found: 17,
                    expected: 16
                }
            )
        ));
    }

    #[test]
    fn test_check_state_300_cpuid_leaves() {
        let mut s = state();
        s.vcpus[0].cpuid.entries = (0..300)
            .map(|function| CpuidEntry {
                function,
                ..Default::default()
            })
            .collect();
        assert!(matches!(
            vcpu_error(&s),
            (
                0,
                KvmStateError::BadLength {
                    what: "cpuid entries",
                    found: 300,
                    expected: 256
                }
            )
        ));
    }

    #[test]
    fn test_check_state_region_end_overflows() {
        let mut s = state();
        s.memory[1].guest_phys_addr = u64::MAX - 0xfff;
        s.memory[1].size = 0x2000;
        assert!(matches!(
            check_state(&s),
            Err(KvmStateError::MemoryRegion {
                reason: "address plus size overflows",
                ..
            })
        ));
    }

    #[test]
    fn test_check_state_overlapping_regions() {
        let mut s = state();
        s.memory[1].guest_phys_addr = 0x800;
        assert!(matches!(
            check_state(&s),
            Err(KvmStateError::MemoryRegion {
                guest_phys_addr: 0x800,
                reason: "overlaps another region",
                ..
            })
        ));
        // Regions that only touch do not overlap.
        s.memory[1].guest_phys_addr = 0x1000;
        check_state(&s).unwrap();
    }

    #[test]
    fn test_check_state_sizes_sum_overflows() {
        // Overlapping regions whose sizes add up past 2^64: an error, not an overflow.
        let regions = [
            MemoryRegionState {
                guest_phys_addr: 0,
                size: 1 << 63,
                contents: Vec::new(),
            },
            MemoryRegionState {
                guest_phys_addr: 1 << 63,
                size: (1 << 63) - 1,
                contents: Vec::new(),
            },
            MemoryRegionState {
                guest_phys_addr: 0,
                size: 1 << 63,
                contents: Vec::new(),
            },
        ];
        assert!(matches!(
            check_memory(&regions),
            Err(KvmStateError::MemoryRegion {
                reason: "sizes of all regions overflow",
                ..
            })
        ));
    }

    #[test]
    fn test_check_layout() {
        let s = state();
        let layout = VmLayout::of_state(&s);
        check_layout(&s, &layout).unwrap();
        let mut reversed = layout.clone();
        reversed.memory.reverse();
        check_layout(&s, &reversed).unwrap();
        let one_vcpu = VmLayout {
            vcpus: 1,
            ..layout.clone()
        };
        assert!(matches!(
            check_layout(&s, &one_vcpu),
            Err(KvmStateError::VcpuCount {
                saved: 2,
                target: 1
            })
        ));
        let serial = VmLayout {
            serial: 1,
            ..layout.clone()
        };
        assert!(matches!(
            check_layout(&s, &serial),
            Err(KvmStateError::DeviceCount {
                kind: "serial",
                saved: 0,
                target: 1
            })
        ));
        let mut moved = layout.clone();
        moved.memory[1].guest_phys_addr = 0x20_0000;
        assert!(matches!(
            check_layout(&s, &moved),
            Err(KvmStateError::MemoryRegion {
                reason: "guest physical address differs",
                ..
            })
        ));
        let mut fewer = layout;
        fewer.memory.pop();
        assert!(matches!(
            check_layout(&s, &fewer),
            Err(KvmStateError::BadLength {
                what: "memory regions",
                found: 2,
                expected: 1
            })
        ));
    }
}
