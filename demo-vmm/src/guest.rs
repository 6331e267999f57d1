//! The guest: memory layout, what the host writes before the first run, and the output of an
//! uninterrupted run. The program itself is `guest/guest.S` (bytes in `guest_code.rs`).
//!
//! Three vCPUs run three programs in 64-bit long mode, each with its own registers, stack and
//! LAPIC timer, each reporting 32-bit values to [`REPORT_PORT`]:
//!
//! - vCPU 0, the BSP: loads `xmm0`/`xmm9` and wipes their source, writes the UART scratch
//!   register and `IA32_KERNEL_GS_BASE`, waits for 5 and then 10 ticks of its periodic LAPIC
//!   timer, reports the XMM registers and the MSR; waits until AP1 spins and AP2 waits for its
//!   IPI; sets up the virtio device (see [`crate::virtio`]) and its queue, submits
//!   [`VIRTIO_REQUESTS`] requests at once and reports [`VIRTIO_SUBMITTED`], waits until the
//!   device has completed them all, reports the responses and lets AP1 go on; waits until AP1
//!   has finished and AP2 waits
//!   for its IPI, posts a mailbox value and sends AP2 a fixed IPI; waits until AP2 has finished,
//!   reports the UART scratch register and the pending UART input, and writes [`DONE_MARKER`]
//!   to [`DONE_PORT`].
//! - vCPU 1, AP1 (running): loads `xmm1`, starts its periodic LAPIC timer, computes three chunks
//!   of a 64-bit LCG in its registers (a report after each; after the second it spins until the
//!   BSP's virtio requests are complete), waits for three more ticks, reports the rest of its
//!   state and parks.
//! - vCPU 2, AP2 (halted): waits for one tick of its one-shot LAPIC timer, then halts until the
//!   BSP's IPI (vector 0x40), reports the mailbox and a register it kept across the halt, and
//!   parks.
//!
//! With more than 2 MiB of memory the BSP also touches one page every [`TOUCH_STRIDE`] above
//! 2 MiB after its tenth tick (before the snapshot point) and again after the virtio
//! responses (after it), reporting a count and a checksum (see [`expected_output_for`]);
//! with 2 MiB it skips both and reports exactly what it always did.
//!
//! So for most of the run AP2 is halted waiting for an IPI while AP1 is running; in
//! particular when the BSP reports [`VIRTIO_SUBMITTED`] (see [`mid_run`]), AP1 is spinning, AP2
//! is halted and the virtio requests are in flight. Each vCPU's sequence of reports is the same
//! in every run, however the vCPUs interleave.

use crate::guest_code::{
    GUEST_CODE, IPI_HANDLER, SPURIOUS_HANDLER, TIMER0_HANDLER, TIMER1_HANDLER, TIMER2_HANDLER,
};
use crate::virtio::{VIRTIO_DEVICE_ID, VIRTIO_MMIO_BASE};

