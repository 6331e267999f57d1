//! vCPU state: registers, FPU/SSE/AVX area, LAPIC, MSRs, events and CPUID of one x86_64 vCPU,
//! with the functions that read it from and write it to a live [`VcpuFd`].

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_dtable, kvm_lapic_state, kvm_mp_state, kvm_regs,
    kvm_segment, kvm_sregs, kvm_vcpu_events, kvm_xcr, kvm_xcrs, kvm_xsave, CpuId,
    KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, VcpuExit, VcpuFd, VmFd};
use versionize::Versionize;

use crate::error::{KvmStateError, Result};
use crate::msr::{self, Msrs};

/// Size in bytes of the legacy `kvm_xsave` area (`KVM_GET_XSAVE` without `KVM_CAP_XSAVE2`).
pub const LEGACY_XSAVE_SIZE: usize = size_of::<kvm_xsave>();

/// Number of 32-bit words in the legacy `kvm_xsave` region.
const XSAVE_REGION_WORDS: usize = LEGACY_XSAVE_SIZE / 4;

/// Size in bytes of the LAPIC register page.
pub const LAPIC_REGS_SIZE: usize = kvm_bindings::KVM_APIC_REG_SIZE as usize;

/// Largest TSC frequency difference, in parts per million, that a restore tolerates without
/// calling `KVM_SET_TSC_KHZ`.
pub const TSC_KHZ_TOLERANCE_PPM: u64 = 250;

/// General purpose registers, `RIP` and `RFLAGS` (`kvm_regs`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Regs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RSP, the stack pointer.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RIP, the instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

impl From<&kvm_regs> for Regs {
    fn from(r: &kvm_regs) -> Self {
        Regs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rsp: r.rsp,
            rbp: r.rbp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
            rflags: r.rflags,
        }
    }
}

impl From<&Regs> for kvm_regs {
    fn from(r: &Regs) -> Self {
        kvm_regs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rsp: r.rsp,
            rbp: r.rbp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
            rflags: r.rflags,
        }
    }
}

/// A segment register with its hidden descriptor part (`kvm_segment`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Segment {
    /// Segment base address.
    pub base: u64,
    /// Segment limit, in bytes.
    pub limit: u32,
    /// Selector value.
    pub selector: u16,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    /// Present bit.
    pub present: u8,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size bit (D/B).
    pub db: u8,
    /// Descriptor type bit (0 = system, 1 = code or data).
    pub s: u8,
    /// 64-bit code segment bit.
    pub l: u8,
    /// Granularity bit.
    pub g: u8,
    /// Available-for-software bit.
    pub avl: u8,
    /// KVM's "unusable segment" flag.
    pub unusable: u8,
}

impl From<&kvm_segment> for Segment {
    fn from(s: &kvm_segment) -> Self {
        Segment {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            type_: s.type_,
            present: s.present,
            dpl: s.dpl,
            db: s.db,
            s: s.s,
            l: s.l,
            g: s.g,
            avl: s.avl,
            unusable: s.unusable,
        }
    }
}

impl From<&Segment> for kvm_segment {
    fn from(s: &Segment) -> Self {
        kvm_segment {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            type_: s.type_,
            present: s.present,
            dpl: s.dpl,
            db: s.db,
            s: s.s,
            l: s.l,
            g: s.g,
            avl: s.avl,
            unusable: s.unusable,
            padding: 0,
        }
    }
}

/// A descriptor table register, GDTR or IDTR (`kvm_dtable`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct DTable {
    /// Linear base address of the table.
    pub base: u64,
    /// Table limit, in bytes.
    pub limit: u16,
}

impl From<&kvm_dtable> for DTable {
    fn from(d: &kvm_dtable) -> Self {
        DTable {
            base: d.base,
            limit: d.limit,
        }
    }
}

impl From<&DTable> for kvm_dtable {
    fn from(d: &DTable) -> Self {
        kvm_dtable {
            base: d.base,
            limit: d.limit,
            padding: [0; 3],
        }
    }
}

/// Segment, descriptor-table and control registers (`kvm_sregs`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Sregs {
    /// Code segment.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS segment.
    pub fs: Segment,
    /// GS segment.
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// Local descriptor table register.
    pub ldt: Segment,
    /// Global descriptor table register.
    pub gdt: DTable,
    /// Interrupt descriptor table register.
    pub idt: DTable,
    /// Control register 0.
    pub cr0: u64,
    /// Control register 2 (page fault address).
    pub cr2: u64,
    /// Control register 3 (page table root).
    pub cr3: u64,
    /// Control register 4.
    pub cr4: u64,
    /// Control register 8 (task priority).
    pub cr8: u64,
    /// Extended feature enable register.
    pub efer: u64,
    /// `IA32_APIC_BASE`.
    pub apic_base: u64,
    /// Bitmap of pending external interrupts (256 bits).
    pub interrupt_bitmap: [u64; 4],
}

impl From<&kvm_sregs> for Sregs {
    fn from(s: &kvm_sregs) -> Self {
        Sregs {
            cs: (&s.cs).into(),
            ds: (&s.ds).into(),
            es: (&s.es).into(),
            fs: (&s.fs).into(),
            gs: (&s.gs).into(),
            ss: (&s.ss).into(),
            tr: (&s.tr).into(),
            ldt: (&s.ldt).into(),
            gdt: (&s.gdt).into(),
            idt: (&s.idt).into(),
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: s.cr8,
            efer: s.efer,
            apic_base: s.apic_base,
            interrupt_bitmap: s.interrupt_bitmap,
        }
    }
}

impl From<&Sregs> for kvm_sregs {
    fn from(s: &Sregs) -> Self {
        kvm_sregs {
            cs: (&s.cs).into(),
            ds: (&s.ds).into(),
            es: (&s.es).into(),
            fs: (&s.fs).into(),
            gs: (&s.gs).into(),
            ss: (&s.ss).into(),
            tr: (&s.tr).into(),
            ldt: (&s.ldt).into(),
            gdt: (&s.gdt).into(),
            idt: (&s.idt).into(),
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: s.cr8,
            efer: s.efer,
            apic_base: s.apic_base,
            interrupt_bitmap: s.interrupt_bitmap,
        }
    }
}

