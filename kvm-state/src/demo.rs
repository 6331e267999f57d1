//! A tiny 64-bit guest and the minimal VMM around it, used by the end-to-end tests, the
//! example and the benchmarks to prove that a snapshot carries every piece of state a guest
//! depends on.
//!
//! The host builds everything in guest memory itself (identity page tables, GDT, IDT) and
//! starts the vCPU directly in long mode. The guest program runs in phases, each ending with
//! an `out` of a 32-bit value to [`REPORT_PORT`], so a VMM can stop it after any phase:
//!
//! 1. reports [`START_MARKER`];
//! 2. loads 16 bytes each into `xmm0` and `xmm9` (`movdqu`), wipes their source in memory,
//!    reports 1;
//! 3. writes [`SCRATCH_VALUE`] to the UART scratch register and `IA32_KERNEL_GS_BASE` (an
//!    MSR only KVM's MSR list carries), reports 2;
//! 4. enables the LAPIC, starts its periodic timer (vector 0x20, whose handler counts ticks
//!    in memory and EOIs), `sti`, and `hlt`s until 5 ticks have happened, reports 3;
//! 5. reports `xmm0` and `xmm9` (stored to memory with `movdqu`, four words each) and the
//!    MSR (low, high word);
//! 6. `hlt`s until 10 ticks have happened, reports 5;
//! 7. `cli`, reports the UART scratch register, then reads the UART input that is pending
//!    (polling the line status register's data-ready bit, at most 8 bytes) and reports how
//!    many bytes it read and the bytes themselves, packed little-endian into two words;
//! 8. reports [`DONE_MARKER`] to [`DONE_PORT`] and halts.
//!
//! The VM has one emulated device, a minimal 16550 UART at COM1 ([`COM1_BASE`]), whose state
//! is a [`SerialState`]. [`DemoVm::load_guest`] queues [`SERIAL_INPUT`] on it, so the input
//! is still pending at every snapshot point before phase 7.
//!
//! The output is deterministic: the guest waits for a fixed number of ticks and never
//! reports how many happened. It uses only instructions that KVM's instruction emulator
//! handles (SSE only as `movdqu` loads and stores; `movq` between XMM and general registers and SSE
//! arithmetic stop PVM's emulator), so it also runs on hosts without hardware virtualization.
//!
//! [`DemoVm::save_microvm`] pauses the guest after an exit and gathers its complete
//! [`MicrovmState`]; [`DemoVm::restore_microvm`] puts such a state into a fresh [`DemoVm`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_lapic_state, kvm_pit_config, kvm_segment, kvm_userspace_memory_region, kvm_xcrs, CpuId,
    KVM_EXIT_INTERNAL_ERROR, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::error::{KvmStateError, Result};
use crate::pause::exit_name;
use crate::{
    check_cpuid, pause_vcpu, restore_vcpu, restore_vm, savable_msr_indices, save_vcpu, save_vm,
    xsave_size, DevicesState, HostSupport, MemoryRegionState, MicrovmState, SerialState,
    LEGACY_XSAVE_SIZE,
};

/// Size of guest memory: 2 MiB at guest physical address 0.
pub const MEM_SIZE: usize = 2 << 20;
/// Port the guest reports 32-bit values to.
pub const REPORT_PORT: u16 = 0x10;
/// Port the exception stubs report `0xdead0000 | vector` to.
pub const FAULT_PORT: u16 = 0x11;
/// Port the guest writes [`DONE_MARKER`] to when it has finished.
pub const DONE_PORT: u16 = 0x12;
/// First value the guest reports ("RATS" read as little-endian bytes).
pub const START_MARKER: u32 = 0x5354_4152;
/// Value written to [`DONE_PORT`] ("DONE" as little-endian bytes).
pub const DONE_MARKER: u32 = 0x454e_4f44;
/// Value the guest writes to `IA32_KERNEL_GS_BASE` (canonical).
pub const KERNEL_GS_BASE_VALUE: u64 = 0x0000_7654_89ab_cdef;
/// The 16 bytes the guest loads into `xmm0`, as four little-endian words.
pub const XMM0_VALUE: [u32; 4] = [0x89ab_cdef, 0x0123_4567, 0x7654_3210, 0xfedc_ba98];
/// The 16 bytes the guest loads into `xmm9`, as four little-endian words.
pub const XMM9_VALUE: [u32; 4] = [0x1111_2222, 0x3333_4444, 0x5555_6666, 0x7777_8888];
/// First I/O port of the emulated 16550 UART (COM1); it has eight registers.
pub const COM1_BASE: u16 = 0x3f8;
/// Value the guest writes to the UART scratch register (and reports back later).
pub const SCRATCH_VALUE: u8 = 0xa5;
/// Bytes [`DemoVm::load_guest`] queues as UART input (at most 8, the most the guest reads).
pub const SERIAL_INPUT: &[u8] = b"serial";
/// Default limit on how long one run call may take before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

// Guest physical memory layout (identity mapped).
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD_LOW: u64 = 0x3000;
const PD_APIC: u64 = 0x4000;
const GDT: u64 = 0x5000;
const TSS: u64 = 0x5800;
const IDT: u64 = 0x6000;
const STUBS: u64 = 0x7000;
const CODE: u64 = 0x8000;
const TICKS: u64 = 0x1_0000;
const XMM0_DATA: u64 = 0x1_0010;
const XMM9_DATA: u64 = 0x1_0020;
const UART_DATA: u64 = 0x1_0060;
const STACK_TOP: u64 = 0x2_0000;
const LAPIC_BASE: u64 = 0xfee0_0000;

