//! The benchmark payload: a `MicrovmState`-shaped value, versioned and serde-encodable.
//!
//! Every struct derives both [`Versionize`] and serde's traits, so the same value is encoded
//! by both and the two encodings can be compared byte for byte: at the latest version the
//! versionize wire format is bincode 1's, which is bincode 2's `config::legacy()`.
//!
//! Two types changed between app version 1 and 2, each with a `ser_fn` that runs when
//! writing app version 1: [`VcpuState`] gained `tsc_khz` and [`SerialState`] gained
//! `fifo_control`. Writing app version 1 therefore clones each vCPU's state and the UART's
//! state once (the derive runs `ser_fn` on a copy).

use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

/// Number of words of the `Vec<u64>` that comes with the state.
pub const DIRTY_LOG_WORDS: usize = 10_000;
/// 32-bit words of an XSAVE area (4 KiB).
pub const XSAVE_WORDS: usize = 1024;
/// Bytes of a LAPIC register page as KVM returns it.
pub const LAPIC_BYTES: usize = 1024;
/// MSRs saved per vCPU.
pub const MSRS_PER_VCPU: usize = 40;
/// CPUID entries saved per vCPU.
pub const CPUID_ENTRIES: usize = 75;
/// Bytes waiting in the UART's input buffer.
pub const SERIAL_BUFFERED: usize = 64;
/// The MSR index under which an older layout carries the TSC frequency (`ser_fn`).
pub const MSR_TSC_KHZ_CARRIER: u32 = 0x4b56_4d00;

/// SplitMix64: a tiny deterministic generator, so every run builds the same payload.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 pseudo-random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// The next 16 pseudo-random bits.
    pub fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    /// The next pseudo-random byte.
    pub fn next_u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// The next pseudo-random bit, as a byte 0 or 1.
    pub fn next_bit(&mut self) -> u8 {
        self.next_u8() & 1
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u8()).collect()
    }
}

/// General-purpose registers (`kvm_regs`): 18 words.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct Regs {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rsp: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rip: u64,
    rflags: u64,
}

impl Regs {
    fn random(rng: &mut SplitMix64) -> Self {
        Regs {
            rax: rng.next_u64(),
            rbx: rng.next_u64(),
            rcx: rng.next_u64(),
            rdx: rng.next_u64(),
            rsi: rng.next_u64(),
            rdi: rng.next_u64(),
            rsp: rng.next_u64(),
            rbp: rng.next_u64(),
            r8: rng.next_u64(),
            r9: rng.next_u64(),
            r10: rng.next_u64(),
            r11: rng.next_u64(),
            r12: rng.next_u64(),
            r13: rng.next_u64(),
            r14: rng.next_u64(),
            r15: rng.next_u64(),
            rip: rng.next_u64(),
            rflags: rng.next_u64(),
        }
    }
}

/// A segment register (`kvm_segment`).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    base: u64,
    limit: u32,
    selector: u16,
    type_: u8,
    present: u8,
    dpl: u8,
    db: u8,
    s: u8,
    l: u8,
    g: u8,
    avl: u8,
    unusable: u8,
    padding: u8,
}

impl Segment {
    fn random(rng: &mut SplitMix64) -> Self {
        Segment {
            base: rng.next_u64(),
            limit: rng.next_u32(),
            selector: rng.next_u16(),
            type_: rng.next_u8() & 0xf,
            present: rng.next_bit(),
            dpl: rng.next_u8() & 3,
            db: rng.next_bit(),
            s: rng.next_bit(),
            l: rng.next_bit(),
            g: rng.next_bit(),
            avl: rng.next_bit(),
            unusable: rng.next_bit(),
            padding: 0,
        }
    }
}

/// A descriptor table register (`kvm_dtable`).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct DTable {
    base: u64,
    limit: u16,
    padding: [u16; 3],
}

impl DTable {
    fn random(rng: &mut SplitMix64) -> Self {
        DTable {
            base: rng.next_u64(),
            limit: rng.next_u16(),
            padding: [0; 3],
        }
    }
}

/// Special registers (`kvm_sregs`): 8 segments, 2 descriptor tables, control registers and
/// the pending-interrupt bitmap.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct Sregs {
    cs: Segment,
    ds: Segment,
    es: Segment,
    fs: Segment,
    gs: Segment,
    ss: Segment,
    tr: Segment,
    ldt: Segment,
    gdt: DTable,
    idt: DTable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    interrupt_bitmap: [u64; 4],
}

