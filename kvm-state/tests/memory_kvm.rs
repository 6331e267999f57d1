//! Guest memory files on `/dev/kvm`: a VM with 256 MiB of memory registered from this
//! crate's mappings, a small 32-bit guest that writes pages spread across all of it in four
//! phases and then reports a checksum of every page it wrote. Full memory files, diff
//! chains from KVM's dirty log, merged chains and chunk-store snapshots each restore into a
//! fresh VM that finishes with the uninterrupted run's output; a changed page changes the
//! output or is refused, and a diff on the wrong base is refused.
//!
//! Set `KVM_STATE_REQUIRE_KVM=1` to fail instead of skipping where `/dev/kvm` is missing.

#![cfg(target_arch = "x86_64")]

mod common;
mod memory_support;

use kvm_bindings::{
    kvm_regs, kvm_segment, kvm_sregs, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use kvm_state::{
    kvm_dirty_bitmap, merge_memory_chain, restore_memory_chain, restore_memory_file,
    save_memory_diff, save_memory_file, ChunkStore, DiffRegion, GuestMemoryMapping, MemoryError,
    MemoryFileDescriptor, RestoreMode, PAGE_SIZE,
};
use memory_support::flip_byte;

/// Guest memory: 256 MiB at guest physical address 0, one KVM slot.
const MEM_SIZE: u64 = 256 << 20;
/// Where the guest program is loaded and starts.
const CODE: u64 = 0x1000;
/// Port of the end-of-phase reports; the checksum goes to `SUM_PORT`.
const REPORT_PORT: u16 = 0x10;
const SUM_PORT: u16 = 0x11;
/// Pages written per phase: 250, 1 MiB + 4 KiB apart, from 1 MiB + phase * 12 KiB.
const PAGES_PER_PHASE: u64 = 250;
const FIRST_PAGE: u64 = 0x10_0000;
const STRIDE: u64 = 0x10_1000;
const PHASE_SHIFT: u64 = 0x3000;

/// The guest, in 32-bit protected mode without paging. `ebp` = address of the phase's
/// first page, `esi` = the phase's seed. Four phases each write the seed and the address
/// into the first 8 bytes of 250 pages and report the seed; then the guest sums (add, rotate)
/// those 8 bytes of all 1000 pages, reports the sum to port 0x11 and halts.
#[rustfmt::skip]
const GUEST: &[u8] = &[
    // start:
    0x89, 0xef,                         // 00: mov edi,ebp
    0xb9, 0xfa, 0x00, 0x00, 0x00,       // 02: mov ecx,250
    // write:
    0x89, 0x37,                         // 07: mov [edi],esi
    0x89, 0x7f, 0x04,                   // 09: mov [edi+4],edi
    0x81, 0xc7, 0x00, 0x10, 0x10, 0x00, // 0c: add edi,0x101000
    0x49,                               // 12: dec ecx
    0x75, 0xf2,                         // 13: jnz write
    0x89, 0xf0,                         // 15: mov eax,esi
    0xe7, 0x10,                         // 17: out 0x10,eax
    0x81, 0xc6, 0x01, 0x01, 0x01, 0x01, // 19: add esi,0x01010101
    0x81, 0xc5, 0x00, 0x30, 0x00, 0x00, // 1f: add ebp,0x3000
    0x81, 0xfd, 0x00, 0xc0, 0x10, 0x00, // 25: cmp ebp,0x10c000
    0x72, 0xd3,                         // 2b: jb start
    0x31, 0xc0,                         // 2d: xor eax,eax
    0xbd, 0x00, 0x00, 0x10, 0x00,       // 2f: mov ebp,0x100000
    // outer:
    0x89, 0xef,                         // 34: mov edi,ebp
    0xb9, 0xfa, 0x00, 0x00, 0x00,       // 36: mov ecx,250
    // sum:
    0x03, 0x07,                         // 3b: add eax,[edi]
    0x03, 0x47, 0x04,                   // 3d: add eax,[edi+4]
    0xd1, 0xc0,                         // 40: rol eax,1
    0x81, 0xc7, 0x00, 0x10, 0x10, 0x00, // 42: add edi,0x101000
    0x49,                               // 48: dec ecx
    0x75, 0xf0,                         // 49: jnz sum
    0x81, 0xc5, 0x00, 0x30, 0x00, 0x00, // 4b: add ebp,0x3000
    0x81, 0xfd, 0x00, 0xc0, 0x10, 0x00, // 51: cmp ebp,0x10c000
    0x72, 0xdb,                         // 57: jb outer
    0xe7, 0x11,                         // 59: out 0x11,eax
    0xf4,                               // 5b: hlt
];

/// What the guest reports, in order: `(port, value)`.
type Output = Vec<(u16, u32)>;

/// The vCPU registers this guest depends on.
#[derive(Clone)]
struct Cpu {
    regs: kvm_regs,
    sregs: kvm_sregs,
}

/// A VM whose memory is this crate's mappings. Field order: the fds close before the
/// memory is unmapped.
struct TestVm {
    vcpu: VcpuFd,
    vm: VmFd,
    memory: Vec<GuestMemoryMapping>,
}

impl TestVm {
    fn new(kvm: &Kvm, memory: Vec<GuestMemoryMapping>) -> TestVm {
        let vm = kvm.create_vm().unwrap();
        for (slot, mapping) in memory.iter().enumerate() {
            let region = mapping.kvm_region(slot as u32, KVM_MEM_LOG_DIRTY_PAGES);
            // SAFETY: the region is exactly the live mapping `mapping` (readable, writable,
            // `size` bytes), which `TestVm` owns and drops after `vm` (field order), so the
            // kernel never accesses it after it is unmapped.
            unsafe { vm.set_user_memory_region(region) }.unwrap();
        }
        let vcpu = vm.create_vcpu(0).unwrap();
        vcpu.set_cpuid2(&kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap())
            .unwrap();
        TestVm { vcpu, vm, memory }
    }

    /// Loads the guest and points the vCPU at it, in flat 32-bit protected mode.
    fn boot(&mut self) {
        let code = CODE as usize;
        self.memory[0].as_mut_slice()[code..code + GUEST.len()].copy_from_slice(GUEST);
        let mut sregs = self.vcpu.get_sregs().unwrap();
        let flat = |selector: u16, type_: u8| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_,
            present: 1,
            dpl: 0,
            db: 1,
            s: 1,
            l: 0,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.cs = flat(0x8, 0xb);
        for seg in [
            &mut sregs.ds,
            &mut sregs.es,
            &mut sregs.fs,
            &mut sregs.gs,
            &mut sregs.ss,
        ] {
            *seg = flat(0x10, 0x3);
        }
        sregs.cr0 = 0x11; // PE | ET
        self.vcpu.set_sregs(&sregs).unwrap();
        let regs = kvm_regs {
            rip: CODE,
            rflags: 0x2,
            rbp: FIRST_PAGE,
            rsi: 0x1234_5678,
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).unwrap();
    }

    /// Runs until the next `out`, then completes it (a run with `immediate_exit`, which
    /// returns `EINTR`) so the vCPU's registers are those after the instruction.
    fn run_to_out(&mut self) -> Option<(u16, u32)> {
        let out = match self.vcpu.run().unwrap() {
            VcpuExit::IoOut(port, data) => {
                let mut word = [0u8; 4];
                word[..data.len()].copy_from_slice(data);
                Some((port, u32::from_le_bytes(word)))
            }
            VcpuExit::Hlt => None,
            other => panic!("unexpected exit {other:?}"),
        };
        self.vcpu.set_kvm_immediate_exit(1);
        let err = self.vcpu.run().unwrap_err();
        assert_eq!(err.errno(), libc::EINTR);
        self.vcpu.set_kvm_immediate_exit(0);
        out
    }

    fn run_to_end(&mut self) -> Output {
        let mut output = Vec::new();
        while let Some(out) = self.run_to_out() {
            output.push(out);
        }
        output
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            regs: self.vcpu.get_regs().unwrap(),
            sregs: self.vcpu.get_sregs().unwrap(),
        }
    }

    fn set_cpu(&self, cpu: &Cpu) {
        self.vcpu.set_sregs(&cpu.sregs).unwrap();
        self.vcpu.set_regs(&cpu.regs).unwrap();
    }

    /// KVM's dirty bitmap of each slot, cleared.
    fn dirty(&self) -> Vec<Vec<u64>> {
        self.memory
            .iter()
            .enumerate()
            .map(|(slot, m)| kvm_dirty_bitmap(&self.vm, slot as u32, m.size()).unwrap())
            .collect()
    }

    fn save_diff(
        &self,
        path: &std::path::Path,
        base: kvm_state::MemoryLayerId,
    ) -> kvm_state::MemoryDiffInfo {
        let bitmaps = self.dirty();
        let regions: Vec<DiffRegion<'_>> = self
            .memory
            .iter()
            .zip(&bitmaps)
            .map(|(m, dirty)| DiffRegion {
                guest_phys_addr: m.guest_phys_addr(),
                bytes: m.as_slice(),
                dirty,
            })
            .collect();
        save_memory_diff(path, base, &regions).unwrap()
    }

    fn regions(&self) -> Vec<kvm_state::GuestRegionBytes<'_>> {
        self.memory.iter().map(GuestMemoryMapping::region).collect()
    }
}