/// The XSAVE area: x87, SSE (XMM registers), AVX and other extended state (`kvm_xsave`).
///
/// `region` is the legacy 4 KiB area (1024 words); `extra` is the part beyond it that
/// `KVM_GET_XSAVE2` returns when the kernel's `KVM_CAP_XSAVE2` size exceeds 4 KiB (for
/// example AMX tile data), empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xsave {
    /// The first 4096 bytes of the area, as 1024 native-endian words.
    pub region: Vec<u32>,
    /// Words past the first 4096 bytes (the `kvm_xsave` flexible array member).
    pub extra: Vec<u32>,
}

impl Xsave {
    /// Size in bytes of the saved area up to its last non-zero word (at least 4096).
    pub fn used_size(&self) -> usize {
        let extra_used = self
            .extra
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i + 1);
        LEGACY_XSAVE_SIZE + extra_used * 4
    }

    /// Builds the kernel structure for a host whose `KVM_SET_XSAVE` reads `host_size` bytes.
    ///
    /// The flexible array is sized so the buffer holds at least `host_size` bytes; missing
    /// words are zero (the "init" state of the components they belong to).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] if `region` is not 1024 words,
    /// [`KvmStateError::XsaveTooLarge`] if non-zero saved words do not fit in `host_size`.
    pub fn to_kvm(&self, host_size: usize) -> Result<kvm_bindings::Xsave> {
        if self.region.len() != XSAVE_REGION_WORDS {
            return Err(KvmStateError::BadLength {
                what: "xsave region",
                found: self.region.len(),
                expected: XSAVE_REGION_WORDS,
            });
        }
        let extra_words = host_size.saturating_sub(LEGACY_XSAVE_SIZE).div_ceil(4);
        let used = self.used_size();
        if used > LEGACY_XSAVE_SIZE + extra_words * 4 {
            return Err(KvmStateError::XsaveTooLarge {
                saved: used,
                host: host_size.max(LEGACY_XSAVE_SIZE),
            });
        }
        let mut xsave = kvm_bindings::Xsave::new(extra_words).map_err(|source| {
            KvmStateError::TooManyEntries {
                what: "kvm_xsave",
                entries: extra_words,
                source,
            }
        })?;
        // SAFETY: the reference is used only to write the fixed-size `region` array of the
        // header; the `len` field, which must keep matching the allocation, is left alone.
        let header = unsafe { &mut xsave.as_mut_fam_struct().xsave };
        header.region.copy_from_slice(&self.region);
        let n = self.extra.len().min(extra_words);
        xsave.as_mut_slice()[..n].copy_from_slice(&self.extra[..n]);
        Ok(xsave)
    }
}

impl From<&kvm_xsave> for Xsave {
    fn from(x: &kvm_xsave) -> Self {
        Xsave {
            region: x.region.to_vec(),
            extra: Vec::new(),
        }
    }
}

impl From<&kvm_bindings::Xsave> for Xsave {
    fn from(x: &kvm_bindings::Xsave) -> Self {
        Xsave {
            region: x.as_fam_struct_ref().xsave.region.to_vec(),
            extra: x.as_slice().to_vec(),
        }
    }
}

impl TryFrom<&Xsave> for kvm_xsave {
    type Error = KvmStateError;

    /// Converts to the legacy 4 KiB structure; fails if `extra` holds non-zero words.
    fn try_from(x: &Xsave) -> Result<Self> {
        let wrapper = x.to_kvm(LEGACY_XSAVE_SIZE)?;
        Ok(kvm_xsave {
            region: wrapper.as_fam_struct_ref().xsave.region,
            ..Default::default()
        })
    }
}

/// One extended control register (`kvm_xcr`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xcr {
    /// Register number (0 for XCR0).
    pub xcr: u32,
    /// Register value.
    pub value: u64,
}

/// Extended control registers, e.g. XCR0 (`kvm_xcrs`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xcrs {
    /// The `flags` field of `kvm_xcrs`.
    pub flags: u32,
    /// The valid registers (the first `nr_xcrs` entries, at most 16).
    pub xcrs: Vec<Xcr>,
}

impl From<&kvm_xcrs> for Xcrs {
    fn from(x: &kvm_xcrs) -> Self {
        let n = (x.nr_xcrs as usize).min(x.xcrs.len());
        Xcrs {
            flags: x.flags,
            xcrs: x.xcrs[..n]
                .iter()
                .map(|r| Xcr {
                    xcr: r.xcr,
                    value: r.value,
                })
                .collect(),
        }
    }
}

impl TryFrom<&Xcrs> for kvm_xcrs {
    type Error = KvmStateError;

    fn try_from(x: &Xcrs) -> Result<Self> {
        let mut out = kvm_xcrs::default();
        if x.xcrs.len() > out.xcrs.len() {
            return Err(KvmStateError::BadLength {
                what: "xcrs",
                found: x.xcrs.len(),
                expected: out.xcrs.len(),
            });
        }
        for (slot, r) in out.xcrs.iter_mut().zip(&x.xcrs) {
            *slot = kvm_xcr {
                xcr: r.xcr,
                reserved: 0,
                value: r.value,
            };
        }
        // At most 16 entries (checked above), so the count fits in u32.
        out.nr_xcrs = x.xcrs.len() as u32;
        out.flags = x.flags;
        Ok(out)
    }
}

/// Debug registers (`kvm_debugregs`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct DebugRegs {
    /// DR0 to DR3, the breakpoint addresses.
    pub db: [u64; 4],
    /// DR6, the debug status.
    pub dr6: u64,
    /// DR7, the debug control.
    pub dr7: u64,
    /// The `flags` field of `kvm_debugregs`.
    pub flags: u64,
}

impl From<&kvm_debugregs> for DebugRegs {
    fn from(d: &kvm_debugregs) -> Self {
        DebugRegs {
            db: d.db,
            dr6: d.dr6,
            dr7: d.dr7,
            flags: d.flags,
        }
    }
}

