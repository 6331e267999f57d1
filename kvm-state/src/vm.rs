//! VM-wide state: the in-kernel PIC pair and IOAPIC, the PIT and the kvmclock, with the
//! functions that read it from and write it to a live [`VmFd`].

use kvm_bindings::{
    kvm_clock_data, kvm_ioapic_state, kvm_irqchip, kvm_pic_state, kvm_pit_channel_state,
    kvm_pit_state2, KVM_CLOCK_HOST_TSC, KVM_CLOCK_REALTIME, KVM_CLOCK_TSC_STABLE,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use versionize::{prelude::Versionize, VersionizeResult};

use crate::error::{KvmStateError, Result};

/// Number of IOAPIC redirection table entries KVM emulates.
pub const IOAPIC_NUM_PINS: usize = 24;

/// `kvm_clock_data` flags that describe the source host and must not be passed to
/// `KVM_SET_CLOCK` on another host (or later on the same one).
pub const CLOCK_HOST_ONLY_FLAGS: u32 =
    KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;

/// One 8259 PIC (`kvm_pic_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct PicState {
    /// IRR as last sampled, for edge detection.
    pub last_irr: u8,
    /// Interrupt request register.
    pub irr: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// In-service register.
    pub isr: u8,
    /// Priority rotation offset.
    pub priority_add: u8,
    /// Vector base (ICW2).
    pub irq_base: u8,
    /// OCW3 selects the ISR (1) or IRR (0) for reads.
    pub read_reg_select: u8,
    /// Poll mode command pending.
    pub poll: u8,
    /// Special mask mode.
    pub special_mask: u8,
    /// Step of the ICW initialization sequence.
    pub init_state: u8,
    /// Automatic EOI mode.
    pub auto_eoi: u8,
    /// Rotate priorities on automatic EOI.
    pub rotate_on_auto_eoi: u8,
    /// Special fully nested mode.
    pub special_fully_nested_mode: u8,
    /// ICW4 expected during initialization.
    pub init4: u8,
    /// Edge/level control register.
    pub elcr: u8,
    /// Writable bits of the ELCR.
    pub elcr_mask: u8,
}

impl From<&kvm_pic_state> for PicState {
    fn from(p: &kvm_pic_state) -> Self {
        PicState {
            last_irr: p.last_irr,
            irr: p.irr,
            imr: p.imr,
            isr: p.isr,
            priority_add: p.priority_add,
            irq_base: p.irq_base,
            read_reg_select: p.read_reg_select,
            poll: p.poll,
            special_mask: p.special_mask,
            init_state: p.init_state,
            auto_eoi: p.auto_eoi,
            rotate_on_auto_eoi: p.rotate_on_auto_eoi,
            special_fully_nested_mode: p.special_fully_nested_mode,
            init4: p.init4,
            elcr: p.elcr,
            elcr_mask: p.elcr_mask,
        }
    }
}

impl From<&PicState> for kvm_pic_state {
    fn from(p: &PicState) -> Self {
        kvm_pic_state {
            last_irr: p.last_irr,
            irr: p.irr,
            imr: p.imr,
            isr: p.isr,
            priority_add: p.priority_add,
            irq_base: p.irq_base,
            read_reg_select: p.read_reg_select,
            poll: p.poll,
            special_mask: p.special_mask,
            init_state: p.init_state,
            auto_eoi: p.auto_eoi,
            rotate_on_auto_eoi: p.rotate_on_auto_eoi,
            special_fully_nested_mode: p.special_fully_nested_mode,
            init4: p.init4,
            elcr: p.elcr,
            elcr_mask: p.elcr_mask,
        }
    }
}

/// The IOAPIC (`kvm_ioapic_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct IoapicState {
    /// MMIO base address.
    pub base_address: u64,
    /// Selected register (IOREGSEL).
    pub ioregsel: u32,
    /// IOAPIC id.
    pub id: u32,
    /// Interrupt request register.
    pub irr: u32,
    /// Redirection table, each entry as its 64-bit register value.
    pub redirtbl: [u64; IOAPIC_NUM_PINS],
}