/// Number of vCPUs the guest needs: the BSP, AP1 and AP2.
pub const VCPU_COUNT: usize = 3;
/// Size of guest memory by default: 2 MiB at guest physical address 0. A VM can have more
/// (see [`crate::DemoVm::with_memory_size`]), up to [`MAX_MEM_SIZE`] in steps of 2 MiB.
pub const MEM_SIZE: usize = 2 << 20;
/// The most guest memory the demo guest maps: 1 GiB (one page directory of 2 MiB pages).
pub const MAX_MEM_SIZE: u64 = 1 << 30;
/// Guest memory above 2 MiB that the BSP touches: one page every this many bytes (see
/// [`expected_output_for`]).
pub const TOUCH_STRIDE: u64 = 64 << 10;
/// Where the touched pages start: the first byte above the low 2 MiB.
const TOUCH_BASE: u64 = 2 << 20;
/// Where the host tells the guest how many pages to touch (a `u32`).
const MEM_TOUCHES: u64 = 0x1_00c0;
/// Port the guest reports 32-bit values to.
pub const REPORT_PORT: u16 = 0x10;
/// Port the exception stubs report `0xdead0000 | vector` to.
pub const FAULT_PORT: u16 = 0x11;
/// Port the BSP writes [`DONE_MARKER`] to when the guest has finished.
pub const DONE_PORT: u16 = 0x12;
/// First value the BSP reports ("RATS" read as little-endian bytes).
pub const START_MARKER: u32 = 0x5354_4152;
/// Value written to [`DONE_PORT`] ("DONE" as little-endian bytes).
pub const DONE_MARKER: u32 = 0x454e_4f44;
/// Value the BSP writes to `IA32_KERNEL_GS_BASE` (canonical).
pub const KERNEL_GS_BASE_VALUE: u64 = 0x0000_7654_89ab_cdef;
/// The 16 bytes the BSP loads into `xmm0`, as four little-endian words.
pub const XMM0_VALUE: [u32; 4] = [0x89ab_cdef, 0x0123_4567, 0x7654_3210, 0xfedc_ba98];
/// The 16 bytes the BSP loads into `xmm9`, as four little-endian words.
pub const XMM9_VALUE: [u32; 4] = [0x1111_2222, 0x3333_4444, 0x5555_6666, 0x7777_8888];
/// The 16 bytes AP1 loads into `xmm1`, as four little-endian words.
pub const XMM1_VALUE: [u32; 4] = [0xa1a1_0001, 0xa1a1_0002, 0xa1a1_0003, 0xa1a1_0004];
/// First I/O port of the emulated 16550 UART (COM1); it has eight registers.
pub const COM1_BASE: u16 = 0x3f8;
/// The UART's interrupt line (GSI) on the in-kernel irqchip.
pub const COM1_GSI: u32 = 4;
/// Value the BSP writes to the UART scratch register (and reports back later).
pub const SCRATCH_VALUE: u8 = 0xa5;
/// Bytes [`crate::DemoVm::load_guest`] queues as UART input (at most 8, the most the guest
/// reads).
pub const SERIAL_INPUT: &[u8] = b"serial";
/// Value the BSP posts in the mailbox for AP2 ("LIAM" as little-endian bytes).
pub const MAILBOX_VALUE: u32 = 0x4d41_494c;
/// Value AP2 keeps in `r13` across its halt.
pub const AP2_REGISTER_VALUE: u64 = 0x0bad_cafe_600d_beef;
/// AP1's LCG: seed, multiplier, increment, chunks, iterations per chunk.
const LCG_SEED: u64 = 0x0123_4567_89ab_cdef;
const LCG_MUL: u64 = 6_364_136_223_846_793_005;
const LCG_INC: u64 = 1_442_695_040_888_963_407;
const LCG_CHUNKS: usize = 3;
const LCG_ITERATIONS: usize = 1500;

// Guest physical memory layout (identity mapped).
pub(crate) const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD_LOW: u64 = 0x3000;
const PD_APIC: u64 = 0x4000;
pub(crate) const GDT: u64 = 0x5000;
pub(crate) const TSS: u64 = 0x5800;
pub(crate) const IDT: u64 = 0x6000;
const STUBS: u64 = 0x7000;
/// Where the guest code is loaded.
pub(crate) const CODE: u64 = 0x8000;
const TICKS: u64 = 0x1_0000;
const XMM0_DATA: u64 = 0x1_0010;
const XMM9_DATA: u64 = 0x1_0020;
const XMM1_DATA: u64 = 0x1_0030;
const UART_DATA: u64 = 0x1_0060;
const FLAGS: u64 = 0x1_0070;
/// The virtio driver's queue (descriptors, rings) and its request and response buffers.
const VIRTQUEUE: u64 = 0x1_1000;
const VIRTQUEUE_LEN: usize = 0x400;
/// Requests the virtio driver submits at once.
pub const VIRTIO_REQUESTS: usize = 4;
/// What the BSP reports once its virtio driver has submitted the requests.
pub const VIRTIO_SUBMITTED: u32 = 0x60;

/// The snapshot point "mid-run", for [`crate::StopWhen::Condition`]: the BSP has submitted its
/// virtio requests (which are then in flight), AP1 spins after its second result (running),
/// AP2 is halted waiting for its IPI.
pub fn mid_run(reports: &[Vec<u32>]) -> bool {
    reports
        .first()
        .is_some_and(|bsp| bsp.contains(&VIRTIO_SUBMITTED))
}
/// Bytes at `FLAGS`: AP1 done, AP2 ready, AP2 done, IPI seen, mailbox, AP1 waiting, virtio
/// done, AP1's `xmm1` copy.
const FLAGS_LEN: usize = 0x30;
/// Top of vCPU 0's stack; each vCPU has 4 KiB below its own top.
const STACK_TOP: u64 = 0x2_1000;
const LAPIC_BASE: u64 = 0xfee0_0000;

