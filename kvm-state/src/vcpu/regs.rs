//! Registers: general purpose ([`Regs`]), segment, descriptor-table and control ([`Sregs`]),
//! and debug ([`DebugRegs`]), with their save and restore steps.

use kvm_bindings::{kvm_debugregs, kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

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
    /// The four PAE page-directory-pointer-table entries the CPU holds (`KVM_GET_SREGS2`
    /// with `KVM_SREGS2_FLAGS_PDPTRS_VALID`), `None` when the vCPU is not in PAE paging mode
    /// or the host's KVM has no `KVM_CAP_SREGS2`.
    ///
    /// Added in version 2 of `Sregs` (app version 5). A PAE guest's CPU loads the PDPTRs when
    /// CR3 is written and uses them until the next load, even if the guest rewrites the table
    /// in memory; `KVM_SET_SREGS` reloads them from memory instead, so a restore without them
    /// can change a 32-bit PAE guest's address space under it. Snapshots of app versions 1
    /// to 4 read `None` (the PDPTRs are reloaded from memory, what those builds always did).
    #[version(start = 2)]
    pub pdptrs: Option<[u64; 4]>,
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
            pdptrs: None,
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

/// Save step: `KVM_GET_REGS`, `KVM_GET_SREGS` and `KVM_GET_DEBUGREGS` (plain reads).
pub(super) fn save_registers(vcpu: &VcpuFd) -> Result<(Regs, Sregs, DebugRegs)> {
    let regs = vcpu
        .get_regs()
        .map_err(KvmStateError::ioctl("KVM_GET_REGS"))?;
    let sregs = vcpu
        .get_sregs()
        .map_err(KvmStateError::ioctl("KVM_GET_SREGS"))?;
    let debug_regs = vcpu
        .get_debug_regs()
        .map_err(KvmStateError::ioctl("KVM_GET_DEBUGREGS"))?;
    Ok((
        Regs::from(&regs),
        Sregs::from(&sregs),
        DebugRegs::from(&debug_regs),
    ))
}

/// Restore step: `KVM_SET_REGS`. It drops a pending exception, one reason the events are
/// restored last.
pub(super) fn restore_regs(vcpu: &VcpuFd, regs: &Regs) -> Result<()> {
    vcpu.set_regs(&regs.into())
        .map_err(KvmStateError::ioctl("KVM_SET_REGS"))
}

/// Restore step: `KVM_SET_SREGS`. Control registers and EFER select the mode (long mode,
/// paging) that later state is checked against; it also restores `IA32_APIC_BASE`, which
/// the LAPIC needs first.
pub(super) fn restore_sregs(vcpu: &VcpuFd, sregs: &Sregs) -> Result<()> {
    vcpu.set_sregs(&sregs.into())
        .map_err(KvmStateError::ioctl("KVM_SET_SREGS"))
}

/// Restore step: `KVM_SET_DEBUGREGS`.
pub(super) fn restore_debug_regs(vcpu: &VcpuFd, debug_regs: &DebugRegs) -> Result<()> {
    vcpu.set_debug_regs(&debug_regs.into())
        .map_err(KvmStateError::ioctl("KVM_SET_DEBUGREGS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at_app_version, patterned, through_bytes};

    #[test]
    fn test_sregs_pdptrs_from_app_version_5() {
        let sregs = Sregs {
            cr3: 0x1000,
            pdptrs: Some([0x2001, 0x3001, 0, 0]),
            ..Default::default()
        };
        let (v5, v5_len) = at_app_version(&sregs, 5);
        assert_eq!(v5, sregs);
        // App version 4 (`Sregs` v1): no PDPTRs, 33 bytes fewer (tag and four u64), `None`
        // back, so the restore reloads them from memory as the older builds did.
        let (v4, v4_len) = at_app_version(&sregs, 4);
        assert_eq!(v5_len - v4_len, 33);
        assert_eq!(v4.pdptrs, None);
        assert_eq!(Sregs::version(), 2);
    }

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
    fn test_dtable_roundtrip() {
        let mut orig: kvm_dtable = patterned();
        orig.padding = [0; 3];
        let back = kvm_dtable::from(&through_bytes(&DTable::from(&orig)));
        assert_eq!(back, orig);
    }
}
