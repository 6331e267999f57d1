//! VM-wide state: the in-kernel PIC pair and IOAPIC, the PIT and the kvmclock, with the
//! functions that read it from and write it to a live [`VmFd`].

use kvm_bindings::{
    kvm_clock_data, kvm_ioapic_state, kvm_irqchip, kvm_pic_state, kvm_pit_channel_state,
    kvm_pit_state2, KVM_CLOCK_HOST_TSC, KVM_CLOCK_REALTIME, KVM_CLOCK_TSC_STABLE,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;

use crate::error::{KvmStateError, Result};

/// Number of IOAPIC redirection table entries KVM emulates.
pub const IOAPIC_NUM_PINS: usize = 24;

/// `kvm_clock_data` flags that describe the source host and must not be passed to
/// `KVM_SET_CLOCK` on another host (or later on the same one).
pub const CLOCK_HOST_ONLY_FLAGS: u32 = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;

/// One 8259 PIC (`kvm_pic_state`).
#[allow(missing_docs)] // The fields are the i8259 registers and latches of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PicState {
    pub last_irr: u8,
    pub irr: u8,
    pub imr: u8,
    pub isr: u8,
    pub priority_add: u8,
    pub irq_base: u8,
    pub read_reg_select: u8,
    pub poll: u8,
    pub special_mask: u8,
    pub init_state: u8,
    pub auto_eoi: u8,
    pub rotate_on_auto_eoi: u8,
    pub special_fully_nested_mode: u8,
    pub init4: u8,
    pub elcr: u8,
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
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[allow(missing_docs)] // The fields are the i8254 channel registers of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PitChannelState {
    pub count: u32,
    pub latched_count: u16,
    pub count_latched: u8,
    pub status_latched: u8,
    pub status: u8,
    pub read_state: u8,
    pub write_state: u8,
    pub write_latch: u8,
    pub rw_mode: u8,
    pub mode: u8,
    pub bcd: u8,
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
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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

/// The kvmclock (`kvm_clock_data`).
///
/// Kept losslessly; [`restore_vm`] strips [`CLOCK_HOST_ONLY_FLAGS`] before `KVM_SET_CLOCK`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClockState {
    /// Guest clock in nanoseconds.
    pub clock: u64,
    /// `KVM_CLOCK_*` flags.
    pub flags: u32,
    /// Host `CLOCK_REALTIME` at the time of the read, valid with `KVM_CLOCK_REALTIME`.
    pub realtime: u64,
    /// Host TSC at the time of the read, valid with `KVM_CLOCK_HOST_TSC`.
    pub host_tsc: u64,
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
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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
/// `KVM_CREATE_PIT2`); its vCPUs should be paused.
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
    state.pit = PitState::from(&vm.get_pit2().map_err(KvmStateError::ioctl("KVM_GET_PIT2"))?);
    state.clock = ClockState::from(
        &vm.get_clock()
            .map_err(KvmStateError::ioctl("KVM_GET_CLOCK"))?,
    );
    Ok(state)
}

/// Writes a saved VM state into a VM with an in-kernel irqchip and PIT, before its vCPUs run.
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