impl Sregs {
    fn random(rng: &mut SplitMix64) -> Self {
        Sregs {
            cs: Segment::random(rng),
            ds: Segment::random(rng),
            es: Segment::random(rng),
            fs: Segment::random(rng),
            gs: Segment::random(rng),
            ss: Segment::random(rng),
            tr: Segment::random(rng),
            ldt: Segment::random(rng),
            gdt: DTable::random(rng),
            idt: DTable::random(rng),
            cr0: rng.next_u64(),
            cr2: rng.next_u64(),
            cr3: rng.next_u64(),
            cr4: rng.next_u64(),
            cr8: rng.next_u64(),
            efer: rng.next_u64(),
            apic_base: rng.next_u64(),
            interrupt_bitmap: [rng.next_u64(), rng.next_u64(), 0, 0],
        }
    }
}

/// One model-specific register (`kvm_msr_entry` without its padding).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct MsrEntry {
    index: u32,
    data: u64,
}

/// One CPUID leaf (`kvm_cpuid_entry2` without its padding).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct CpuidEntry {
    function: u32,
    index: u32,
    flags: u32,
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
}

/// Pending exceptions, interrupts and NMIs (`kvm_vcpu_events`, flattened).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct VcpuEvents {
    exception_injected: u8,
    exception_nr: u8,
    exception_has_error_code: u8,
    exception_pending: u8,
    exception_error_code: u32,
    interrupt_injected: u8,
    interrupt_nr: u8,
    interrupt_soft: u8,
    interrupt_shadow: u8,
    nmi_injected: u8,
    nmi_pending: u8,
    nmi_masked: u8,
    sipi_vector: u32,
    flags: u32,
    smi_smm: u8,
    smi_pending: u8,
    smi_inside_nmi: u8,
    smi_latched_init: u8,
    triple_fault_pending: u8,
    exception_has_payload: u8,
    exception_payload: u64,
}

impl VcpuEvents {
    fn random(rng: &mut SplitMix64) -> Self {
        VcpuEvents {
            exception_injected: rng.next_bit(),
            exception_nr: rng.next_u8(),
            exception_has_error_code: rng.next_bit(),
            exception_pending: rng.next_bit(),
            exception_error_code: rng.next_u32(),
            interrupt_injected: rng.next_bit(),
            interrupt_nr: rng.next_u8(),
            interrupt_soft: rng.next_bit(),
            interrupt_shadow: rng.next_bit(),
            nmi_injected: rng.next_bit(),
            nmi_pending: rng.next_bit(),
            nmi_masked: rng.next_bit(),
            sipi_vector: rng.next_u32(),
            flags: rng.next_u32(),
            smi_smm: rng.next_bit(),
            smi_pending: rng.next_bit(),
            smi_inside_nmi: rng.next_bit(),
            smi_latched_init: rng.next_bit(),
            triple_fault_pending: rng.next_bit(),
            exception_has_payload: rng.next_bit(),
            exception_payload: rng.next_u64(),
        }
    }
}

/// The state of one vCPU.
///
/// Version 2 added `tsc_khz`. Writing version 1 runs `ser_tsc_khz` on a copy, which carries
/// the frequency in an extra MSR entry instead.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct VcpuState {
    regs: Regs,
    sregs: Sregs,
    xsave: Vec<u32>,
    lapic: Vec<u8>,
    msrs: Vec<MsrEntry>,
    cpuid: Vec<CpuidEntry>,
    events: VcpuEvents,
    mp_state: u32,
    #[version(start = 2, ser_fn = "ser_tsc_khz")]
    tsc_khz: u32,
}

impl VcpuState {
    fn random(rng: &mut SplitMix64, id: u32) -> Self {
        VcpuState {
            regs: Regs::random(rng),
            sregs: Sregs::random(rng),
            xsave: (0..XSAVE_WORDS).map(|_| rng.next_u32()).collect(),
            lapic: rng.bytes(LAPIC_BYTES),
            msrs: (0..MSRS_PER_VCPU)
                .map(|i| MsrEntry {
                    index: 0xc000_0080 + u32::try_from(i).unwrap_or(0),
                    data: rng.next_u64(),
                })
                .collect(),
            cpuid: (0..CPUID_ENTRIES)
                .map(|i| CpuidEntry {
                    function: u32::try_from(i).unwrap_or(0),
                    index: id,
                    flags: rng.next_u32() & 7,
                    eax: rng.next_u32(),
                    ebx: rng.next_u32(),
                    ecx: rng.next_u32(),
                    edx: rng.next_u32(),
                })
                .collect(),
            events: VcpuEvents::random(rng),
            mp_state: rng.next_u32() & 7,
            tsc_khz: 2_500_000,
        }
    }