impl From<&DebugRegs> for kvm_debugregs {
    fn from(d: &DebugRegs) -> Self {
        kvm_debugregs {
            db: d.db,
            dr6: d.dr6,
            dr7: d.dr7,
            flags: d.flags,
            reserved: [0; 9],
        }
    }
}

/// The local APIC register page (`kvm_lapic_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Lapic {
    /// The 1024-byte register page as KVM lays it out.
    pub regs: Vec<u8>,
}

impl From<&kvm_lapic_state> for Lapic {
    fn from(l: &kvm_lapic_state) -> Self {
        Lapic {
            // c_char -> u8 keeps the bit pattern.
            regs: l.regs.iter().map(|&b| b as u8).collect(),
        }
    }
}

impl TryFrom<&Lapic> for kvm_lapic_state {
    type Error = KvmStateError;

    fn try_from(l: &Lapic) -> Result<Self> {
        let mut out = kvm_lapic_state::default();
        if l.regs.len() != out.regs.len() {
            return Err(KvmStateError::BadLength {
                what: "lapic registers",
                found: l.regs.len(),
                expected: out.regs.len(),
            });
        }
        for (dst, &src) in out.regs.iter_mut().zip(&l.regs) {
            // u8 -> c_char keeps the bit pattern.
            *dst = src as std::os::raw::c_char;
        }
        Ok(out)
    }
}

/// Multiprocessing state, e.g. runnable or halted (`kvm_mp_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MpState {
    /// One of the `KVM_MP_STATE_*` values.
    pub mp_state: u32,
}

impl From<&kvm_mp_state> for MpState {
    fn from(m: &kvm_mp_state) -> Self {
        MpState {
            mp_state: m.mp_state,
        }
    }
}

impl From<&MpState> for kvm_mp_state {
    fn from(m: &MpState) -> Self {
        kvm_mp_state {
            mp_state: m.mp_state,
        }
    }
}

/// A pending or injected exception (`kvm_vcpu_events.exception`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct ExceptionEvent {
    /// The exception is being injected.
    pub injected: u8,
    /// Exception vector.
    pub nr: u8,
    /// `error_code` is valid.
    pub has_error_code: u8,
    /// The exception is pending (not yet injected).
    pub pending: u8,
    /// Error code pushed with the exception.
    pub error_code: u32,
}

/// A pending or injected external or soft interrupt (`kvm_vcpu_events.interrupt`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct InterruptEvent {
    /// The interrupt is being injected.
    pub injected: u8,
    /// Interrupt vector.
    pub nr: u8,
    /// Software interrupt (`int n`).
    pub soft: u8,
    /// Interrupt shadow (after `sti` or `mov ss`).
    pub shadow: u8,
}

/// NMI state (`kvm_vcpu_events.nmi`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct NmiEvent {
    /// An NMI is being injected.
    pub injected: u8,
    /// An NMI is pending.
    pub pending: u8,
    /// NMIs are blocked.
    pub masked: u8,
}

/// System management mode state (`kvm_vcpu_events.smi`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct SmiEvent {
    /// The vCPU is in SMM.
    pub smm: u8,
    /// An SMI is pending.
    pub pending: u8,
    /// SMM was entered while an NMI was being handled.
    pub smm_inside_nmi: u8,
    /// An INIT was latched while in SMM.
    pub latched_init: u8,
}

/// Triple fault state (`kvm_vcpu_events.triple_fault`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct TripleFaultEvent {
    /// A triple fault is pending.
    pub pending: u8,
}

/// Pending exceptions, interrupts, NMIs and SMIs (`kvm_vcpu_events`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct VcpuEvents {
    /// Exception state.
    pub exception: ExceptionEvent,
    /// Interrupt state.
    pub interrupt: InterruptEvent,
    /// NMI state.
    pub nmi: NmiEvent,
    /// SIPI vector of a pending startup IPI.
    pub sipi_vector: u32,
    /// `KVM_VCPUEVENT_VALID_*` flags telling which fields are valid.
    pub flags: u32,
    /// SMM state.
    pub smi: SmiEvent,
    /// Triple fault state.
    pub triple_fault: TripleFaultEvent,
    /// `exception_payload` is valid.
    pub exception_has_payload: u8,
    /// Exception payload (e.g. CR2 of a page fault, DR6 of a debug exception).
    pub exception_payload: u64,
}

impl From<&kvm_vcpu_events> for VcpuEvents {
    fn from(e: &kvm_vcpu_events) -> Self {
        VcpuEvents {
            exception: ExceptionEvent {
                injected: e.exception.injected,
                nr: e.exception.nr,
                has_error_code: e.exception.has_error_code,
                pending: e.exception.pending,
                error_code: e.exception.error_code,
            },
            interrupt: InterruptEvent {
                injected: e.interrupt.injected,
                nr: e.interrupt.nr,
                soft: e.interrupt.soft,
                shadow: e.interrupt.shadow,
            },
            nmi: NmiEvent {
                injected: e.nmi.injected,
                pending: e.nmi.pending,
                masked: e.nmi.masked,
            },
            sipi_vector: e.sipi_vector,
            flags: e.flags,
            smi: SmiEvent {
                smm: e.smi.smm,
                pending: e.smi.pending,
                smm_inside_nmi: e.smi.smm_inside_nmi,
                latched_init: e.smi.latched_init,
            },
            triple_fault: TripleFaultEvent {
                pending: e.triple_fault.pending,
            },
            exception_has_payload: e.exception_has_payload,
            exception_payload: e.exception_payload,
        }
    }
}