// Offsets of the handlers inside `GUEST_CODE`.
const TIMER_HANDLER: u64 = 0x178;
const SPURIOUS_HANDLER: u64 = 0x18e;
const TIMER_VECTOR: usize = 0x20;
const SPURIOUS_VECTOR: usize = 0xff;

/// The guest program, loaded at `CODE` (0x8000). Offsets on the left.
#[rustfmt::skip]
const GUEST_CODE: &[u8] = &[
    // --- phase 1: start
    0xb8, 0x52, 0x41, 0x54, 0x53,                    // 000: mov eax,0x53544152
    0xe7, 0x10,                                      // 005: out 0x10,eax
    // --- phase 2: load xmm0 and xmm9 from memory, then wipe the memory
    0xf3, 0x0f, 0x6f, 0x04, 0x25, 0x10, 0x00, 0x01, 0x00, // 007: movdqu xmm0,0x10010
    0xf3, 0x44, 0x0f, 0x6f, 0x0c, 0x25, 0x20, 0x00, 0x01, 0x00, // 010: movdqu xmm9,0x10020
    0x48, 0xc7, 0x04, 0x25, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // 01a: mov qword 0x10010,0x0
    0x48, 0xc7, 0x04, 0x25, 0x18, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // 026: mov qword 0x10018,0x0
    0x48, 0xc7, 0x04, 0x25, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // 032: mov qword 0x10020,0x0
    0x48, 0xc7, 0x04, 0x25, 0x28, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // 03e: mov qword 0x10028,0x0
    0xb8, 0x01, 0x00, 0x00, 0x00,                    // 04a: mov eax,0x1
    0xe7, 0x10,                                      // 04f: out 0x10,eax
    // --- phase 3: write the UART scratch register and IA32_KERNEL_GS_BASE, clear the
    // registers that held the MSR value
    0x66, 0xba, 0xff, 0x03,                          // 051: mov dx,0x3ff (COM1 SCR)
    0xb0, 0xa5,                                      // 055: mov al,0xa5
    0xee,                                            // 057: out dx,al
    0xb9, 0x02, 0x01, 0x00, 0xc0,                    // 058: mov ecx,0xc0000102
    0xb8, 0xef, 0xcd, 0xab, 0x89,                    // 05d: mov eax,0x89abcdef
    0xba, 0x54, 0x76, 0x00, 0x00,                    // 062: mov edx,0x7654
    0x0f, 0x30,                                      // 067: wrmsr
    0x31, 0xc0,                                      // 069: xor eax,eax
    0x31, 0xd2,                                      // 06b: xor edx,edx
    0xb8, 0x02, 0x00, 0x00, 0x00,                    // 06d: mov eax,0x2
    0xe7, 0x10,                                      // 072: out 0x10,eax
    // --- phase 4: LAPIC timer every 100 us (vector 0x20), wait for 5 ticks
    0xbb, 0x00, 0x00, 0xe0, 0xfe,                    // 074: mov ebx,0xfee00000 (LAPIC base)
    0xc7, 0x83, 0xf0, 0x00, 0x00, 0x00, 0xff, 0x01, 0x00, 0x00, // 079: mov dword [rbx+0xf0],0x1ff (SVR: enable, spurious vector 0xff)
    0xc7, 0x83, 0xe0, 0x03, 0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, // 083: mov dword [rbx+0x3e0],0xb (divide by 1)
    0xc7, 0x83, 0x20, 0x03, 0x00, 0x00, 0x20, 0x00, 0x02, 0x00, // 08d: mov dword [rbx+0x320],0x20020 (LVT timer: periodic, vector 0x20)
    0xc7, 0x83, 0x80, 0x03, 0x00, 0x00, 0xa0, 0x86, 0x01, 0x00, // 097: mov dword [rbx+0x380],0x186a0 (initial count 100000)
    0xfb,                                            // 0a1: sti
    // wait1:
    0xf4,                                            // 0a2: hlt
    0x83, 0x3c, 0x25, 0x00, 0x00, 0x01, 0x00, 0x05,  // 0a3: cmp dword 0x10000,0x5 (tick counter)
    0x72, 0xf5,                                      // 0ab: jb a2 <wait1>
    0xb8, 0x03, 0x00, 0x00, 0x00,                    // 0ad: mov eax,0x3
    0xe7, 0x10,                                      // 0b2: out 0x10,eax
    // --- phase 5: report xmm0, xmm9 (through memory) and the MSR
    0xf3, 0x0f, 0x7f, 0x04, 0x25, 0x40, 0x00, 0x01, 0x00, // 0b4: movdqu 0x10040,xmm0
    0xf3, 0x44, 0x0f, 0x7f, 0x0c, 0x25, 0x50, 0x00, 0x01, 0x00, // 0bd: movdqu 0x10050,xmm9
    0x8b, 0x04, 0x25, 0x40, 0x00, 0x01, 0x00,        // 0c7: mov eax,dword 0x10040
    0xe7, 0x10,                                      // 0ce: out 0x10,eax
    0x8b, 0x04, 0x25, 0x44, 0x00, 0x01, 0x00,        // 0d0: mov eax,dword 0x10044
    0xe7, 0x10,                                      // 0d7: out 0x10,eax
    0x8b, 0x04, 0x25, 0x48, 0x00, 0x01, 0x00,        // 0d9: mov eax,dword 0x10048
    0xe7, 0x10,                                      // 0e0: out 0x10,eax
    0x8b, 0x04, 0x25, 0x4c, 0x00, 0x01, 0x00,        // 0e2: mov eax,dword 0x1004c
    0xe7, 0x10,                                      // 0e9: out 0x10,eax
    0x8b, 0x04, 0x25, 0x50, 0x00, 0x01, 0x00,        // 0eb: mov eax,dword 0x10050
    0xe7, 0x10,                                      // 0f2: out 0x10,eax
    0x8b, 0x04, 0x25, 0x54, 0x00, 0x01, 0x00,        // 0f4: mov eax,dword 0x10054
    0xe7, 0x10,                                      // 0fb: out 0x10,eax
    0x8b, 0x04, 0x25, 0x58, 0x00, 0x01, 0x00,        // 0fd: mov eax,dword 0x10058
    0xe7, 0x10,                                      // 104: out 0x10,eax
    0x8b, 0x04, 0x25, 0x5c, 0x00, 0x01, 0x00,        // 106: mov eax,dword 0x1005c
    0xe7, 0x10,                                      // 10d: out 0x10,eax
    0xb9, 0x02, 0x01, 0x00, 0xc0,                    // 10f: mov ecx,0xc0000102
    0x0f, 0x32,                                      // 114: rdmsr
    0xe7, 0x10,                                      // 116: out 0x10,eax
    0x89, 0xd0,                                      // 118: mov eax,edx
    0xe7, 0x10,                                      // 11a: out 0x10,eax
    // --- phase 6: wait until 10 ticks in all
    // wait2:
    0xf4,                                            // 11c: hlt
    0x83, 0x3c, 0x25, 0x00, 0x00, 0x01, 0x00, 0x0a,  // 11d: cmp dword 0x10000,0xa
    0x72, 0xf5,                                      // 125: jb 11c <wait2>
    0xb8, 0x05, 0x00, 0x00, 0x00,                    // 127: mov eax,0x5
    0xe7, 0x10,                                      // 12c: out 0x10,eax
    // --- phase 7: report the UART scratch register and the pending UART input
    0xfa,                                            // 12e: cli
    0x66, 0xba, 0xff, 0x03,                          // 12f: mov dx,0x3ff (COM1 SCR)
    0xec,                                            // 133: in al,dx
    0x0f, 0xb6, 0xc0,                                // 134: movzx eax,al
    0xe7, 0x10,                                      // 137: out 0x10,eax
    0x31, 0xc9,                                      // 139: xor ecx,ecx (bytes read)
    // rx:
    0x83, 0xf9, 0x08,                                // 13b: cmp ecx,0x8
    0x73, 0x18,                                      // 13e: jae 158 <rxdone>
    0x66, 0xba, 0xfd, 0x03,                          // 140: mov dx,0x3fd (COM1 LSR)
    0xec,                                            // 144: in al,dx
    0xa8, 0x01,                                      // 145: test al,0x1 (data ready)
    0x74, 0x0f,                                      // 147: je 158 <rxdone>
    0x66, 0xba, 0xf8, 0x03,                          // 149: mov dx,0x3f8 (COM1 RBR)
    0xec,                                            // 14d: in al,dx
    0x88, 0x81, 0x60, 0x00, 0x01, 0x00,              // 14e: mov byte [rcx+0x10060],al
    0xff, 0xc1,                                      // 154: inc ecx
    0xeb, 0xe3,                                      // 156: jmp 13b <rx>
    // rxdone:
    0x89, 0xc8,                                      // 158: mov eax,ecx
    0xe7, 0x10,                                      // 15a: out 0x10,eax
    0x8b, 0x04, 0x25, 0x60, 0x00, 0x01, 0x00,        // 15c: mov eax,dword 0x10060
    0xe7, 0x10,                                      // 163: out 0x10,eax
    0x8b, 0x04, 0x25, 0x64, 0x00, 0x01, 0x00,        // 165: mov eax,dword 0x10064
    0xe7, 0x10,                                      // 16c: out 0x10,eax
    // --- phase 8: done
    0xb8, 0x44, 0x4f, 0x4e, 0x45,                    // 16e: mov eax,0x454e4f44
    0xe7, 0x12,                                      // 173: out 0x12,eax
    // done:
    0xf4,                                            // 175: hlt
    0xeb, 0xfd,                                      // 176: jmp 175 <done>
    // --- LAPIC timer handler (vector 0x20): count the tick, EOI
    // timer:
    0x50,                                            // 178: push rax
    0xff, 0x04, 0x25, 0x00, 0x00, 0x01, 0x00,        // 179: inc dword 0x10000
    0xb8, 0xb0, 0x00, 0xe0, 0xfe,                    // 180: mov eax,0xfee000b0 (LAPIC EOI register)
    0xc7, 0x00, 0x00, 0x00, 0x00, 0x00,              // 185: mov dword [rax],0x0
    0x58,                                            // 18b: pop rax
    0x48, 0xcf,                                      // 18c: iretq
    // --- spurious interrupt handler (vector 0xff)
    // spurious:
    0x48, 0xcf,                                      // 18e: iretq
];

