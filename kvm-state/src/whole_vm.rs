//! Whole-VM save and restore over a VMM's own fds: the checks a restore runs before it touches
//! KVM ([`check_state`], [`check_restore`]), and the functions that save and restore the VM
//! and N vCPUs in the order KVM needs.

use std::collections::HashMap;

use kvm_ioctls::{VcpuFd, VmFd};

use crate::error::{KvmStateError, Result};
use crate::host::HostSupport;
use crate::microvm::{DevicesState, MemoryRegionState, MicrovmState};
use crate::vcpu::{save_vcpu, CheckedVcpu, VcpuState};
use crate::vm::{restore_vm, save_vm};

/// One region of guest memory as the VMM registered it with KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegion {
    /// Guest physical address of the first byte.
    pub guest_phys_addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The VM a state is restored into, as its VMM created it: how many vCPUs and their APIC
/// ids, which memory regions, how many devices of each kind. [`check_restore`] compares a
/// state with it.
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
    /// The APIC id of each vCPU, `apic_ids[i]` for vCPU `i`; empty means vCPU `i` has APIC id
    /// `i` (what KVM gives vCPU id `i` unless the VMM sets another). A saved vCPU whose LAPIC
    /// holds another id is refused: its state belongs to another vCPU.
    pub apic_ids: Vec<u32>,
}

impl VmLayout {
    /// The layout a state was saved from, for a VMM that re-creates the VM the state
    /// describes with vCPU `i` having APIC id `i` ([`VmLayout::apic_ids`] empty).
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
            apic_ids: Vec::new(),
        }
    }

    /// The APIC id the target VM gives vCPU `index` ([`VmLayout::apic_ids`]).
    fn apic_id(&self, index: usize) -> u32 {
        match self.apic_ids.get(index) {
            Some(&id) => id,
            None => u32::try_from(index).unwrap_or(u32::MAX),
        }
    }
}

/// `IA32_APIC_BASE.EXTD` (bit 10): the LAPIC is in x2APIC mode.
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Offset of the APIC ID register in the LAPIC page.
const APIC_ID_REGISTER: usize = 0x20;