impl From<&VcpuEvents> for kvm_vcpu_events {
    fn from(e: &VcpuEvents) -> Self {
        let mut out = kvm_vcpu_events::default();
        out.exception.injected = e.exception.injected;
        out.exception.nr = e.exception.nr;
        out.exception.has_error_code = e.exception.has_error_code;
        out.exception.pending = e.exception.pending;
        out.exception.error_code = e.exception.error_code;
        out.interrupt.injected = e.interrupt.injected;
        out.interrupt.nr = e.interrupt.nr;
        out.interrupt.soft = e.interrupt.soft;
        out.interrupt.shadow = e.interrupt.shadow;
        out.nmi.injected = e.nmi.injected;
        out.nmi.pending = e.nmi.pending;
        out.nmi.masked = e.nmi.masked;
        out.sipi_vector = e.sipi_vector;
        out.flags = e.flags;
        out.smi.smm = e.smi.smm;
        out.smi.pending = e.smi.pending;
        out.smi.smm_inside_nmi = e.smi.smm_inside_nmi;
        out.smi.latched_init = e.smi.latched_init;
        out.triple_fault.pending = e.triple_fault.pending;
        out.exception_has_payload = e.exception_has_payload;
        out.exception_payload = e.exception_payload;
        out
    }
}

/// One CPUID leaf as given to the vCPU (`kvm_cpuid_entry2`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Sub-leaf (ECX input).
    pub index: u32,
    /// `KVM_CPUID_FLAG_*` flags.
    pub flags: u32,
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

impl From<&kvm_cpuid_entry2> for CpuidEntry {
    fn from(e: &kvm_cpuid_entry2) -> Self {
        CpuidEntry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

impl From<&CpuidEntry> for kvm_cpuid_entry2 {
    fn from(e: &CpuidEntry) -> Self {
        kvm_cpuid_entry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: [0; 3],
        }
    }
}

/// The CPUID table of a vCPU (`kvm_cpuid2`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Cpuid {
    /// The leaves, in the order KVM returned them.
    pub entries: Vec<CpuidEntry>,
}

impl From<&CpuId> for Cpuid {
    fn from(c: &CpuId) -> Self {
        Cpuid {
            entries: c.as_slice().iter().map(CpuidEntry::from).collect(),
        }
    }
}

impl TryFrom<&Cpuid> for CpuId {
    type Error = KvmStateError;

    fn try_from(c: &Cpuid) -> Result<Self> {
        let entries: Vec<kvm_cpuid_entry2> = c.entries.iter().map(Into::into).collect();
        CpuId::from_entries(&entries).map_err(|source| KvmStateError::TooManyEntries {
            what: "kvm_cpuid2",
            entries: entries.len(),
            source,
        })
    }
}

/// The CPUID registers that hold feature flags, with the bits KVM changes at run time (they
/// follow guest control registers, not host support), as `(leaf, sub-leaf, register, dynamic
/// bits)`.
const CPUID_FEATURE_REGISTERS: &[(u32, u32, &str, u32)] = &[
    // OSXSAVE follows CR4.OSXSAVE; APIC follows IA32_APIC_BASE's enable bit.
    (0x1, 0, "ecx", 1 << 27),
    (0x1, 0, "edx", 1 << 9),
    // OSPKE follows CR4.PKE.
    (0x7, 0, "ebx", 0),
    (0x7, 0, "ecx", 1 << 4),
    (0x7, 0, "edx", 0),
    (0x7, 1, "eax", 0),
    // The XSAVE components (XCR0 bits) and XSAVE instructions.
    (0xd, 0, "eax", 0),
    (0xd, 0, "edx", 0),
    (0xd, 1, "eax", 0),
    (0x8000_0001, 0, "ecx", 0),
    (0x8000_0001, 0, "edx", 0),
    // KVM paravirtual features.
    (0x4000_0001, 0, "eax", 0),
];

fn cpuid_register(entry: &CpuidEntry, register: &str) -> u32 {
    match register {
        "eax" => entry.eax,
        "ebx" => entry.ebx,
        "ecx" => entry.ecx,
        _ => entry.edx,
    }
}

/// Checks that every feature flag the saved CPUID sets is one the host offers.
///
/// `KVM_SET_CPUID2` accepts feature bits the host cannot provide (some kernels keep them and
/// the guest then faults on the missing instruction, others silently clear them, which changes
/// the CPU under the running guest), so a restore must check them itself. `offered` is what the
/// target host gives a guest: `KVM_GET_SUPPORTED_CPUID`, or, more precisely where the kernel
/// adjusts the table it is given, `KVM_GET_CPUID2` of a vCPU that has not run and was given
/// `KVM_GET_SUPPORTED_CPUID` (what the workspace's `demo-vmm` does). Only the registers
/// that hold feature flags are compared (leaves 0x1, 0x7, 0xd, 0x8000_0001 and 0x4000_0001),
/// leaving out the bits that follow guest control registers.
///
/// # Errors
///
/// [`KvmStateError::CpuidNotOffered`] naming the first leaf, register and bits not offered.
pub fn check_cpuid(offered: &[kvm_cpuid_entry2], saved: &Cpuid) -> Result<()> {
    for &(function, index, register, dynamic) in CPUID_FEATURE_REGISTERS {
        let Some(entry) = saved
            .entries
            .iter()
            .find(|e| e.function == function && e.index == index)
        else {
            continue;
        };
        let host = offered
            .iter()
            .find(|e| e.function == function && e.index == index)
            .map_or(0, |e| cpuid_register(&CpuidEntry::from(e), register));
        let bits = cpuid_register(entry, register) & !host & !dynamic;
        if bits != 0 {
            return Err(KvmStateError::CpuidNotOffered {
                function,
                index,
                register,
                bits,
            });
        }
    }
    Ok(())
}