/// What the guest must report, computed on the host from the program's definition.
fn computed_output() -> Output {
    let mut output = Vec::new();
    let mut sum = 0u32;
    let seed = |phase: u64| 0x1234_5678u32.wrapping_add(0x0101_0101 * phase as u32);
    for phase in 0..4 {
        output.push((REPORT_PORT, seed(phase)));
    }
    for phase in 0..4 {
        for page in 0..PAGES_PER_PHASE {
            let addr = FIRST_PAGE + phase * PHASE_SHIFT + page * STRIDE;
            sum = sum
                .wrapping_add(seed(phase))
                .wrapping_add(addr as u32)
                .rotate_left(1);
        }
    }
    output.push((SUM_PORT, sum));
    output
}

fn fresh_memory() -> Vec<GuestMemoryMapping> {
    vec![GuestMemoryMapping::anonymous(0, MEM_SIZE).unwrap()]
}

/// Restores `memory` and `cpu` into a fresh VM and runs it to the end.
fn finish(kvm: &Kvm, memory: Vec<GuestMemoryMapping>, cpu: &Cpu) -> Output {
    let mut vm = TestVm::new(kvm, memory);
    vm.set_cpu(cpu);
    vm.run_to_end()
}

#[test]
fn test_memory_kvm_snapshots_restore_the_uninterrupted_output() {
    if !common::kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let dir = common::TempDir::new("memory-kvm");
    let path = |name: &str| dir.path().join(name);

    let mut reference = TestVm::new(&kvm, fresh_memory());
    reference.boot();
    let expected = reference.run_to_end();
    assert_eq!(expected, computed_output());
    drop(reference);

    // The source: phase 1, then a full memory file and a chunk-store snapshot.
    let mut source = TestVm::new(&kvm, fresh_memory());
    source.boot();
    assert_eq!(source.run_to_out(), Some(expected[0]));
    let base = save_memory_file(path("base.mem"), &source.regions()).unwrap();
    let store = ChunkStore::open(path("store")).unwrap();
    let first = store.save("phase1", &source.regions()).unwrap();
    let cpu1 = source.cpu();
    source.dirty(); // the next diff starts from here

    // Phase 2: a diff from the dirty log (exactly the 250 pages the guest wrote), and a
    // second chunk-store snapshot that adds only the changed chunks.
    assert_eq!(source.run_to_out(), Some(expected[1]));
    let diff1 = source.save_diff(&path("diff1.mem"), base.layer);
    assert_eq!(diff1.dirty_pages, PAGES_PER_PHASE);
    let second = store.save("phase2", &source.regions()).unwrap();
    assert_eq!(
        second.new_chunks, PAGES_PER_PHASE,
        "{second:?} after {first:?}"
    );
    let cpu2 = source.cpu();

    // Phase 3: the second diff of the chain.
    assert_eq!(source.run_to_out(), Some(expected[2]));
    let diff2 = source.save_diff(&path("diff2.mem"), diff1.layer);
    assert_eq!(diff2.dirty_pages, PAGES_PER_PHASE);
    let cpu3 = source.cpu();
    let at_phase3: Vec<u8> = source.memory[0].as_slice().to_vec();
    drop(source);

    // Full memory file, lazily mapped: phases 2 to 4 and the same sum.
    let memory = restore_memory_file(path("base.mem"), &base, RestoreMode::Lazy).unwrap();
    assert!(memory[0].is_file_backed());
    assert_eq!(finish(&kvm, memory, &cpu1), expected[1..]);

    // Base + diff chain, lazily and eagerly: the bytes at phase 3, then the same output.
    let chain = [path("diff1.mem"), path("diff2.mem")];
    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        let (memory, layer) = restore_memory_chain(path("base.mem"), &base, &chain, mode).unwrap();
        assert_eq!(layer, diff2.layer);
        assert!(memory[0].as_slice() == at_phase3.as_slice(), "{mode:?}");
        assert_eq!(finish(&kvm, memory, &cpu3), expected[3..], "{mode:?}");
    }

    // The chain merged into one file.
    let merged = merge_memory_chain(path("base.mem"), &base, &chain, path("merged.mem")).unwrap();
    let memory = restore_memory_file(path("merged.mem"), &merged, RestoreMode::Lazy).unwrap();
    assert_eq!(finish(&kvm, memory, &cpu3), expected[3..]);

    // The chunk store.
    assert_eq!(
        finish(&kvm, store.load("phase2").unwrap(), &cpu2),
        expected[2..]
    );
    assert_eq!(
        finish(&kvm, store.load("phase1").unwrap(), &cpu1),
        expected[1..]
    );

    // Control: a diff on the wrong base (phase 2's diff straight on the base file).
    let err = restore_memory_chain(path("base.mem"), &base, &chain[1..], RestoreMode::Lazy)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, MemoryError::WrongBase { .. }), "{err}");

    // Control: a changed page of the memory file (a page phase 1 wrote) is refused by an
    // eager restore, and changes the output of a lazy one.
    flip_byte(&path("base.mem"), FIRST_PAGE + 10 * STRIDE);
    assert!(matches!(
        restore_memory_file(path("base.mem"), &base, RestoreMode::Eager),
        Err(MemoryError::Checksum { .. })
    ));
    let memory = restore_memory_file(path("base.mem"), &base, RestoreMode::Lazy).unwrap();
    let output = finish(&kvm, memory, &cpu1);
    assert_eq!(output[..3], expected[1..4]);
    assert_ne!(
        output[3], expected[4],
        "the changed page must change the sum"
    );
}