/// The values an uninterrupted run of the guest reports to [`REPORT_PORT`], in order.
pub fn expected_output() -> Vec<u32> {
    let mut out = vec![START_MARKER, 1, 2, 3];
    out.extend_from_slice(&XMM0_VALUE);
    out.extend_from_slice(&XMM9_VALUE);
    out.push(KERNEL_GS_BASE_VALUE as u32);
    out.push((KERNEL_GS_BASE_VALUE >> 32) as u32);
    out.push(5);
    out.push(u32::from(SCRATCH_VALUE));
    let n = SERIAL_INPUT.len().min(8);
    out.push(n as u32);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&SERIAL_INPUT[..n]);
    out.push(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    out.push(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
    out
}

// 16550 UART register offsets from `COM1_BASE` and bits.
const UART_RBR_THR_DLL: u16 = 0;
const UART_IER_DLM: u16 = 1;
const UART_IIR_FCR: u16 = 2;
const UART_LCR: u16 = 3;
const UART_MCR: u16 = 4;
const UART_LSR: u16 = 5;
const UART_MSR: u16 = 6;
const UART_SCR: u16 = 7;
const LCR_DLAB: u8 = 0x80;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY_IDLE: u8 = 0x60;

/// A minimal 16550 UART: registers and pending input kept in a [`SerialState`], no
/// interrupts, transmitted bytes dropped.
#[derive(Debug)]
struct Uart {
    state: SerialState,
}

impl Uart {
    /// The state after reset (the register values of `vm_superio::Serial::new`).
    fn power_on_state() -> SerialState {
        SerialState {
            baud_divisor_low: 0x0c,
            baud_divisor_high: 0,
            interrupt_enable: 0,
            interrupt_identification: 0x01, // no interrupt pending
            line_control: 0x03,             // 8 data bits
            line_status: LSR_THR_EMPTY_IDLE,
            modem_control: 0x08, // OUT2
            modem_status: 0xb0,  // DCD, DSR, CTS
            scratch: 0,
            in_buffer: Vec::new(),
        }
    }

    fn new() -> Self {
        Uart {
            state: Self::power_on_state(),
        }
    }

    fn dlab(&self) -> bool {
        self.state.line_control & LCR_DLAB != 0
    }

    /// Keeps the data-ready bit of the saved line status in step with the input buffer.
    fn update_data_ready(&mut self) {
        if self.state.in_buffer.is_empty() {
            self.state.line_status &= !LSR_DATA_READY;
        } else {
            self.state.line_status |= LSR_DATA_READY;
        }
    }

    fn enqueue(&mut self, bytes: &[u8]) {
        self.state.in_buffer.extend_from_slice(bytes);
        self.update_data_ready();
    }

    /// The value the guest reads from register `offset` (0..=7).
    fn read(&mut self, offset: u16) -> u8 {
        match offset {
            UART_RBR_THR_DLL if self.dlab() => self.state.baud_divisor_low,
            UART_RBR_THR_DLL => {
                let byte = if self.state.in_buffer.is_empty() {
                    0
                } else {
                    self.state.in_buffer.remove(0)
                };
                self.update_data_ready();
                byte
            }
            UART_IER_DLM if self.dlab() => self.state.baud_divisor_high,
            UART_IER_DLM => self.state.interrupt_enable,
            UART_IIR_FCR => self.state.interrupt_identification,
            UART_LCR => self.state.line_control,
            UART_MCR => self.state.modem_control,
            UART_LSR => {
                let ready = if self.state.in_buffer.is_empty() {
                    0
                } else {
                    LSR_DATA_READY
                };
                (self.state.line_status & !LSR_DATA_READY) | LSR_THR_EMPTY_IDLE | ready
            }
            UART_MSR => self.state.modem_status,
            UART_SCR => self.state.scratch,
            _ => 0xff,
        }
    }

    /// The guest writes `value` to register `offset` (0..=7).
    fn write(&mut self, offset: u16, value: u8) {
        match offset {
            UART_RBR_THR_DLL if self.dlab() => self.state.baud_divisor_low = value,
            UART_RBR_THR_DLL => {} // transmitted: nobody listens
            UART_IER_DLM if self.dlab() => self.state.baud_divisor_high = value,
            UART_IER_DLM => self.state.interrupt_enable = value & 0x0f,
            UART_LCR => self.state.line_control = value,
            UART_MCR => self.state.modem_control = value,
            UART_SCR => self.state.scratch = value,
            // FCR, and the read-only LSR and MSR.
            _ => {}
        }
    }
}

/// The UART register offset of `port`, if it is one of COM1's.
fn com1_offset(port: u16) -> Option<u16> {
    port.checked_sub(COM1_BASE).filter(|&o| o <= UART_SCR)
}

/// The exception stub for `vector`: report `0xdead0000 | vector` to [`FAULT_PORT`], halt.
fn exception_stub(vector: u8) -> [u8; 10] {
    [
        0xb8, vector, 0x00, 0xad, 0xde, // mov eax, 0xdead0000 | vector
        0xe7, 0x11, // out 0x11, eax
        0xf4, // hlt
        0xeb, 0xfd, // jmp back to hlt
    ]
}

/// A 64-bit interrupt gate to `handler` in the code segment.
fn idt_gate(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&0x8u16.to_le_bytes()); // selector: code segment
    g[4] = 0; // no IST
    g[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g
}

/// What a run of the guest stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoExit {
    /// The guest reported a value to [`REPORT_PORT`].
    Report(u32),
    /// The guest finished ([`DONE_MARKER`] written to [`DONE_PORT`]).
    Done,
}