/// Everything KVM holds for one x86_64 vCPU.
///
/// Field order is the order a snapshot stores them in, not the restore order (see
/// [`restore_vcpu`]).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct VcpuState {
    /// CPUID table.
    pub cpuid: Cpuid,
    /// Multiprocessing state.
    pub mp_state: MpState,
    /// General purpose registers.
    pub regs: Regs,
    /// Segment and control registers.
    pub sregs: Sregs,
    /// XSAVE area (x87, SSE, AVX, ...).
    pub xsave: Xsave,
    /// Extended control registers.
    pub xcrs: Xcrs,
    /// Debug registers.
    pub debug_regs: DebugRegs,
    /// Local APIC registers.
    pub lapic: Lapic,
    /// Model specific registers.
    pub msrs: Msrs,
    /// Pending events.
    pub vcpu_events: VcpuEvents,
    /// TSC frequency in kHz, `None` when the kernel did not report one.
    ///
    /// Added in version 2 of `VcpuState` (app version 2): snapshots of app version 1 read
    /// `None`, and [`restore_vcpu`] then leaves the target vCPU's frequency as it is.
    #[version(start = 2)]
    pub tsc_khz: Option<u32>,
}

/// Size in bytes of the xsave area that `KVM_GET_XSAVE2`/`KVM_SET_XSAVE` use for the vCPUs of
/// `vm` (`KVM_CAP_XSAVE2`), at least 4096; `None` when the kernel predates `KVM_CAP_XSAVE2`
/// (and so always uses the legacy 4096 bytes).
///
/// The size grows when the process is granted more dynamic XSTATE features (`arch_prctl`), never
/// shrinks, so a value queried now covers every vCPU buffer of the process.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_CHECK_EXTENSION` fails.
pub fn xsave_size(vm: &VmFd) -> Result<Option<usize>> {
    let size = vm.check_extension_int(Cap::Xsave2);
    match usize::try_from(size) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n.max(LEGACY_XSAVE_SIZE))),
        Err(_) => Err(KvmStateError::Ioctl {
            ioctl: "KVM_CHECK_EXTENSION",
            source: kvm_ioctls::Error::last(),
        }),
    }
}