/// The same guest, every snapshot a diff found by page hashes instead of the dirty log.
#[test]
fn test_memory_kvm_page_hash_diffs_without_dirty_log() {
    if !common::kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let dir = common::TempDir::new("memory-kvm");
    let mut source = TestVm::new(&kvm, fresh_memory());
    source.boot();
    let first = source.run_to_out().unwrap();
    let base_path = dir.path().join("base.mem");
    let base: MemoryFileDescriptor = save_memory_file(&base_path, &source.regions()).unwrap();
    let mut hashes = kvm_state::PageHashes::new(&source.regions()).unwrap();
    let second = source.run_to_out().unwrap();
    let bitmaps = hashes.dirty_bitmaps(&source.regions()).unwrap();
    let found: u32 = bitmaps.iter().flatten().map(|w| w.count_ones()).sum();
    assert_eq!(u64::from(found), PAGES_PER_PHASE);
    let regions: Vec<DiffRegion<'_>> = source
        .memory
        .iter()
        .zip(&bitmaps)
        .map(|(m, dirty)| DiffRegion {
            guest_phys_addr: m.guest_phys_addr(),
            bytes: m.as_slice(),
            dirty,
        })
        .collect();
    let diff_path = dir.path().join("diff.mem");
    save_memory_diff(&diff_path, base.layer, &regions).unwrap();
    let cpu = source.cpu();
    let rest = source.run_to_end();
    drop(source);

    let (memory, _) =
        restore_memory_chain(&base_path, &base, &[&diff_path], RestoreMode::Lazy).unwrap();
    assert_eq!(finish(&kvm, memory, &cpu), rest);
    assert_eq!([&[first, second][..], &rest].concat(), computed_output());
}