/// Anonymous host memory backing the guest, unmapped on drop.
struct GuestMemory {
    addr: *mut u8,
    size: usize,
}

impl GuestMemory {
    fn new(size: usize) -> Result<Self> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked for MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(KvmStateError::GuestMemory {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(GuestMemory {
            addr: addr.cast(),
            size,
        })
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        usize::try_from(offset)
            .ok()
            .filter(|&o| o.checked_add(len).is_some_and(|end| end <= self.size))
            .ok_or(KvmStateError::GuestMemoryBounds { offset, len })
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `addr`/`size` are exactly the mapping created in `new`, unmapped only here;
        // the VM using it has been dropped before (field order of `DemoVm`).
        unsafe {
            libc::munmap(self.addr.cast(), self.size);
        }
    }
}

/// A single-vCPU VM with an in-kernel irqchip and PIT and 2 MiB of memory, able to run the
/// demo guest.
pub struct DemoVm {
    // Field order is drop order: the vCPU and VM go before the memory they use.
    vcpu: VcpuFd,
    vm: VmFd,
    msr_indices: Vec<u32>,
    memory: GuestMemory,
    uart: Uart,
    timeout: Duration,
}

impl std::fmt::Debug for DemoVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoVm")
            .field("mem_size", &self.memory.size)
            .field("msr_indices", &self.msr_indices)
            .field("uart", &self.uart)
            .finish_non_exhaustive()
    }
}