impl From<&kvm_ioapic_state> for IoapicState {
    fn from(s: &kvm_ioapic_state) -> Self {
        let mut redirtbl = [0u64; IOAPIC_NUM_PINS];
        for (dst, src) in redirtbl.iter_mut().zip(&s.redirtbl) {
            // SAFETY: both members of the union are 8 bytes of plain integers, every bit
            // pattern is a valid u64, and reading `bits` reads all 8 of them.
            *dst = unsafe { src.bits };
        }
        IoapicState {
            base_address: s.base_address,
            ioregsel: s.ioregsel,
            id: s.id,
            irr: s.irr,
            redirtbl,
        }
    }
}

impl From<&IoapicState> for kvm_ioapic_state {
    fn from(s: &IoapicState) -> Self {
        let mut out = kvm_ioapic_state {
            base_address: s.base_address,
            ioregsel: s.ioregsel,
            id: s.id,
            irr: s.irr,
            ..Default::default()
        };
        for (dst, &src) in out.redirtbl.iter_mut().zip(&s.redirtbl) {
            dst.bits = src;
        }
        out
    }
}

/// The state of one in-kernel interrupt controller, as `KVM_GET_IRQCHIP` returns it, keyed by
/// its chip id instead of a raw union.
///
/// Versioned as an enum: a `u32` variant index, which equals the chip id
/// (`KVM_IRQCHIP_PIC_MASTER` = 0, `KVM_IRQCHIP_PIC_SLAVE` = 1, `KVM_IRQCHIP_IOAPIC` = 2), then
/// that chip's fields; never the 512 bytes of the union.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize)]
pub enum IrqchipState {
    /// `KVM_IRQCHIP_PIC_MASTER`.
    PicMaster(PicState),
    /// `KVM_IRQCHIP_PIC_SLAVE`.
    PicSlave(PicState),
    /// `KVM_IRQCHIP_IOAPIC`.
    Ioapic(IoapicState),
}

impl IrqchipState {
    /// The `chip_id` of `kvm_irqchip` for this chip.
    pub fn chip_id(&self) -> u32 {
        match self {
            IrqchipState::PicMaster(_) => KVM_IRQCHIP_PIC_MASTER,
            IrqchipState::PicSlave(_) => KVM_IRQCHIP_PIC_SLAVE,
            IrqchipState::Ioapic(_) => KVM_IRQCHIP_IOAPIC,
        }
    }
}

impl TryFrom<&kvm_irqchip> for IrqchipState {
    type Error = KvmStateError;

    fn try_from(c: &kvm_irqchip) -> Result<Self> {
        match c.chip_id {
            KVM_IRQCHIP_PIC_MASTER | KVM_IRQCHIP_PIC_SLAVE => {
                // SAFETY: the chip id says the union holds a PIC state; `kvm_pic_state` is 16
                // u8 fields, valid for any bit pattern, and lies within the 512-byte union.
                let pic = PicState::from(unsafe { &c.chip.pic });
                Ok(if c.chip_id == KVM_IRQCHIP_PIC_MASTER {
                    IrqchipState::PicMaster(pic)
                } else {
                    IrqchipState::PicSlave(pic)
                })
            }
            KVM_IRQCHIP_IOAPIC => {
                // SAFETY: the chip id says the union holds an IOAPIC state; `kvm_ioapic_state`
                // is integers and unions of integers, valid for any bit pattern, and lies
                // within the 512-byte union.
                Ok(IrqchipState::Ioapic(IoapicState::from(unsafe {
                    &c.chip.ioapic
                })))
            }
            other => Err(KvmStateError::UnknownIrqchip(other)),
        }
    }
}

impl From<&IrqchipState> for kvm_irqchip {
    fn from(s: &IrqchipState) -> Self {
        let mut out = kvm_irqchip {
            chip_id: s.chip_id(),
            ..Default::default()
        };
        match s {
            IrqchipState::PicMaster(p) | IrqchipState::PicSlave(p) => {
                out.chip.pic = p.into();
            }
            IrqchipState::Ioapic(i) => out.chip.ioapic = i.into(),
        }
        out
    }
}

/// One channel of the 8254 PIT (`kvm_pit_channel_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct PitChannelState {
    /// Reload value of the counter (0 means 65536).
    pub count: u32,
    /// Counter value latched by a counter-latch command.
    pub latched_count: u16,
    /// Which bytes of `latched_count` remain to be read.
    pub count_latched: u8,
    /// A read-back status is latched.
    pub status_latched: u8,
    /// The latched status byte.
    pub status: u8,
    /// Byte-access state for reads.
    pub read_state: u8,
    /// Byte-access state for writes.
    pub write_state: u8,
    /// First byte of a two-byte write.
    pub write_latch: u8,
    /// Access mode (latch, low, high, low then high).
    pub rw_mode: u8,
    /// Counting mode (0 to 5).
    pub mode: u8,
    /// BCD counting.
    pub bcd: u8,
    /// Gate input level.
    pub gate: u8,
    /// Host time (ns) at which `count` was loaded.
    pub count_load_time: i64,
}