/// The value AP2 reports for its timer tick, AP1's and AP2's first and last reports.
const AP2_TICKED: u32 = 0x21;
const AP1_MARKER: u32 = 0x0031_5041;
const AP2_MARKER: u32 = 0x0032_5041;
const AP1_END: u32 = 0x444e_4531;
const AP2_END: u32 = 0x444e_4532;

/// Where vCPU `index` starts: guest physical address of its entry point and its stack top.
pub(crate) fn entry(index: usize) -> (u64, u64) {
    use crate::guest_code::{AP1_ENTRY, AP2_ENTRY, BSP_ENTRY};
    let offset = [BSP_ENTRY, AP1_ENTRY, AP2_ENTRY][index % VCPU_COUNT];
    (CODE + offset, STACK_TOP + index as u64 * 0x1000)
}

/// How many pages the BSP touches in `mem_size` bytes of guest memory: one every
/// [`TOUCH_STRIDE`] above the low 2 MiB.
pub fn memory_touches(mem_size: u64) -> u32 {
    u32::try_from(mem_size.saturating_sub(TOUCH_BASE) / TOUCH_STRIDE).unwrap_or(u32::MAX)
}

/// The guest physical address of touch `i` (as `touch_addr` in `guest.S` computes it).
pub fn touch_addr(i: u32) -> u64 {
    TOUCH_BASE + u64::from(i) * TOUCH_STRIDE + u64::from(i % 64) * 64
}