impl DemoVm {
    /// Opens `/dev/kvm` and creates the VM: irqchip, PIT, memory, and vCPU 0 with the CPUID
    /// KVM supports. No guest is loaded (see [`DemoVm::load_guest`]).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::OpenKvm`] if `/dev/kvm` cannot be opened, [`KvmStateError::Ioctl`]
    /// naming the ioctl that failed, [`KvmStateError::GuestMemory`] if memory cannot be
    /// mapped.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(KvmStateError::OpenKvm)?;
        Self::with_kvm(&kvm)
    }

    /// Like [`DemoVm::new`] with an already open `/dev/kvm`.
    ///
    /// # Errors
    ///
    /// As [`DemoVm::new`].
    pub fn with_kvm(kvm: &Kvm) -> Result<Self> {
        let vm = kvm
            .create_vm()
            .map_err(KvmStateError::ioctl("KVM_CREATE_VM"))?;
        // Needed by VMX hosts for real-mode emulation; the address is above guest memory.
        vm.set_tss_address(0xfffb_d000)
            .map_err(KvmStateError::ioctl("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(KvmStateError::ioctl("KVM_CREATE_IRQCHIP"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(KvmStateError::ioctl("KVM_CREATE_PIT2"))?;
        let memory = GuestMemory::new(MEM_SIZE)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: memory.addr as u64,
        };
        // SAFETY: the region is exactly the live mapping `memory` (readable and writable,
        // MEM_SIZE bytes), which is dropped only after `vm` (field order of `DemoVm`), so the
        // kernel never accesses it after it is unmapped.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(KvmStateError::ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        let vcpu = vm
            .create_vcpu(0)
            .map_err(KvmStateError::ioctl("KVM_CREATE_VCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmStateError::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(KvmStateError::ioctl("KVM_SET_CPUID2"))?;
        let msr_indices = savable_msr_indices(kvm)?;
        Ok(DemoVm {
            vcpu,
            vm,
            msr_indices,
            memory,
            uart: Uart::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The VM fd.
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// The vCPU fd.
    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    /// The vCPU fd, mutably (to run it or to pause it with [`crate::pause_vcpu`]).
    pub fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpu
    }

    /// The MSRs to save on this host ([`savable_msr_indices`]).
    pub fn msr_indices(&self) -> &[u32] {
        &self.msr_indices
    }

    /// Sets how long one run call may take before it fails (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A copy of all guest memory.
    pub fn read_memory(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.memory.size];
        // SAFETY: the mapping is valid for `size` bytes while `self` lives, `out` has the same
        // length, and the guest cannot write concurrently: running the vCPU needs `&mut self`.
        unsafe { std::ptr::copy_nonoverlapping(self.memory.addr, out.as_mut_ptr(), out.len()) };
        out
    }

    /// Copies `data` into guest memory at guest physical address `offset`.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::GuestMemoryBounds`] if the range is outside guest memory.
    pub fn write_memory(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let start = self.memory.check(offset, data.len())?;
        // SAFETY: `check` proved `start + data.len() <= size`, so the destination lies in the
        // live mapping; `data` is a distinct host buffer; the vCPU is not running (`&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.memory.addr.add(start), data.len())
        };
        Ok(())
    }

    /// The guest memory as a saved region: guest physical address 0, [`MEM_SIZE`] bytes.
    pub fn memory_region(&self) -> MemoryRegionState {
        MemoryRegionState::with_contents(0, self.read_memory())
    }

    /// Writes saved memory regions back into guest memory.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] unless there is exactly one region,
    /// [`KvmStateError::MemoryRegion`] if it is not the demo VM's memory.
    pub fn restore_memory(&mut self, regions: &[MemoryRegionState]) -> Result<()> {
        let [region] = regions else {
            return Err(KvmStateError::BadLength {
                what: "memory regions",
                found: regions.len(),
                expected: 1,
            });
        };
        region.check(0, MEM_SIZE as u64)?;
        if region.has_contents() {
            self.write_memory(0, &region.contents)?;
        }
        Ok(())
    }

    /// Queues bytes the UART has received; the guest reads them from its receive buffer.
    pub fn queue_serial_input(&mut self, bytes: &[u8]) {
        self.uart.enqueue(bytes);
    }

    /// The state of the emulated UART.
    pub fn serial_state(&self) -> &SerialState {
        &self.uart.state
    }

    /// The state of the emulated devices: the UART.
    pub fn devices_state(&self) -> DevicesState {
        DevicesState {
            serial: vec![self.uart.state.clone()],
            ..Default::default()
        }
    }

    /// Restores the emulated devices: the UART gets the saved state, or its power-on state
    /// when the state has no UART (a VM saved without devices).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] if the state has more than one UART.
    pub fn restore_devices(&mut self, devices: &DevicesState) -> Result<()> {
        self.uart.state = Self::check_devices(devices)?
            .cloned()
            .unwrap_or_else(Uart::power_on_state);
        Ok(())
    }

    fn check_devices(devices: &DevicesState) -> Result<Option<&SerialState>> {
        match devices.serial.as_slice() {
            [] => Ok(None),
            [serial] => Ok(Some(serial)),
            more => Err(KvmStateError::BadLength {
                what: "serial devices",
                found: more.len(),
                expected: 1,
            }),
        }
    }

    /// Pauses the vCPU (see [`pause_vcpu`]) and saves the complete state of the VM: VM-wide
    /// state, the vCPU, the UART, and guest memory.
    ///
    /// # Errors
    ///
    /// Any error of [`pause_vcpu`], [`save_vm`] or [`save_vcpu`].
    pub fn save_microvm(&mut self) -> Result<MicrovmState> {
        pause_vcpu(&mut self.vcpu)?;
        let vm = save_vm(&self.vm)?;
        let vcpu = save_vcpu(&self.vm, &self.vcpu, &self.msr_indices)?;
        Ok(MicrovmState {
            vm,
            vcpus: vec![vcpu],
            devices: self.devices_state(),
            memory: vec![self.memory_region()],
            ..Default::default()
        })
    }

    /// Restores a saved state into this VM, which must not have run: memory, then the
    /// VM-wide state, then the vCPU, then the UART (see [`DemoVm::restore_devices`]).
    ///
    /// Everything that can be checked without KVM is checked first: the vCPU count, the
    /// number of UARTs, the
    /// CPUID feature flags against what this host offers ([`check_cpuid`]), the sizes of the
    /// xsave area, LAPIC page and XCRs, and the memory region. A state refused there leaves
    /// the VM untouched. A state that KVM itself refuses later (`KVM_SET_CPUID2`, an MSR)
    /// leaves the VM partly restored: discard it (see `docs/SECURITY.md`).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::VcpuCount`] unless the state has exactly one vCPU,
    /// [`KvmStateError::CpuidNotOffered`], [`KvmStateError::BadLength`] unless there is
    /// exactly one memory region and at most one UART and the xsave area, LAPIC page and
    /// XCRs have their kernel sizes, [`KvmStateError::XsaveTooLarge`], [`KvmStateError::MemoryRegion`], or any error
    /// of [`restore_vm`] and [`restore_vcpu`].
    pub fn restore_microvm(&mut self, state: &MicrovmState) -> Result<()> {
        let [vcpu] = state.vcpus.as_slice() else {
            return Err(KvmStateError::VcpuCount {
                saved: state.vcpus.len(),
                target: 1,
            });
        };
        Self::check_devices(&state.devices)?;
        // The vCPU has not run and holds the CPUID this host offers (set in `with_kvm`).
        let offered = self
            .vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmStateError::ioctl("KVM_GET_CPUID2"))?;
        check_cpuid(offered.as_slice(), &vcpu.cpuid)?;
        CpuId::try_from(&vcpu.cpuid)?;
        vcpu.xsave
            .to_kvm(xsave_size(&self.vm)?.unwrap_or(LEGACY_XSAVE_SIZE))?;
        kvm_lapic_state::try_from(&vcpu.lapic)?;
        kvm_xcrs::try_from(&vcpu.xcrs)?;
        // Checks the regions before writing any.
        self.restore_memory(&state.memory)?;
        // The irqchips before the vCPU: the vCPU's LAPIC state refers to them.
        restore_vm(&self.vm, &state.vm)?;
        let host = HostSupport::new(offered.as_slice().to_vec(), xsave_size(&self.vm)?);
        restore_vcpu(&self.vcpu, vcpu, &host)?;
        self.restore_devices(&state.devices)
    }

    /// Writes the guest (code, page tables, GDT, IDT, data) into memory, points the vCPU at
    /// it in 64-bit long mode, and resets the UART with [`SERIAL_INPUT`] queued.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Ioctl`] if reading or writing the vCPU registers fails.
    pub fn load_guest(&mut self) -> Result<()> {
        // Page tables: identity map the low 2 MiB and the 2 MiB page holding the LAPIC.
        self.write_u64(PML4, PDPT | 0x3)?; // present, writable
        self.write_u64(PDPT, PD_LOW | 0x3)?; // 0..1 GiB
        self.write_u64(PDPT + 3 * 8, PD_APIC | 0x3)?; // 3..4 GiB
        self.write_u64(PD_LOW, 0x83)?; // 2 MiB page at 0: present, writable, large
        let apic_index = (LAPIC_BASE - 0xc000_0000) >> 21;
        self.write_u64(PD_APIC + apic_index * 8, LAPIC_BASE | 0x9b)?; // + uncached

        // GDT: null, 64-bit code (0x8), data (0x10), 64-bit TSS (0x18, 16 bytes).
        self.write_u64(GDT, 0)?;
        self.write_u64(GDT + 0x8, 0x00af_9b00_0000_ffff)?;
        self.write_u64(GDT + 0x10, 0x00cf_9300_0000_ffff)?;
        self.write_u64(GDT + 0x18, 0x0000_8b00_0000_0067 | (TSS << 16))?;
        self.write_u64(GDT + 0x20, 0)?;

        // IDT: a reporting stub for every vector, then the two real handlers.
        for vector in 0..=255u8 {
            let stub = STUBS + u64::from(vector) * 16;
            self.write_memory(stub, &exception_stub(vector))?;
            self.write_memory(IDT + u64::from(vector) * 16, &idt_gate(stub))?;
        }
        self.write_memory(
            IDT + TIMER_VECTOR as u64 * 16,
            &idt_gate(CODE + TIMER_HANDLER),
        )?;
        self.write_memory(
            IDT + SPURIOUS_VECTOR as u64 * 16,
            &idt_gate(CODE + SPURIOUS_HANDLER),
        )?;

        self.write_memory(CODE, GUEST_CODE)?;
        self.write_memory(TICKS, &0u32.to_le_bytes())?;
        self.write_memory(UART_DATA, &[0u8; 8])?;
        self.uart = Uart::new();
        self.uart.enqueue(SERIAL_INPUT);
        for (addr, words) in [(XMM0_DATA, XMM0_VALUE), (XMM9_DATA, XMM9_VALUE)] {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            self.write_memory(addr, &bytes)?;
        }

        let mut sregs = self
            .vcpu
            .get_sregs()
            .map_err(KvmStateError::ioctl("KVM_GET_SREGS"))?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0x8,
            type_: 0xb, // execute/read, accessed
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            ..Default::default()
        };
        let data = kvm_segment {
            selector: 0x10,
            type_: 0x3, // read/write, accessed
            db: 1,
            l: 0,
            ..code
        };
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = kvm_segment {
            base: TSS,
            limit: 0x67,
            selector: 0x18,
            type_: 0xb, // busy 64-bit TSS
            present: 1,
            s: 0,
            ..Default::default()
        };
        sregs.gdt.base = GDT;
        sregs.gdt.limit = 0x27;
        sregs.idt.base = IDT;
        sregs.idt.limit = 256 * 16 - 1;
        sregs.cr3 = PML4;
        sregs.cr4 = 0x620; // PAE | OSFXSR | OSXMMEXCPT
        sregs.cr0 = 0x8001_0033; // PG | WP | NE | ET | MP | PE
        sregs.efer = 0x500; // LMA | LME
        self.vcpu
            .set_sregs(&sregs)
            .map_err(KvmStateError::ioctl("KVM_SET_SREGS"))?;

        let regs = kvm_bindings::kvm_regs {
            rip: CODE,
            rsp: STACK_TOP,
            rflags: 0x2,
            ..Default::default()
        };
        self.vcpu
            .set_regs(&regs)
            .map_err(KvmStateError::ioctl("KVM_SET_REGS"))?;
        Ok(())
    }

    fn write_u64(&mut self, offset: u64, value: u64) -> Result<()> {
        self.write_memory(offset, &value.to_le_bytes())
    }

    /// Runs the vCPU until the guest reports a value or finishes, emulating the UART's
    /// port I/O on the way.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Ioctl`] if `KVM_RUN` fails, [`KvmStateError::UnexpectedExit`] on a
    /// guest exception, an exit the guest never causes, or when the timeout (see
    /// [`DemoVm::set_timeout`]) expires.
    pub fn run_until_report(&mut self) -> Result<DemoExit> {
        let watchdog = Watchdog::start(self.timeout);
        loop {
            let outcome = match self.vcpu.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    let mut result = Ok(None);
                    for (i, byte) in (0u16..).zip(data.iter_mut()) {
                        match com1_offset(port.wrapping_add(i)) {
                            Some(offset) => *byte = self.uart.read(offset),
                            None => result = Err(format!("guest read port {port:#x}")),
                        }
                    }
                    result
                }
                Ok(VcpuExit::IoOut(port, data)) if com1_offset(port).is_some() => {
                    for (i, &byte) in (0u16..).zip(data.iter()) {
                        if let Some(offset) = com1_offset(port.wrapping_add(i)) {
                            self.uart.write(offset, byte);
                        }
                    }
                    Ok(None)
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    let mut word = [0u8; 4];
                    let n = data.len().min(4);
                    word[..n].copy_from_slice(&data[..n]);
                    let value = u32::from_le_bytes(word);
                    match port {
                        REPORT_PORT => Ok(Some(DemoExit::Report(value))),
                        DONE_PORT => Ok(Some(DemoExit::Done)),
                        FAULT_PORT => Err(format!("guest exception, vector {:#x}", value & 0xff)),
                        other => Err(format!("guest wrote {value:#x} to port {other:#x}")),
                    }
                }
                Ok(VcpuExit::InternalError) => Err(String::new()),
                Ok(exit) => Err(exit_name(&exit).to_string()),
                Err(e) if e.errno() == libc::EINTR => Ok(None),
                Err(source) => {
                    return Err(KvmStateError::Ioctl {
                        ioctl: "KVM_RUN",
                        source,
                    })
                }
            };
            match outcome {
                Ok(Some(exit)) => return Ok(exit),
                Ok(None) if watchdog.expired() => {
                    return Err(KvmStateError::UnexpectedExit(format!(
                        "no report within {:?}",
                        self.timeout
                    )))
                }
                Ok(None) => continue,
                Err(msg) if msg.is_empty() => return Err(self.internal_error()),
                Err(msg) => return Err(KvmStateError::UnexpectedExit(msg)),
            }
        }
    }

    fn internal_error(&mut self) -> KvmStateError {
        let run = self.vcpu.get_kvm_run();
        let suberror = if run.exit_reason == KVM_EXIT_INTERNAL_ERROR {
            // SAFETY: the exit reason says the kernel filled the `internal` member of the
            // union; it is plain integers, valid for any bit pattern.
            unsafe { run.__bindgen_anon_1.internal.suberror }
        } else {
            0
        };
        let rip = self.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
        KvmStateError::UnexpectedExit(format!("internal error, suberror {suberror}, rip {rip:#x}"))
    }

    /// Runs the vCPU until the guest finishes, returning every value it reported.
    ///
    /// # Errors
    ///
    /// As [`DemoVm::run_until_report`].
    pub fn run_to_end(&mut self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        loop {
            match self.run_until_report()? {
                DemoExit::Report(v) => out.push(v),
                DemoExit::Done => return Ok(out),
            }
        }
    }
}