    /// Writing a layout without `tsc_khz`: carry it in an MSR entry.
    fn ser_tsc_khz(&mut self, _type_version: u16) -> VersionizeResult<()> {
        self.msrs.push(MsrEntry {
            index: MSR_TSC_KHZ_CARRIER,
            data: u64::from(self.tsc_khz),
        });
        Ok(())
    }
}

/// One 8259 PIC (`kvm_pic_state`).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct PicState {
    last_irr: u8,
    irr: u8,
    imr: u8,
    isr: u8,
    priority_add: u8,
    irq_base: u8,
    read_reg_select: u8,
    poll: u8,
    special_mask: u8,
    init_state: u8,
    auto_eoi: u8,
    rotate_on_auto_eoi: u8,
    special_fully_nested_mode: u8,
    init4: u8,
    elcr: u8,
    elcr_mask: u8,
}

impl PicState {
    fn random(rng: &mut SplitMix64) -> Self {
        PicState {
            last_irr: rng.next_u8(),
            irr: rng.next_u8(),
            imr: rng.next_u8(),
            isr: rng.next_u8(),
            priority_add: rng.next_u8(),
            irq_base: rng.next_u8(),
            read_reg_select: rng.next_bit(),
            poll: rng.next_bit(),
            special_mask: rng.next_bit(),
            init_state: rng.next_u8() & 3,
            auto_eoi: rng.next_bit(),
            rotate_on_auto_eoi: rng.next_bit(),
            special_fully_nested_mode: rng.next_bit(),
            init4: rng.next_bit(),
            elcr: rng.next_u8(),
            elcr_mask: rng.next_u8(),
        }
    }
}

/// The IOAPIC (`kvm_ioapic_state`) with its 24-entry redirection table.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct IoapicState {
    base_address: u64,
    ioregsel: u32,
    id: u32,
    irr: u32,
    pad: u32,
    redirtbl: [u64; 24],
}

/// One PIT channel (`kvm_pit_channel_state`).
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct PitChannel {
    count: u32,
    latched_count: u16,
    count_latched: u8,
    status_latched: u8,
    status: u8,
    read_state: u8,
    write_state: u8,
    write_latch: u8,
    rw_mode: u8,
    mode: u8,
    bcd: u8,
    gate: u8,
    count_load_time: i64,
}

impl PitChannel {
    fn random(rng: &mut SplitMix64) -> Self {
        PitChannel {
            count: rng.next_u32(),
            latched_count: rng.next_u16(),
            count_latched: rng.next_bit(),
            status_latched: rng.next_bit(),
            status: rng.next_u8(),
            read_state: rng.next_u8() & 3,
            write_state: rng.next_u8() & 3,
            write_latch: rng.next_u8(),
            rw_mode: rng.next_u8() & 3,
            mode: rng.next_u8() & 7,
            bcd: rng.next_bit(),
            gate: rng.next_bit(),
            count_load_time: i64::from(rng.next_u32()),
        }
    }
}

/// The PIT (`kvm_pit_state2`): three channels and flags.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct PitState {
    channels: [PitChannel; 3],
    flags: u32,
}

/// VM-wide state: IRQ chip, PIT, clock.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct VmState {
    pic_master: PicState,
    pic_slave: PicState,
    ioapic: IoapicState,
    pit: PitState,
    clock: u64,
    clock_flags: u32,
}

impl VmState {
    fn random(rng: &mut SplitMix64) -> Self {
        VmState {
            pic_master: PicState::random(rng),
            pic_slave: PicState::random(rng),
            ioapic: IoapicState {
                base_address: 0xfec0_0000,
                ioregsel: rng.next_u32(),
                id: 0,
                irr: rng.next_u32(),
                pad: 0,
                redirtbl: std::array::from_fn(|_| rng.next_u64()),
            },
            pit: PitState {
                channels: std::array::from_fn(|_| PitChannel::random(rng)),
                flags: rng.next_u32(),
            },
            clock: rng.next_u64(),
            clock_flags: rng.next_u32() & 3,
        }
    }
}