impl From<&kvm_pit_channel_state> for PitChannelState {
    fn from(c: &kvm_pit_channel_state) -> Self {
        PitChannelState {
            count: c.count,
            latched_count: c.latched_count,
            count_latched: c.count_latched,
            status_latched: c.status_latched,
            status: c.status,
            read_state: c.read_state,
            write_state: c.write_state,
            write_latch: c.write_latch,
            rw_mode: c.rw_mode,
            mode: c.mode,
            bcd: c.bcd,
            gate: c.gate,
            count_load_time: c.count_load_time,
        }
    }
}

impl From<&PitChannelState> for kvm_pit_channel_state {
    fn from(c: &PitChannelState) -> Self {
        kvm_pit_channel_state {
            count: c.count,
            latched_count: c.latched_count,
            count_latched: c.count_latched,
            status_latched: c.status_latched,
            status: c.status,
            read_state: c.read_state,
            write_state: c.write_state,
            write_latch: c.write_latch,
            rw_mode: c.rw_mode,
            mode: c.mode,
            bcd: c.bcd,
            gate: c.gate,
            count_load_time: c.count_load_time,
        }
    }
}

/// The 8254 PIT (`kvm_pit_state2`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct PitState {
    /// The three counters.
    pub channels: [PitChannelState; 3],
    /// `KVM_PIT_FLAGS_*`.
    pub flags: u32,
}

impl From<&kvm_pit_state2> for PitState {
    fn from(p: &kvm_pit_state2) -> Self {
        PitState {
            channels: [
                (&p.channels[0]).into(),
                (&p.channels[1]).into(),
                (&p.channels[2]).into(),
            ],
            flags: p.flags,
        }
    }
}

impl From<&PitState> for kvm_pit_state2 {
    fn from(p: &PitState) -> Self {
        kvm_pit_state2 {
            channels: [
                (&p.channels[0]).into(),
                (&p.channels[1]).into(),
                (&p.channels[2]).into(),
            ],
            flags: p.flags,
            reserved: [0; 9],
        }
    }
}

/// `kvm_clock_data` flags whose values live in the fields that version 2 of [`ClockState`]
/// added (`realtime`, `host_tsc`).
const CLOCK_V2_FLAGS: u32 = KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;

/// The kvmclock (`kvm_clock_data`).
///
/// Kept losslessly; [`restore_vm`] strips [`CLOCK_HOST_ONLY_FLAGS`] before `KVM_SET_CLOCK`.
///
/// # Versions
///
/// - 1: `clock`, `flags` (the `kvm_clock_data` of Linux before 5.16).
/// - 2: adds `realtime` and `host_tsc` (Linux 5.16, `KVM_CLOCK_REALTIME` and
///   `KVM_CLOCK_HOST_TSC`). Writing version 1 clears those two flags on the copy being
///   written, so an older build never sees a flag whose value is missing; reading version 1
///   clears them too, whatever an older writer left.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct ClockState {
    /// Guest clock in nanoseconds.
    pub clock: u64,
    /// `KVM_CLOCK_*` flags.
    pub flags: u32,
    /// Host `CLOCK_REALTIME` at the time of the read, valid with `KVM_CLOCK_REALTIME`.
    #[version(start = 2, ser_fn = "clear_v2_flags", de_fn = "clear_v2_flags")]
    pub realtime: u64,
    /// Host TSC at the time of the read, valid with `KVM_CLOCK_HOST_TSC`.
    #[version(start = 2)]
    pub host_tsc: u64,
}

impl ClockState {
    /// Drops the flags whose values version 1 cannot carry (`ser_fn`/`de_fn` of `realtime`).
    fn clear_v2_flags(&mut self, _type_version: u16) -> VersionizeResult<()> {
        self.flags &= !CLOCK_V2_FLAGS;
        self.realtime = 0;
        self.host_tsc = 0;
        Ok(())
    }
}

impl From<&kvm_clock_data> for ClockState {
    fn from(c: &kvm_clock_data) -> Self {
        ClockState {
            clock: c.clock,
            flags: c.flags,
            realtime: c.realtime,
            host_tsc: c.host_tsc,
        }
    }
}