/// The dirty log of a slot that does not exist is a named error.
#[test]
fn test_memory_kvm_dirty_log_error() {
    if !common::kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let vm = TestVm::new(
        &kvm,
        vec![GuestMemoryMapping::anonymous(0, 16 * PAGE_SIZE).unwrap()],
    );
    let err = kvm_dirty_bitmap(&vm.vm, 7, 16 * PAGE_SIZE).unwrap_err();
    assert!(
        matches!(err, MemoryError::DirtyLog { slot: 7, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "KVM_GET_DIRTY_LOG failed for memory slot 7"
    );
}

/// A memory file truncated under a lazy mapping while the guest runs: the VMM is not
/// signalled; the vCPU's access to a page past the new end comes back from `KVM_RUN` either as
/// `EFAULT` (hardware-assisted KVM) or, where KVM emulates the instruction (this PVM host), as
/// an MMIO exit at an address inside a RAM slot, which a VMM must treat as fatal
/// (`GuestMemoryMapping::contains`). Run in a child process (this binary, re-executed on the ignored test below), so that a
/// signal would be seen as the child's death rather than kill the test harness.
#[test]
fn test_memory_kvm_truncated_file_under_running_guest() {
    if !common::kvm_available() {
        return;
    }
    let dir = common::TempDir::new("memory-kvm");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_run_on_truncated_file",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEMORY_KVM_TRUNCATE_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("outcome: EFAULT") || stdout.contains("outcome: MMIO inside guest RAM"),
        "child: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by test_memory_kvm_truncated_file_under_running_guest in a child process"]
fn child_run_on_truncated_file() {
    let Some(dir) = std::env::var_os("MEMORY_KVM_TRUNCATE_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("base.mem");
    let kvm = Kvm::new().unwrap();
    let mut source = TestVm::new(&kvm, fresh_memory());
    source.boot();
    source.run_to_out().unwrap();
    let base = save_memory_file(&path, &source.regions()).unwrap();
    let cpu = source.cpu();
    drop(source);

    let memory = restore_memory_file(&path, &base, RestoreMode::Lazy).unwrap();
    // Keep the code page, cut everything the guest writes next.
    memory_support::set_len(&path, FIRST_PAGE);
    let mut vm = TestVm::new(&kvm, memory);
    vm.set_cpu(&cpu);
    let memory = &vm.memory;
    match vm.vcpu.run() {
        Err(e) if e.errno() == libc::EFAULT => println!("outcome: EFAULT"),
        Ok(VcpuExit::MmioWrite(addr, _) | VcpuExit::MmioRead(addr, _))
            if memory.iter().any(|m| m.contains(addr)) =>
        {
            println!("outcome: MMIO inside guest RAM at {addr:#x}");
        }
        Err(e) => println!("outcome: KVM_RUN failed with {e}"),
        Ok(exit) => println!("outcome: KVM_RUN returned {exit:?}"),
    }
}