/// A 16550A UART with bytes waiting for the guest.
///
/// Version 2 added `fifo_control`. Writing version 1 runs `ser_fifo_control` on a copy,
/// which folds it into `interrupt_identification`.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct SerialState {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
    #[version(start = 2, ser_fn = "ser_fifo_control")]
    fifo_control: u8,
}

impl SerialState {
    fn random(rng: &mut SplitMix64) -> Self {
        SerialState {
            baud_divisor_low: 12,
            baud_divisor_high: 0,
            interrupt_enable: rng.next_u8() & 0xf,
            interrupt_identification: 1,
            line_control: 3,
            line_status: 0x60,
            modem_control: 8,
            modem_status: 0xb0,
            scratch: rng.next_u8(),
            in_buffer: rng.bytes(SERIAL_BUFFERED),
            fifo_control: 0xc7,
        }
    }

    /// Writing a layout without `fifo_control`: report "FIFOs enabled" in the IIR bits.
    fn ser_fifo_control(&mut self, _type_version: u16) -> VersionizeResult<()> {
        if self.fifo_control & 1 != 0 {
            self.interrupt_identification |= 0xc0;
        }
        Ok(())
    }
}

/// One virtqueue.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    next_avail: u16,
    next_used: u16,
    event_idx_enabled: bool,
    num_added: u16,
}

impl QueueState {
    fn random(rng: &mut SplitMix64) -> Self {
        QueueState {
            max_size: 256,
            size: 256,
            ready: true,
            desc_table: rng.next_u64() & !0xfff,
            avail_ring: rng.next_u64() & !0xfff,
            used_ring: rng.next_u64() & !0xfff,
            next_avail: rng.next_u16(),
            next_used: rng.next_u16(),
            event_idx_enabled: rng.next_bit() == 1,
            num_added: rng.next_u16() & 0xff,
        }
    }
}

/// A virtio device (MMIO transport) with its queues.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct VirtioDeviceState {
    device_type: u32,
    avail_features: u64,
    acked_features: u64,
    queues: Vec<QueueState>,
    interrupt_status: u32,
    activated: bool,
}

/// The devices: one UART and one virtio device with 2 queues.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct DeviceStates {
    serial: SerialState,
    virtio: VirtioDeviceState,
}

/// The whole payload: vCPUs, VM, devices, and a 10,000-word `Vec<u64>`.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize, serde::Deserialize)]
pub struct MicrovmState {
    vcpu_states: Vec<VcpuState>,
    vm_state: VmState,
    device_states: DeviceStates,
    dirty_log: Vec<u64>,
}

impl MicrovmState {
    /// The payload with `vcpus` vCPUs, built from `seed`: equal seeds give equal values.
    #[must_use]
    pub fn new(seed: u64, vcpus: u32) -> Self {
        let mut rng = SplitMix64::new(seed);
        MicrovmState {
            vcpu_states: (0..vcpus)
                .map(|id| VcpuState::random(&mut rng, id))
                .collect(),
            vm_state: VmState::random(&mut rng),
            device_states: DeviceStates {
                serial: SerialState::random(&mut rng),
                virtio: VirtioDeviceState {
                    device_type: 1,
                    avail_features: rng.next_u64(),
                    acked_features: rng.next_u64(),
                    queues: (0..2).map(|_| QueueState::random(&mut rng)).collect(),
                    interrupt_status: rng.next_u32() & 3,
                    activated: true,
                },
            },
            dirty_log: (0..DIRTY_LOG_WORDS).map(|_| rng.next_u64()).collect(),
        }
    }

    /// The benchmark payload: 2 vCPUs, fixed seed.
    #[must_use]
    pub fn bench_payload() -> Self {
        Self::new(0x5eed_f00d_0000_0007, 2)
    }
}

/// A field of raw bytes in a `Vec<u8>`.
#[derive(Clone, Debug, PartialEq, Eq, Versionize)]
pub struct VecField {
    bytes: Vec<u8>,
}

impl VecField {
    /// `len` pseudo-random bytes from `seed`.
    #[must_use]
    pub fn new(seed: u64, len: usize) -> Self {
        VecField {
            bytes: SplitMix64::new(seed).bytes(len),
        }
    }
}