impl From<&ClockState> for kvm_clock_data {
    fn from(c: &ClockState) -> Self {
        kvm_clock_data {
            clock: c.clock,
            flags: c.flags,
            realtime: c.realtime,
            host_tsc: c.host_tsc,
            ..Default::default()
        }
    }
}

/// Everything KVM holds for a VM outside its vCPUs and memory.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct VmState {
    /// Master 8259 PIC.
    pub pic_master: PicState,
    /// Slave 8259 PIC.
    pub pic_slave: PicState,
    /// IOAPIC.
    pub ioapic: IoapicState,
    /// 8254 PIT.
    pub pit: PitState,
    /// kvmclock.
    pub clock: ClockState,
}

fn get_irqchip(vm: &VmFd, chip_id: u32) -> Result<IrqchipState> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip)
        .map_err(KvmStateError::ioctl("KVM_GET_IRQCHIP"))?;
    IrqchipState::try_from(&chip)
}

/// Reads the VM state. The VM needs an in-kernel irqchip and PIT (`KVM_CREATE_IRQCHIP`,
/// `KVM_CREATE_PIT2`); its vCPUs must be paused (see [`VcpuKick`](crate::VcpuKick)), so that
/// no vCPU changes the irqchips while they are read.
///
/// Steps, in order: the three irqchips (`KVM_GET_IRQCHIP`), the PIT (`KVM_GET_PIT2`), the
/// kvmclock (`KVM_GET_CLOCK`).
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed.
pub fn save_vm(vm: &VmFd) -> Result<VmState> {
    let mut state = VmState::default();
    if let IrqchipState::PicMaster(p) = get_irqchip(vm, KVM_IRQCHIP_PIC_MASTER)? {
        state.pic_master = p;
    }
    if let IrqchipState::PicSlave(p) = get_irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)? {
        state.pic_slave = p;
    }
    if let IrqchipState::Ioapic(i) = get_irqchip(vm, KVM_IRQCHIP_IOAPIC)? {
        state.ioapic = i;
    }
    state.pit = PitState::from(
        &vm.get_pit2()
            .map_err(KvmStateError::ioctl("KVM_GET_PIT2"))?,
    );
    state.clock = ClockState::from(
        &vm.get_clock()
            .map_err(KvmStateError::ioctl("KVM_GET_CLOCK"))?,
    );
    Ok(state)
}