/// What the host writes into guest memory of `mem_size` bytes before the first run, as
/// (address, bytes).
pub(crate) fn memory_image(mem_size: u64) -> Vec<(u64, Vec<u8>)> {
    let mut image: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut u64_at = |addr: u64, value: u64| image.push((addr, value.to_le_bytes().to_vec()));
    // Page tables: identity map the low 2 MiB and the 2 MiB page holding the LAPIC.
    u64_at(PML4, PDPT | 0x3); // present, writable
    u64_at(PDPT, PD_LOW | 0x3); // 0..1 GiB
    u64_at(PDPT + 3 * 8, PD_APIC | 0x3); // 3..4 GiB
                                         // One 2 MiB page (present, writable, large) per 2 MiB of guest memory, at least one.
    for page in 0..(mem_size >> 21).clamp(1, 512) {
        u64_at(PD_LOW + page * 8, (page << 21) | 0x83);
    }
    let apic_index = (LAPIC_BASE - 0xc000_0000) >> 21;
    u64_at(PD_APIC + apic_index * 8, LAPIC_BASE | 0x9b); // + uncached
    let virtio_index = (VIRTIO_MMIO_BASE - 0xc000_0000) >> 21;
    u64_at(PD_APIC + virtio_index * 8, VIRTIO_MMIO_BASE | 0x9b); // + uncached
                                                                 // GDT: null, 64-bit code (0x8), data (0x10), 64-bit TSS (0x18, 16 bytes).
    u64_at(GDT, 0);
    u64_at(GDT + 0x8, 0x00af_9b00_0000_ffff);
    u64_at(GDT + 0x10, 0x00cf_9300_0000_ffff);
    u64_at(GDT + 0x18, 0x0000_8b00_0000_0067 | (TSS << 16));
    u64_at(GDT + 0x20, 0);
    // IDT: a reporting stub for every vector, then the real handlers.
    let mut idt = vec![0u8; 256 * 16];
    let mut stubs = vec![0u8; 256 * 16];
    for vector in 0..=255u8 {
        let stub = STUBS + u64::from(vector) * 16;
        let i = usize::from(vector) * 16;
        stubs[i..i + 10].copy_from_slice(&exception_stub(vector));
        idt[i..i + 16].copy_from_slice(&idt_gate(stub));
    }
    for (vector, handler) in [
        (0x20, TIMER0_HANDLER),
        (0x21, TIMER1_HANDLER),
        (0x22, TIMER2_HANDLER),
        (0x40, IPI_HANDLER),
        (0xff, SPURIOUS_HANDLER),
    ] {
        idt[vector * 16..vector * 16 + 16].copy_from_slice(&idt_gate(CODE + handler));
    }
    image.push((IDT, idt));
    image.push((STUBS, stubs));
    image.push((CODE, GUEST_CODE.to_vec()));
    // Tick counters, UART buffer, flags and mailbox start at zero.
    image.push((TICKS, vec![0; 16]));
    image.push((UART_DATA, vec![0; 8]));
    image.push((FLAGS, vec![0; FLAGS_LEN]));
    image.push((VIRTQUEUE, vec![0; VIRTQUEUE_LEN]));
    image.push((MEM_TOUCHES, memory_touches(mem_size).to_le_bytes().to_vec()));
    for (addr, words) in [
        (XMM0_DATA, XMM0_VALUE),
        (XMM9_DATA, XMM9_VALUE),
        (XMM1_DATA, XMM1_VALUE),
    ] {
        image.push((addr, words.iter().flat_map(|w| w.to_le_bytes()).collect()));
    }
    image
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

/// The values each vCPU reports to [`REPORT_PORT`] in an uninterrupted run, in order; index
/// 0 is the BSP. With the default [`MEM_SIZE`].
pub fn expected_output() -> Vec<Vec<u32>> {
    expected_output_for(MEM_SIZE as u64)
}

/// [`expected_output`] for a guest with `mem_size` bytes of memory: above 2 MiB the BSP
/// also touches one page every [`TOUCH_STRIDE`] before the snapshot point (writing
/// `address * 0x9e3779b97f4a7c15` into each, then reporting how many) and again after it
/// (folding each page's value into a checksum `rotate_left(sum, 5) ^ value` and writing the
/// running checksum back, then reporting the checksum's low and high words). A page whose
/// bytes a restore got wrong changes the checksum.
pub fn expected_output_for(mem_size: u64) -> Vec<Vec<u32>> {
    let touches = memory_touches(mem_size);
    let mut bsp = vec![START_MARKER, 1, 2, 3];
    bsp.extend_from_slice(&XMM0_VALUE);
    bsp.extend_from_slice(&XMM9_VALUE);
    bsp.push(KERNEL_GS_BASE_VALUE as u32);
    bsp.push((KERNEL_GS_BASE_VALUE >> 32) as u32);
    bsp.push(5);
    if touches > 0 {
        bsp.push(touches);
    }
    // The virtio driver: device id, status with FEATURES_OK, submitted, the responses.
    bsp.extend_from_slice(&[VIRTIO_DEVICE_ID, 0xb, VIRTIO_SUBMITTED]);
    bsp.extend(expected_virtio_output().iter().map(|p| p.swap_bytes()));
    if touches > 0 {
        let mut sum = 0u64;
        for i in 0..touches {
            let value = touch_addr(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            sum = sum.rotate_left(5) ^ value;
        }
        bsp.push(sum as u32);
        bsp.push((sum >> 32) as u32);
    }
    bsp.extend_from_slice(&[6, 7]);
    bsp.push(u32::from(SCRATCH_VALUE));
    let n = SERIAL_INPUT.len().min(8);
    bsp.push(n as u32);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&SERIAL_INPUT[..n]);
    bsp.push(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    bsp.push(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));

    let mut ap1 = vec![AP1_MARKER];
    let mut x = LCG_SEED;
    for _ in 0..LCG_CHUNKS {
        for _ in 0..LCG_ITERATIONS {
            x = x.wrapping_mul(LCG_MUL).wrapping_add(LCG_INC);
        }
        ap1.push(x as u32);
    }
    ap1.push((x >> 32) as u32);
    ap1.extend_from_slice(&XMM1_VALUE);
    ap1.push(AP1_END);

    let ap2 = vec![
        AP2_MARKER,
        AP2_TICKED,
        MAILBOX_VALUE,
        AP2_REGISTER_VALUE as u32,
        (AP2_REGISTER_VALUE >> 32) as u32,
        AP2_END,
    ];
    vec![bsp, ap1, ap2]
}

/// The payloads the virtio device receives in an uninterrupted run, in order.
pub fn expected_virtio_output() -> Vec<u32> {
    (0..VIRTIO_REQUESTS as u32)
        .map(|i| 0x600d_0000 + i * 0x111)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_expected_output_has_the_uart_reports() {
        let out = expected_output();
        assert_eq!(
            &out[0][out[0].len() - 4..],
            &[0xa5, 6, u32::from_le_bytes(*b"seri"), 0x6c61]
        );
        assert_eq!(out.len(), VCPU_COUNT);
    }

    #[test]
    fn test_memory_image_fits_and_does_not_overlap() {
        let mut ranges: Vec<(u64, u64)> = memory_image(MEM_SIZE as u64)
            .iter()
            .map(|(a, b)| (*a, *a + b.len() as u64))
            .collect();
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:x?}");
        }
        assert!(ranges.last().unwrap().1 <= STACK_TOP - 0x1000);
        assert!(CODE + GUEST_CODE.len() as u64 <= TICKS);
    }
}