/// The APIC id in a vCPU's saved LAPIC page, `None` if the page is too short to hold it.
///
/// In xAPIC mode the id is bits 31:24 of the APIC ID register. In x2APIC mode
/// (`sregs.apic_base` bit 10) `KVM_GET_LAPIC` stores the 32-bit x2APIC id shifted into bits
/// 31:24 too, unless the VMM enabled `KVM_X2APIC_API_USE_32BIT_IDS`, which stores it whole;
/// the shifted form leaves bits 23:0 zero, which tells the two apart (only a 32-bit id that
/// is a multiple of 2^24 would be misread, far above any vCPU id KVM allows).
fn saved_apic_id(vcpu: &VcpuState) -> Option<u32> {
    let bytes = vcpu
        .lapic
        .regs
        .get(APIC_ID_REGISTER..APIC_ID_REGISTER + 4)?;
    let register = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let x2apic = vcpu.sregs.apic_base & APIC_BASE_X2APIC != 0;
    Some(if x2apic && register & 0x00ff_ffff != 0 {
        register
    } else {
        register >> 24
    })
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
/// - no two vCPUs hold the same APIC id in their LAPIC pages;
/// - memory: each region's contents are `size` bytes or absent, its address plus size does
///   not overflow, no two regions overlap, and the sizes add up without overflow.
///
/// # Errors
///
/// [`KvmStateError::Vcpu`] wrapping the first vCPU's error ([`KvmStateError::BadLength`],
/// [`KvmStateError::CpuidDuplicate`]), [`KvmStateError::ApicIdDuplicate`],
/// [`KvmStateError::MemoryRegion`] saying what is wrong with a region.
pub fn check_state(state: &MicrovmState) -> Result<()> {
    for (index, vcpu) in state.vcpus.iter().enumerate() {
        vcpu.check().map_err(in_vcpu(index))?;
    }
    let mut seen = HashMap::with_capacity(state.vcpus.len());
    for (index, vcpu) in state.vcpus.iter().enumerate() {
        if let Some(apic_id) = saved_apic_id(vcpu) {
            if let Some(&first) = seen.get(&apic_id) {
                return Err(KvmStateError::ApicIdDuplicate {
                    first,
                    index,
                    apic_id,
                });
            }
            seen.insert(apic_id, index);
        }
    }
    check_memory(&state.memory)?;
    state.check_memory_source()?;
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

/// The state matches the layout of the VM it goes into: vCPU count, each vCPU's APIC id,
/// device counts, memory regions (same addresses and sizes).
fn check_layout(state: &MicrovmState, layout: &VmLayout) -> Result<()> {
    if state.vcpus.len() != layout.vcpus {
        return Err(KvmStateError::VcpuCount {
            saved: state.vcpus.len(),
            target: layout.vcpus,
        });
    }
    if !layout.apic_ids.is_empty() && layout.apic_ids.len() != layout.vcpus {
        return Err(KvmStateError::BadLength {
            what: "apic ids of the target vm",
            found: layout.apic_ids.len(),
            expected: layout.vcpus,
        });
    }
    for (index, vcpu) in state.vcpus.iter().enumerate() {
        let expected = layout.apic_id(index);
        match saved_apic_id(vcpu) {
            Some(saved) if saved != expected => {
                return Err(KvmStateError::ApicId {
                    index,
                    saved,
                    expected,
                })
            }
            Some(_) => {}
            // check_state refused a LAPIC page that short.
            None => {
                return Err(KvmStateError::Vcpu {
                    index,
                    source: Box::new(KvmStateError::BadLength {
                        what: "lapic registers",
                        found: vcpu.lapic.regs.len(),
                        expected: crate::LAPIC_REGS_SIZE,
                    }),
                })
            }
        }
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
/// In order: [`check_state`] (shape, distinct APIC ids, memory regions), the layout of the
/// target VM (vCPU count, each vCPU's APIC id ([`VmLayout::apic_ids`]), device counts, the memory regions' addresses and sizes), the facts of the host the state
/// was saved on against this one ([`HostSupport::check_facts`]: CPU vendor, KVM capabilities,
/// TSC frequency), then each vCPU against the host (CPUID feature flags offered, xsave area
/// size; see [`check_vcpu`](crate::check_vcpu)). Nothing is written: a refused state leaves the target
/// VM as it was.
///
/// # Errors
///
/// Any error of [`check_state`]; [`KvmStateError::VcpuCount`], [`KvmStateError::ApicId`],
/// [`KvmStateError::BadLength`] (`apic_ids` not one per vCPU), [`KvmStateError::DeviceCount`],
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
    host.check_facts(&state.host, &state.vcpus)?;
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
/// (recording `host.facts()` in [`MicrovmState::host`]).
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
    state.host = host.facts().clone();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidEntry, Lapic, VcpuState, Xcr, Xsave, LAPIC_REGS_SIZE};

    /// A vCPU in xAPIC mode with APIC id `apic_id`.
    fn vcpu(apic_id: u8) -> VcpuState {
        let mut regs = vec![0; LAPIC_REGS_SIZE];
        regs[0x23] = apic_id;
        VcpuState {
            xsave: Xsave {
                region: vec![0; 1024],
                extra: Vec::new(),
            },
            lapic: Lapic { regs },
            ..Default::default()
        }
    }

    fn state() -> MicrovmState {
        MicrovmState {
            vcpus: vec![vcpu(0), vcpu(1)],
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

    #[test]
    fn test_saved_apic_id_xapic_and_x2apic_formats() {
        let mut v = vcpu(5);
        assert_eq!(saved_apic_id(&v), Some(5));
        // x2APIC mode, KVM's default format: the id shifted into bits 31:24.
        v.sregs.apic_base = 0xfee0_0000 | 0x800 | APIC_BASE_X2APIC;
        assert_eq!(saved_apic_id(&v), Some(5));
        // x2APIC mode with KVM_X2APIC_API_USE_32BIT_IDS: the whole 32-bit id.
        v.lapic.regs[0x20..0x24].copy_from_slice(&300u32.to_le_bytes());
        assert_eq!(saved_apic_id(&v), Some(300));
        v.lapic.regs.truncate(0x22);
        assert_eq!(saved_apic_id(&v), None);
    }

    #[test]
    fn test_check_state_duplicate_apic_ids() {
        let mut s = state();
        s.vcpus.push(vcpu(1));
        let err = check_state(&s).unwrap_err();
        assert!(
            matches!(
                err,
                KvmStateError::ApicIdDuplicate {
                    first: 1,
                    index: 2,
                    apic_id: 1
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "vcpus 1 and 2 of the state have the same apic id 1"
        );
    }

    #[test]
    fn test_check_layout_vcpu_states_swapped() {
        let mut s = state();
        s.vcpus.swap(0, 1);
        let layout = VmLayout::of_state(&s);
        let err = check_layout(&s, &layout).unwrap_err();
        assert!(
            matches!(
                err,
                KvmStateError::ApicId {
                    index: 0,
                    saved: 1,
                    expected: 0
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the state of vcpu 0 has apic id 1, the target vm gives vcpu 0 apic id 0"
        );
        // A VMM whose vCPU 0 has APIC id 1 and vCPU 1 APIC id 0 takes that state.
        let crossed = VmLayout {
            apic_ids: vec![1, 0],
            ..layout.clone()
        };
        check_layout(&s, &crossed).unwrap();
        let one_id = VmLayout {
            apic_ids: vec![1],
            ..layout
        };
        assert!(matches!(
            check_layout(&s, &one_id),
            Err(KvmStateError::BadLength {
                what: "apic ids of the target vm",
                found: 1,
                expected: 2
            })
        ));
    }
}