/// Writes a saved VM state into a VM with an in-kernel irqchip and PIT, before its vCPUs are
/// restored (their LAPIC state refers to the irqchips) and before they run.
///
/// Steps, in order: the three irqchips (`KVM_SET_IRQCHIP`: PIC master, PIC slave, IOAPIC),
/// the PIT (`KVM_SET_PIT2`), the kvmclock (`KVM_SET_CLOCK`, without the flags in
/// [`CLOCK_HOST_ONLY_FLAGS`], which describe the source host).
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed.
pub fn restore_vm(vm: &VmFd, state: &VmState) -> Result<()> {
    let chips = [
        IrqchipState::PicMaster(state.pic_master.clone()),
        IrqchipState::PicSlave(state.pic_slave.clone()),
        IrqchipState::Ioapic(state.ioapic.clone()),
    ];
    for chip in &chips {
        vm.set_irqchip(&chip.into())
            .map_err(KvmStateError::ioctl("KVM_SET_IRQCHIP"))?;
    }
    vm.set_pit2(&(&state.pit).into())
        .map_err(KvmStateError::ioctl("KVM_SET_PIT2"))?;
    let mut clock = kvm_clock_data::from(&state.clock);
    // The saved realtime/host TSC describe the source host at save time; passing them back
    // would make KVM shift the guest clock by the time elapsed since, or reject the call.
    clock.flags &= !CLOCK_HOST_ONLY_FLAGS;
    vm.set_clock(&clock)
        .map_err(KvmStateError::ioctl("KVM_SET_CLOCK"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at_app_version, patterned, through_bytes};

    fn pic_bytes(p: &kvm_pic_state) -> [u8; 16] {
        [
            p.last_irr,
            p.irr,
            p.imr,
            p.isr,
            p.priority_add,
            p.irq_base,
            p.read_reg_select,
            p.poll,
            p.special_mask,
            p.init_state,
            p.auto_eoi,
            p.rotate_on_auto_eoi,
            p.special_fully_nested_mode,
            p.init4,
            p.elcr,
            p.elcr_mask,
        ]
    }

    #[test]
    fn test_pic_roundtrip() {
        let orig: kvm_pic_state = patterned();
        let back = kvm_pic_state::from(&through_bytes(&PicState::from(&orig)));
        assert_eq!(pic_bytes(&back), pic_bytes(&orig));
    }

    fn ioapic_fields(s: &kvm_ioapic_state) -> (u64, u32, u32, u32, Vec<u64>) {
        // SAFETY: `bits` covers the whole 8-byte union of integers.
        let table = s.redirtbl.iter().map(|e| unsafe { e.bits }).collect();
        (s.base_address, s.ioregsel, s.id, s.irr, table)
    }

    #[test]
    fn test_ioapic_roundtrip() {
        let mut orig: kvm_ioapic_state = patterned();
        orig.pad = 0;
        let ours = through_bytes(&IoapicState::from(&orig));
        assert!(ours.redirtbl.iter().all(|&e| e != 0));
        let back = kvm_ioapic_state::from(&ours);
        assert_eq!(ioapic_fields(&back), ioapic_fields(&orig));
    }

    #[test]
    fn test_irqchip_roundtrip_by_chip_id() {
        for chip_id in [
            KVM_IRQCHIP_PIC_MASTER,
            KVM_IRQCHIP_PIC_SLAVE,
            KVM_IRQCHIP_IOAPIC,
        ] {
            let mut orig: kvm_irqchip = patterned();
            orig.chip_id = chip_id;
            orig.pad = 0;
            let ours = through_bytes(&IrqchipState::try_from(&orig).unwrap());
            assert_eq!(ours.chip_id(), chip_id);
            let back = kvm_irqchip::from(&ours);
            assert_eq!(back.chip_id, chip_id);
            assert_eq!(back.pad, 0);
            // SAFETY: the chip id selects the member that both structures hold.
            unsafe {
                if chip_id == KVM_IRQCHIP_IOAPIC {
                    let mut o = orig.chip.ioapic;
                    o.pad = 0;
                    assert_eq!(ioapic_fields(&back.chip.ioapic), ioapic_fields(&o));
                } else {
                    assert_eq!(pic_bytes(&back.chip.pic), pic_bytes(&orig.chip.pic));
                    assert!(matches!(
                        (&ours, chip_id),
                        (IrqchipState::PicMaster(_), KVM_IRQCHIP_PIC_MASTER)
                            | (IrqchipState::PicSlave(_), KVM_IRQCHIP_PIC_SLAVE)
                    ));
                }
            }
        }
    }

    #[test]
    fn test_irqchip_unknown_chip_id() {
        let mut orig: kvm_irqchip = patterned();
        orig.chip_id = 3;
        assert!(matches!(
            IrqchipState::try_from(&orig),
            Err(KvmStateError::UnknownIrqchip(3))
        ));
    }

    #[test]
    fn test_pit_roundtrip() {
        let mut orig: kvm_pit_state2 = patterned();
        orig.reserved = [0; 9];
        let ours = through_bytes(&PitState::from(&orig));
        assert_eq!(
            ours.channels[2].count_load_time,
            orig.channels[2].count_load_time
        );
        let back = kvm_pit_state2::from(&ours);
        assert_eq!(back.flags, orig.flags);
        assert_eq!(back.reserved, orig.reserved);
        for (b, o) in back.channels.iter().zip(&orig.channels) {
            assert_eq!(PitChannelState::from(b), PitChannelState::from(o));
            assert_eq!(
                (b.count, b.latched_count, b.count_load_time, b.gate, b.bcd),
                (o.count, o.latched_count, o.count_load_time, o.gate, o.bcd)
            );
        }
    }

    #[test]
    fn test_clock_roundtrip() {
        let mut orig: kvm_clock_data = patterned();
        orig.pad0 = 0;
        orig.pad = [0; 4];
        let back = kvm_clock_data::from(&through_bytes(&ClockState::from(&orig)));
        assert_eq!(
            (
                back.clock,
                back.flags,
                back.realtime,
                back.host_tsc,
                back.pad0,
                back.pad
            ),
            (
                orig.clock,
                orig.flags,
                orig.realtime,
                orig.host_tsc,
                orig.pad0,
                orig.pad
            )
        );
    }

    #[test]
    fn test_clock_state_versions() {
        let clock = ClockState {
            clock: 123_456_789,
            flags: KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC,
            realtime: 1_700_000_000_000_000_000,
            host_tsc: 0x1234_5678_9abc,
        };
        let (v2, v2_len) = at_app_version(&clock, 2);
        assert_eq!(v2, clock);
        // Version 1 has no `realtime`/`host_tsc`: 16 bytes fewer, and the flags that said
        // they were valid are cleared on the way out (ser_fn) and on the way in (de_fn).
        let (v1, v1_len) = at_app_version(&clock, 1);
        assert_eq!(v2_len - v1_len, 16);
        assert_eq!(
            v1,
            ClockState {
                clock: 123_456_789,
                flags: KVM_CLOCK_TSC_STABLE,
                realtime: 0,
                host_tsc: 0,
            }
        );
        // Bytes of version 1 as an older build writes them: clock, flags.
        let mut old = Vec::new();
        old.extend_from_slice(&123_456_789u64.to_le_bytes());
        old.extend_from_slice(&(KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME).to_le_bytes());
        let read = ClockState::deserialize(&mut old.as_slice(), &crate::microvm::version_map(), 1)
            .unwrap();
        assert_eq!(read.flags, KVM_CLOCK_TSC_STABLE);
        assert_eq!(ClockState::version(), 2);
    }

    #[test]
    fn test_vm_state_roundtrip_through_bytes() {
        let mut ioapic: kvm_ioapic_state = patterned();
        ioapic.pad = 0;
        let mut pit: kvm_pit_state2 = patterned();
        pit.reserved = [0; 9];
        let state = VmState {
            pic_master: PicState::from(&patterned::<kvm_pic_state>()),
            pic_slave: PicState {
                irq_base: 0x70,
                ..Default::default()
            },
            ioapic: IoapicState::from(&ioapic),
            pit: PitState::from(&pit),
            clock: ClockState {
                clock: 5,
                flags: 0,
                realtime: 6,
                host_tsc: 7,
            },
        };
        assert_eq!(through_bytes(&state), state);
    }

    #[test]
    fn test_irqchip_wire_format() {
        let map = crate::microvm::version_map();
        let pic = PicState {
            irq_base: 0x20,
            elcr_mask: 0xf8,
            ..Default::default()
        };
        for (chip, id) in [
            (IrqchipState::PicMaster(pic.clone()), KVM_IRQCHIP_PIC_MASTER),
            (IrqchipState::PicSlave(pic.clone()), KVM_IRQCHIP_PIC_SLAVE),
        ] {
            let mut bytes = Vec::new();
            chip.serialize(&mut bytes, &map, 2).unwrap();
            let mut expected = id.to_le_bytes().to_vec();
            expected.extend_from_slice(&[0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf8]);
            assert_eq!(bytes, expected);
        }
        let mut bytes = Vec::new();
        IrqchipState::Ioapic(IoapicState::default())
            .serialize(&mut bytes, &map, 2)
            .unwrap();
        // Tag, base address, ioregsel, id, irr, 24 redirection entries.
        assert_eq!(bytes.len(), 4 + 8 + 4 + 4 + 4 + 24 * 8);
        assert_eq!(bytes[..4], KVM_IRQCHIP_IOAPIC.to_le_bytes());
        // An index no chip has is an error, not a panic.
        let mut bad = 3u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0; 16]);
        assert!(IrqchipState::deserialize(&mut bad.as_slice(), &map, 2).is_err());
    }

    #[test]
    fn test_clock_state_wire_format() {
        let map = crate::microvm::version_map();
        let clock = ClockState {
            clock: 0x0102_0304_0506_0708,
            flags: KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME,
            realtime: 0x1112_1314_1516_1718,
            host_tsc: 0x2122_2324_2526_2728,
        };
        let mut v2 = Vec::new();
        clock.serialize(&mut v2, &map, 2).unwrap();
        let mut expected = vec![8, 7, 6, 5, 4, 3, 2, 1, 6, 0, 0, 0];
        expected.extend_from_slice(&[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
        expected.extend_from_slice(&[0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21]);
        assert_eq!(v2, expected);
        let mut v1 = Vec::new();
        clock.serialize(&mut v1, &map, 1).unwrap();
        assert_eq!(v1, [8, 7, 6, 5, 4, 3, 2, 1, 2, 0, 0, 0]);
    }
}