/// A field of raw bytes in a fixed-size array.
#[derive(Clone, Debug, PartialEq, Eq, Versionize)]
pub struct ArrayField<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> ArrayField<N> {
    /// `N` pseudo-random bytes from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        ArrayField {
            bytes: std::array::from_fn(|_| rng.next_u8()),
        }
    }
}

/// Every type of the payload that carries its own version.
fn bump_type(map: &mut VersionMap, slot: u16) {
    // At each app version, re-state the current version of one of the payload's types, so
    // that the tables of a long map are as long as the map.
    let ids = [
        (MicrovmState::type_id(), MicrovmState::version()),
        (VcpuState::type_id(), VcpuState::version()),
        (SerialState::type_id(), SerialState::version()),
        (Regs::type_id(), Regs::version()),
        (Sregs::type_id(), Sregs::version()),
        (VmState::type_id(), VmState::version()),
        (DeviceStates::type_id(), DeviceStates::version()),
        (QueueState::type_id(), QueueState::version()),
    ];
    let (id, version) = ids[usize::from(slot) % ids.len()];
    map.set_type_version(id, version);
}

/// A version map with `app_versions` app versions (at least 2).
///
/// App version 1 is the old layout (`VcpuState` and `SerialState` at version 1); app
/// version 2 and every later one is the current layout. From app version 3 on, each app
/// version re-states the version of one payload type, so a longer map has longer tables.
#[must_use]
pub fn version_map(app_versions: u16) -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(VcpuState::type_id(), 2)
        .set_type_version(SerialState::type_id(), 2);
    for slot in 3..=app_versions.max(2) {
        map.new_version();
        bump_type(&mut map, slot);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: Versionize>(value: &T, map: &VersionMap, version: u16) -> Vec<u8> {
        let mut out = Vec::new();
        value.serialize(&mut out, map, version).unwrap();
        out
    }

    #[test]
    fn test_payload_is_deterministic() {
        assert_eq!(MicrovmState::bench_payload(), MicrovmState::bench_payload());
    }

    #[test]
    fn test_payload_latest_matches_bincode_legacy() {
        let state = MicrovmState::bench_payload();
        let map = version_map(4);
        let ours = encode(&state, &map, map.latest_version());
        let theirs = bincode::serde::encode_to_vec(&state, bincode::config::legacy()).unwrap();
        assert_eq!(ours, theirs);
        assert!(
            ours.len() > 90_000 && ours.len() < 110_000,
            "{}",
            ours.len()
        );
    }

    #[test]
    fn test_payload_round_trips_every_version() {
        let state = MicrovmState::bench_payload();
        for app_versions in [4, 100, 1000] {
            let map = version_map(app_versions);
            assert_eq!(map.latest_version(), app_versions);
            let latest = encode(&state, &map, app_versions);
            let back = MicrovmState::deserialize(&mut latest.as_slice(), &map, app_versions);
            assert_eq!(back.unwrap(), state);
            assert_eq!(latest, encode(&state, &version_map(4), 4));
        }
    }

    #[test]
    fn test_payload_old_version_runs_ser_fn() {
        let state = MicrovmState::bench_payload();
        let map = version_map(4);
        let old = encode(&state, &map, 1);
        let new = encode(&state, &map, 2);
        // Each vCPU: -4 bytes of tsc_khz, +12 bytes of the carrier MSR; UART: -1 byte.
        assert_eq!(old.len(), new.len() + 2 * 8 - 1);
        let back = MicrovmState::deserialize(&mut old.as_slice(), &map, 1).unwrap();
        assert_eq!(back.vcpu_states[0].msrs.len(), MSRS_PER_VCPU + 1);
        assert_eq!(back.vcpu_states[0].tsc_khz, 0);
    }

    #[test]
    fn test_byte_fields_round_trip() {
        let map = VersionMap::new();
        let vec = VecField::new(1, 4096);
        assert_eq!(encode(&vec, &map, 1).len(), 8 + 4096);
        let array = ArrayField::<4096>::new(1);
        let bytes = encode(&array, &map, 1);
        assert_eq!(bytes.len(), 4096);
        let back = ArrayField::<4096>::deserialize(&mut bytes.as_slice(), &map, 1).unwrap();
        assert_eq!(back, array);
    }
}