/// Runs the vCPU once with `immediate_exit` set, so that it returns at once with `EINTR`.
///
/// After a port or MMIO exit the instruction is completed by the next `KVM_RUN` only; this
/// call completes it (RIP moves past it) without running any further guest code, so that
/// state read afterwards is consistent. Call it before [`save_vcpu`].
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_RUN` fails with anything but `EINTR`,
/// [`KvmStateError::PauseNotInterrupted`] if it returned an exit instead.
pub fn pause_vcpu(vcpu: &mut VcpuFd) -> Result<()> {
    vcpu.set_kvm_immediate_exit(1);
    let outcome = match vcpu.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(source) => Err(KvmStateError::Ioctl {
            ioctl: "KVM_RUN",
            source,
        }),
        Ok(exit) => Err(KvmStateError::PauseNotInterrupted(exit_name(&exit))),
    };
    vcpu.set_kvm_immediate_exit(0);
    outcome
}

/// Short name of a vCPU exit for error messages.
pub(crate) fn exit_name(exit: &VcpuExit<'_>) -> &'static str {
    match exit {
        VcpuExit::IoOut(..) => "an io-out exit",
        VcpuExit::IoIn(..) => "an io-in exit",
        VcpuExit::MmioRead(..) => "an mmio-read exit",
        VcpuExit::MmioWrite(..) => "an mmio-write exit",
        VcpuExit::Hlt => "a hlt exit",
        VcpuExit::Shutdown => "a shutdown exit",
        VcpuExit::InternalError => "an internal-error exit",
        VcpuExit::FailEntry(..) => "a fail-entry exit",
        VcpuExit::Intr => "an intr exit",
        _ => "an unexpected exit",
    }
}

/// Reads the full state of a paused vCPU (see [`pause_vcpu`]) of `vm`.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed, or
/// [`KvmStateError::MsrRead`] if an MSR of `msr_indices` (usually
/// [`msr::savable_msr_indices`]) cannot be read.
pub fn save_vcpu(vm: &VmFd, vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState> {
    // 1. mp_state first: KVM_GET_MP_STATE processes pending LAPIC events (INIT/SIPI, a pending
    //    timer wake-up of a halted vCPU) and so can change the LAPIC and run state; everything
    //    read afterwards then agrees with it.
    let mp_state = vcpu
        .get_mp_state()
        .map_err(KvmStateError::ioctl("KVM_GET_MP_STATE"))?;
    // 2. Registers, segment/control registers, FPU and extended state: plain reads.
    let regs = vcpu
        .get_regs()
        .map_err(KvmStateError::ioctl("KVM_GET_REGS"))?;
    let sregs = vcpu
        .get_sregs()
        .map_err(KvmStateError::ioctl("KVM_GET_SREGS"))?;
    let xsave = if let Some(size) = xsave_size(vm)? {
        let extra = (size - LEGACY_XSAVE_SIZE).div_ceil(4);
        let mut buf =
            kvm_bindings::Xsave::new(extra).map_err(|source| KvmStateError::TooManyEntries {
                what: "kvm_xsave",
                entries: extra,
                source,
            })?;
        // SAFETY: `buf` holds 4096 bytes plus `extra` words, at least the KVM_CAP_XSAVE2 size
        // just queried, which bounds the vCPU's xsave size (it only grows with the process's
        // XSTATE permissions, which the query already reflects); so the kernel writes inside
        // `buf`.
        unsafe { vcpu.get_xsave2(&mut buf) }.map_err(KvmStateError::ioctl("KVM_GET_XSAVE2"))?;
        Xsave::from(&buf)
    } else {
        let x = vcpu
            .get_xsave()
            .map_err(KvmStateError::ioctl("KVM_GET_XSAVE"))?;
        Xsave::from(&x)
    };
    let xcrs = vcpu
        .get_xcrs()
        .map_err(KvmStateError::ioctl("KVM_GET_XCRS"))?;
    let debug_regs = vcpu
        .get_debug_regs()
        .map_err(KvmStateError::ioctl("KVM_GET_DEBUGREGS"))?;
    // 3. LAPIC after mp_state (see 1.).
    let lapic = vcpu
        .get_lapic()
        .map_err(KvmStateError::ioctl("KVM_GET_LAPIC"))?;
    // 4. MSRs, including IA32_TSC and IA32_TSC_DEADLINE.
    let msrs = msr::get_msrs(vcpu, msr_indices)?;
    let cpuid = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(KvmStateError::ioctl("KVM_GET_CPUID2"))?;
    // The TSC frequency is optional: the kernel refuses it when the host TSC is unstable.
    let tsc_khz = vcpu.get_tsc_khz().ok();
    // 5. vcpu_events last: the GET ioctls above may update KVM's internal event state
    //    (KVM_GET_MP_STATE processes pending LAPIC events), so the events are read once the
    //    others are done and describe the vCPU as they left it.
    let vcpu_events = vcpu
        .get_vcpu_events()
        .map_err(KvmStateError::ioctl("KVM_GET_VCPU_EVENTS"))?;
    Ok(VcpuState {
        cpuid: Cpuid::from(&cpuid),
        mp_state: MpState::from(&mp_state),
        regs: Regs::from(&regs),
        sregs: Sregs::from(&sregs),
        xsave,
        xcrs: Xcrs::from(&xcrs),
        debug_regs: DebugRegs::from(&debug_regs),
        lapic: Lapic::from(&lapic),
        msrs,
        vcpu_events: VcpuEvents::from(&vcpu_events),
        tsc_khz,
    })
}

/// Sets the TSC frequency of `vcpu` to `saved_khz` if it differs by more than
/// [`TSC_KHZ_TOLERANCE_PPM`].
///
/// # Errors
///
/// [`KvmStateError::TscFrequency`] if the frequencies differ (or the current one is unknown)
/// and `KVM_SET_TSC_KHZ` fails.
pub fn restore_tsc_khz(vcpu: &VcpuFd, saved_khz: u32) -> Result<()> {
    let current = vcpu.get_tsc_khz().ok();
    if let Some(current) = current {
        let diff = u64::from(current.abs_diff(saved_khz));
        if diff * 1_000_000 <= u64::from(saved_khz) * TSC_KHZ_TOLERANCE_PPM {
            return Ok(());
        }
    }
    vcpu.set_tsc_khz(saved_khz)
        .map_err(|source| KvmStateError::TscFrequency {
            saved_khz,
            current_khz: current,
            source,
        })
}

/// Writes a saved state into a vCPU of `vm` that has not run yet.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed, [`KvmStateError::MsrWrite`]
/// naming the first refused MSR, [`KvmStateError::TscFrequency`], or a conversion error
/// ([`KvmStateError::BadLength`], [`KvmStateError::XsaveTooLarge`],
/// [`KvmStateError::TooManyEntries`]) for a malformed state.
pub fn restore_vcpu(vm: &VmFd, vcpu: &VcpuFd, state: &VcpuState) -> Result<()> {
    // Convert everything first, so a malformed state fails before the vCPU is touched.
    let cpuid = CpuId::try_from(&state.cpuid)?;
    let host_xsave_size = xsave_size(vm)?;
    let xsave = state
        .xsave
        .to_kvm(host_xsave_size.unwrap_or(LEGACY_XSAVE_SIZE))?;
    let xcrs = kvm_xcrs::try_from(&state.xcrs)?;
    let lapic = kvm_lapic_state::try_from(&state.lapic)?;

    // 0. TSC frequency before anything that depends on it: the TSC value (an MSR) and the
    //    LAPIC timer deadline are interpreted at the vCPU's frequency.
    if let Some(khz) = state.tsc_khz {
        restore_tsc_khz(vcpu, khz)?;
    }
    // 1. CPUID first: KVM derives which registers, MSRs and xsave components are valid from
    //    it, and refuses to change it once the vCPU has run.
    vcpu.set_cpuid2(&cpuid)
        .map_err(KvmStateError::ioctl("KVM_SET_CPUID2"))?;
    // 2. mp_state before the registers: KVM acts on some states at the next event processing
    //    (INIT_RECEIVED resets the vCPU), so the registers written next are the final ones.
    vcpu.set_mp_state((&state.mp_state).into())
        .map_err(KvmStateError::ioctl("KVM_SET_MP_STATE"))?;
    // 3. General purpose registers. KVM_SET_REGS drops a pending exception, one reason the
    //    events come last.
    vcpu.set_regs(&(&state.regs).into())
        .map_err(KvmStateError::ioctl("KVM_SET_REGS"))?;
    // 4. sregs: control registers and EFER select the mode (long mode, paging) that later
    //    state is checked against; also restores IA32_APIC_BASE before the LAPIC.
    vcpu.set_sregs(&(&state.sregs).into())
        .map_err(KvmStateError::ioctl("KVM_SET_SREGS"))?;
    // 5. xsave after CPUID and sregs: KVM accepts only the XSAVE components the guest CPUID
    //    allows.
    // SAFETY: `to_kvm` sized `xsave` to at least the KVM_CAP_XSAVE2 size queried above (or
    // 4096 bytes on kernels without it, which read exactly `struct kvm_xsave`). KVM_SET_XSAVE
    // reads the vCPU's xsave size, which that query bounds (it only grows with the process's
    // XSTATE permissions, already reflected in the query), so the kernel reads inside `xsave`.
    unsafe { vcpu.set_xsave2(&xsave) }.map_err(KvmStateError::ioctl("KVM_SET_XSAVE"))?;
    // 6. xcrs: XCR0, also checked against the guest CPUID.
    vcpu.set_xcrs(&xcrs)
        .map_err(KvmStateError::ioctl("KVM_SET_XCRS"))?;
    // 7. Debug registers.
    vcpu.set_debug_regs(&(&state.debug_regs).into())
        .map_err(KvmStateError::ioctl("KVM_SET_DEBUGREGS"))?;
    // 8. LAPIC after sregs, which carry IA32_APIC_BASE (enable, x2APIC mode), and before the
    //    MSRs: IA32_TSC_DEADLINE is accepted only once the LAPIC timer is in TSC-deadline mode.
    vcpu.set_lapic(&lapic)
        .map_err(KvmStateError::ioctl("KVM_SET_LAPIC"))?;
    // 9. MSRs, IA32_TSC_DEADLINE after IA32_TSC (the deadline is relative to the TSC).
    msr::set_msrs(vcpu, &state.msrs)?;
    // 10. vcpu_events last: KVM_SET_REGS, KVM_SET_SREGS and KVM_SET_LAPIC can clear pending
    //     exceptions and interrupts; this puts them back.
    vcpu.set_vcpu_events(&(&state.vcpu_events).into())
        .map_err(KvmStateError::ioctl("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at_app_version, patterned, through_bytes};

    #[test]
    fn test_regs_roundtrip() {
        let orig: kvm_regs = patterned();
        let ours = through_bytes(&Regs::from(&orig));
        assert_eq!(ours.rip, orig.rip);
        assert_eq!(kvm_regs::from(&ours), orig);
    }

    fn unpadded_segment(mut s: kvm_segment) -> kvm_segment {
        s.padding = 0;
        s
    }

    #[test]
    fn test_sregs_roundtrip() {
        let mut orig: kvm_sregs = patterned();
        for seg in [
            &mut orig.cs,
            &mut orig.ds,
            &mut orig.es,
            &mut orig.fs,
            &mut orig.gs,
            &mut orig.ss,
            &mut orig.tr,
            &mut orig.ldt,
        ] {
            *seg = unpadded_segment(*seg);
        }
        orig.gdt.padding = [0; 3];
        orig.idt.padding = [0; 3];
        let ours = through_bytes(&Sregs::from(&orig));
        assert_eq!(ours.tr.type_, orig.tr.type_);
        assert_eq!(kvm_sregs::from(&ours), orig);
    }

    #[test]
    fn test_segment_padding_dropped() {
        let orig: kvm_segment = patterned();
        let back = kvm_segment::from(&through_bytes(&Segment::from(&orig)));
        assert_eq!(back.padding, 0);
        assert_eq!(back, unpadded_segment(orig));
    }

    #[test]
    fn test_xsave_legacy_roundtrip() {
        let orig: kvm_xsave = patterned();
        let ours = through_bytes(&Xsave::from(&orig));
        assert_eq!(ours.region.len(), 1024);
        assert!(ours.extra.is_empty());
        let back = kvm_xsave::try_from(&ours).unwrap();
        assert_eq!(back.region, orig.region);
    }

    #[test]
    fn test_xsave2_roundtrip_with_extra() {
        let mut orig = kvm_bindings::Xsave::new(300).unwrap();
        // SAFETY: only the fixed-size region is written, `len` is untouched.
        unsafe { orig.as_mut_fam_struct() }.xsave = patterned();
        for (i, w) in orig.as_mut_slice().iter_mut().enumerate() {
            *w = 0x8000_0000 | i as u32;
        }
        let ours = through_bytes(&Xsave::from(&orig));
        assert_eq!(ours.extra.len(), 300);
        assert_eq!(ours.used_size(), 4096 + 1200);
        let back = ours.to_kvm(4096 + 1200).unwrap();
        assert_eq!(back.as_slice(), orig.as_slice());
        assert_eq!(
            back.as_fam_struct_ref().xsave.region,
            orig.as_fam_struct_ref().xsave.region
        );
        // A larger host area is zero-filled.
        let bigger = ours.to_kvm(8192).unwrap();
        assert_eq!(bigger.as_slice().len(), 1024);
        assert_eq!(&bigger.as_slice()[..300], orig.as_slice());
        assert!(bigger.as_slice()[300..].iter().all(|&w| w == 0));
    }

    #[test]
    fn test_xsave_too_large_for_host() {
        let ours = Xsave {
            region: vec![1; 1024],
            extra: vec![0, 0, 7, 0],
        };
        assert_eq!(ours.used_size(), 4096 + 12);
        assert!(matches!(
            kvm_xsave::try_from(&ours),
            Err(KvmStateError::XsaveTooLarge {
                saved: 4108,
                host: 4096
            })
        ));
        // Trailing zero words are not state: they fit anywhere.
        let zeros = Xsave {
            region: vec![1; 1024],
            extra: vec![0; 64],
        };
        assert!(kvm_xsave::try_from(&zeros).is_ok());
    }

    #[test]
    fn test_xsave_bad_region_length() {
        let ours = Xsave {
            region: vec![0; 10],
            extra: Vec::new(),
        };
        assert!(matches!(
            ours.to_kvm(4096),
            Err(KvmStateError::BadLength {
                what: "xsave region",
                found: 10,
                expected: 1024
            })
        ));
    }

    #[test]
    fn test_xcrs_roundtrip() {
        let mut orig: kvm_xcrs = patterned();
        orig.nr_xcrs = 16;
        orig.padding = [0; 16];
        for x in &mut orig.xcrs {
            x.reserved = 0;
        }
        let ours = through_bytes(&Xcrs::from(&orig));
        assert_eq!(ours.xcrs.len(), 16);
        let back = kvm_xcrs::try_from(&ours).unwrap();
        assert_eq!(back.nr_xcrs, orig.nr_xcrs);
        assert_eq!(back.flags, orig.flags);
        for (b, o) in back.xcrs.iter().zip(&orig.xcrs) {
            assert_eq!((b.xcr, b.reserved, b.value), (o.xcr, o.reserved, o.value));
        }
        assert_eq!(back.padding, orig.padding);
    }

    #[test]
    fn test_xcrs_only_valid_entries_kept() {
        let mut orig: kvm_xcrs = patterned();
        orig.nr_xcrs = 1;
        let ours = Xcrs::from(&orig);
        assert_eq!(ours.xcrs.len(), 1);
        let back = kvm_xcrs::try_from(&ours).unwrap();
        assert_eq!(back.nr_xcrs, 1);
        assert_eq!(back.xcrs[0].value, orig.xcrs[0].value);
        assert_eq!(back.xcrs[1].value, 0);
        // A corrupt count is clamped to the array.
        orig.nr_xcrs = 1000;
        assert_eq!(Xcrs::from(&orig).xcrs.len(), 16);
        let too_many = Xcrs {
            flags: 0,
            xcrs: vec![Xcr::default(); 17],
        };
        assert!(kvm_xcrs::try_from(&too_many).is_err());
    }

    #[test]
    fn test_debugregs_roundtrip() {
        let mut orig: kvm_debugregs = patterned();
        orig.reserved = [0; 9];
        let back = kvm_debugregs::from(&through_bytes(&DebugRegs::from(&orig)));
        assert_eq!(
            (back.db, back.dr6, back.dr7, back.flags, back.reserved),
            (orig.db, orig.dr6, orig.dr7, orig.flags, orig.reserved)
        );
    }

    #[test]
    fn test_lapic_roundtrip() {
        let orig: kvm_lapic_state = patterned();
        let ours = through_bytes(&Lapic::from(&orig));
        assert_eq!(ours.regs.len(), LAPIC_REGS_SIZE);
        assert!(
            ours.regs.iter().any(|&b| b > 0x7f),
            "bit pattern of c_char kept"
        );
        let back = kvm_lapic_state::try_from(&ours).unwrap();
        assert_eq!(back.regs, orig.regs);
    }

    #[test]
    fn test_lapic_bad_length() {
        let ours = Lapic {
            regs: vec![0; 1000],
        };
        assert!(matches!(
            kvm_lapic_state::try_from(&ours),
            Err(KvmStateError::BadLength {
                what: "lapic registers",
                found: 1000,
                expected: 1024
            })
        ));
    }

    #[test]
    fn test_mp_state_roundtrip() {
        let orig: kvm_mp_state = patterned();
        assert_eq!(
            kvm_mp_state::from(&through_bytes(&MpState::from(&orig))),
            orig
        );
    }

    #[test]
    fn test_vcpu_events_roundtrip() {
        let mut orig: kvm_vcpu_events = patterned();
        orig.nmi.pad = 0;
        orig.reserved = [0; 26];
        let ours = through_bytes(&VcpuEvents::from(&orig));
        assert_eq!(ours.smi.latched_init, orig.smi.latched_init);
        assert_eq!(ours.exception_payload, orig.exception_payload);
        let back = kvm_vcpu_events::from(&ours);
        assert_eq!(back, orig);
    }

    #[test]
    fn test_cpuid_roundtrip() {
        let entries: Vec<kvm_cpuid_entry2> = (0..80u8)
            .map(|i| {
                let mut e: kvm_cpuid_entry2 = patterned();
                e.function = u32::from(i);
                e.padding = [0; 3];
                e
            })
            .collect();
        let orig = CpuId::from_entries(&entries).unwrap();
        let ours = through_bytes(&Cpuid::from(&orig));
        assert_eq!(ours.entries.len(), 80);
        let back = CpuId::try_from(&ours).unwrap();
        assert_eq!(back.as_slice(), orig.as_slice());
    }

    #[test]
    fn test_cpuid_too_many_entries() {
        let ours = Cpuid {
            entries: vec![CpuidEntry::default(); KVM_MAX_CPUID_ENTRIES + 1],
        };
        assert!(matches!(
            CpuId::try_from(&ours),
            Err(KvmStateError::TooManyEntries {
                what: "kvm_cpuid2",
                ..
            })
        ));
    }

    #[test]
    fn test_check_cpuid_compares_feature_flags_only() {
        let offered = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: 0x0000_2001,
                edx: 0x0000_0011,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                ebx: 0x8,
                ..Default::default()
            },
        ];
        let saved = |function, ebx, ecx, edx| Cpuid {
            entries: vec![CpuidEntry {
                function,
                ebx,
                ecx,
                edx,
                ..Default::default()
            }],
        };
        // A subset, plus the bits that follow guest state (OSXSAVE, APIC) and non-feature
        // registers (leaf 1 EBX), passes.
        assert!(check_cpuid(&offered, &saved(1, 0xffff_ffff, 0x0800_2000, 0x211)).is_ok());
        assert!(matches!(
            check_cpuid(&offered, &saved(1, 0, 0x0000_0003, 0)),
            Err(KvmStateError::CpuidNotOffered {
                function: 1,
                index: 0,
                register: "ecx",
                bits: 0x2
            })
        ));
        assert!(matches!(
            check_cpuid(&offered, &saved(7, 0x18, 0, 0)),
            Err(KvmStateError::CpuidNotOffered {
                function: 7,
                register: "ebx",
                bits: 0x10,
                ..
            })
        ));
        // A leaf the host does not have: any feature bit in it is not offered.
        assert!(matches!(
            check_cpuid(&offered, &saved(0x8000_0001, 0, 0, 1)),
            Err(KvmStateError::CpuidNotOffered {
                function: 0x8000_0001,
                register: "edx",
                bits: 1,
                ..
            })
        ));
        // Leaves outside the feature table are not compared.
        assert!(check_cpuid(&offered, &saved(0x8000_0008, 0xffff, 0xffff, 0xffff)).is_ok());
    }

    #[test]
    fn test_dtable_roundtrip() {
        let mut orig: kvm_dtable = patterned();
        orig.padding = [0; 3];
        let back = kvm_dtable::from(&through_bytes(&DTable::from(&orig)));
        assert_eq!(back, orig);
    }

    #[test]
    fn test_vcpu_state_versions() {
        let state = VcpuState {
            regs: Regs {
                rip: 0x8000,
                ..Default::default()
            },
            lapic: Lapic {
                regs: vec![7; LAPIC_REGS_SIZE],
            },
            tsc_khz: Some(2_500_000),
            ..Default::default()
        };
        // App version 2: everything, `tsc_khz` included.
        let (v2, v2_len) = at_app_version(&state, 2);
        assert_eq!(v2, state);
        // App version 1 (`VcpuState` v1) has no `tsc_khz`: 5 bytes fewer (tag + u32), and it
        // reads back as `None`, which makes `restore_vcpu` keep the target's frequency.
        let (v1, v1_len) = at_app_version(&state, 1);
        assert_eq!(v2_len - v1_len, 5);
        assert_eq!(
            v1,
            VcpuState {
                tsc_khz: None,
                ..state.clone()
            }
        );
        assert_eq!(VcpuState::version(), 2);
    }
}