/// Kicks the creating thread out of `KVM_RUN` (with a signal) once a deadline has passed.
struct Watchdog {
    deadline: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

extern "C" fn ignore_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

impl Watchdog {
    fn start(timeout: Duration) -> Self {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        let deadline = Instant::now() + timeout;
        let stop = Arc::new(AtomicBool::new(false));
        let registered = *REGISTERED.get_or_init(|| {
            // The handler does nothing; its only effect is that KVM_RUN returns EINTR.
            vmm_sys_util::signal::register_signal_handler(kick_signal(), ignore_signal).is_ok()
        });
        if !registered {
            // Without the handler the signal would kill the process: run without a watchdog.
            return Watchdog {
                deadline,
                stop,
                thread: None,
            };
        }
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("demo-watchdog".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    if Instant::now() >= deadline {
                        // SAFETY: `target` is the thread that owns this watchdog; it joins
                        // this thread (in `Drop`) before it can exit, so the id is live; the
                        // signal has a no-op handler installed.
                        unsafe { libc::pthread_kill(target, kick_signal()) };
                    }
                    // Woken early by `Drop`; otherwise re-check (and re-kick) every 10 ms.
                    std::thread::park_timeout(Duration::from_millis(10));
                }
            })
            .ok();
        Watchdog {
            deadline,
            stop,
            thread,
        }
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uart_registers() {
        let mut uart = Uart::new();
        // No input: data ready clear, transmitter empty.
        assert_eq!(uart.read(UART_LSR), 0x60);
        uart.enqueue(b"ab");
        assert_eq!(uart.state.line_status & LSR_DATA_READY, LSR_DATA_READY);
        assert_eq!(uart.read(UART_LSR), 0x61);
        assert_eq!(uart.read(UART_RBR_THR_DLL), b'a');
        assert_eq!(uart.read(UART_RBR_THR_DLL), b'b');
        assert_eq!(uart.read(UART_LSR), 0x60);
        assert_eq!(uart.state.line_status & LSR_DATA_READY, 0);
        assert_eq!(uart.read(UART_RBR_THR_DLL), 0);
        // Scratch, divisor latch behind DLAB, transmitted bytes dropped.
        uart.write(UART_SCR, 0x5a);
        assert_eq!(uart.read(UART_SCR), 0x5a);
        uart.write(UART_LCR, LCR_DLAB | 0x03);
        uart.write(UART_RBR_THR_DLL, 0x01);
        uart.write(UART_IER_DLM, 0x02);
        uart.write(UART_LCR, 0x03);
        uart.write(UART_RBR_THR_DLL, b'x');
        uart.write(UART_IER_DLM, 0xff);
        assert_eq!(
            (uart.state.baud_divisor_low, uart.state.baud_divisor_high),
            (0x01, 0x02)
        );
        assert_eq!(uart.read(UART_IER_DLM), 0x0f);
        assert!(uart.state.in_buffer.is_empty());
        assert_eq!(com1_offset(0x3f7), None);
        assert_eq!(com1_offset(0x3ff), Some(UART_SCR));
        assert_eq!(com1_offset(0x400), None);
    }

    #[test]
    fn test_expected_output_has_the_uart_reports() {
        let out = expected_output();
        assert_eq!(
            &out[out.len() - 4..],
            &[0xa5, 6, u32::from_le_bytes(*b"seri"), 0x6c61]
        );
    }
}
