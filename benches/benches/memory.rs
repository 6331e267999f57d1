//! Issue 14's benchmarks: guest memory outside the state, each against its baseline in the
//! same run.
//!
//! Group `memory` (criterion ids `memory/name`), for a guest of `N` MiB (256 by default,
//! `MEMORY_BENCH_MIB` to change; 8 under `cargo test --benches`, which runs each once):
//! - `plain_write` / `full_save`: a plain sequential write + fsync of N MiB to a new file,
//!   against `save_memory_file` of N MiB of guest memory (CRC-64, temporary file, fsync,
//!   rename) in the same directory (`MEMORY_BENCH_DIR`, default the system temp dir);
//! - `restore_vm_16mib` / `restore_vm`: a snapshot (state file and memory file beside it, of
//!   the demo guest stopped mid-run) to a VM ready to run, with
//!   `demo_vmm::DemoVm::restore_from_files` in lazy mode: the state loaded and checked, the
//!   memory file mapped `MAP_PRIVATE`, a KVM VM with 3 vCPUs created, its memory slot set and
//!   every vCPU, irqchip and device restored (needs `/dev/kvm`; skipped with a notice
//!   without it);
//! - `restore_lazy_16mib` / `restore_lazy` / `restore_eager`: a memory file back to guest
//!   memory ready for `set_user_memory_region`, lazily for 16 MiB and N MiB, eagerly for N;
//! - `touch_after_lazy` / `touch_after_eager`: restore, then read one byte of every page,
//!   and `write_after_lazy` / `write_after_eager`: restore, then write one byte of every page
//!   (what a guest touching all its memory costs after each kind of restore: reads of a lazy
//!   mapping are served from the page cache, writes copy each page);
//! - `diff_1pct`: `save_memory_diff` after dirtying 1 % of the pages (bytes written are
//!   printed once, next to a full save's);
//! - `chunk_second_snapshot`: `ChunkStore::save` of an unchanged guest already in the store
//!   (new bytes printed once).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use kvm_state::{
    restore_memory_file, save_memory_diff, save_memory_file, ChunkStore, DiffRegion,
    GuestMemoryMapping, RestoreMode, PAGE_SIZE,
};

mod support;

use support::{guest, guest_mib, BenchDir, Rng};

const MIB: u64 = 1 << 20;

/// The baseline: write `bytes` to a new file in 1 MiB writes, fsync it.
fn plain_write(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).expect("create");
    for chunk in bytes.chunks(MIB as usize) {
        file.write_all(chunk).expect("write");
    }
    file.sync_all().expect("fsync");
}

/// One byte of every page, summed: forces every page in.
fn touch(memory: &[GuestMemoryMapping]) -> u64 {
    memory
        .iter()
        .flat_map(|m| m.as_slice().iter().step_by(PAGE_SIZE as usize))
        .map(|&b| u64::from(b))
        .sum()
}

/// One byte of every page incremented: after a lazy restore, a copy-on-write fault per page.
fn write_every_page(memory: &mut [GuestMemoryMapping]) {
    for mapping in memory {
        for byte in mapping
            .as_mut_slice()
            .iter_mut()
            .step_by(PAGE_SIZE as usize)
        {
            *byte = byte.wrapping_add(1);
        }
    }
}

fn bench_memory(c: &mut Criterion) {
    let size = guest_mib("MEMORY_BENCH_MIB", 256) * MIB;
    let dir = BenchDir::new("MEMORY_BENCH_DIR", "memory-bench");
    let memory = guest(size, 1);
    let regions = [memory.region()];

    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Bytes(size));

    // Save: a plain sequential write against a full memory file.
    let plain = dir.join("plain.bin");
    group.bench_function("plain_write", |b| {
        b.iter(|| plain_write(black_box(&plain), memory.as_slice()));
    });
    let _ = std::fs::remove_file(&plain); // absent when a filter skipped plain_write
    let full_path = dir.join("full.mem");
    group.bench_function("full_save", |b| {
        b.iter(|| save_memory_file(black_box(&full_path), &regions).expect("save"));
    });

    // Restore of a whole VM, 16 MiB against N MiB.
    bench_restore_vm(&mut group, &dir, size);

    // Restore: lazy (constant in the size) and eager, and touching every page afterwards.
    let descriptor = save_memory_file(&full_path, &regions).expect("save");
    let small = guest(16 * MIB, 2);
    let small_path = dir.join("small.mem");
    let small_descriptor = save_memory_file(&small_path, &[small.region()]).expect("save");
    drop(small);
    group.bench_function("restore_lazy_16mib", |b| {
        b.iter(|| restore_memory_file(&small_path, &small_descriptor, RestoreMode::Lazy))
    });
    group.bench_function("restore_lazy", |b| {
        b.iter(|| restore_memory_file(&full_path, &descriptor, RestoreMode::Lazy))
    });
    group.bench_function("restore_eager", |b| {
        b.iter(|| restore_memory_file(&full_path, &descriptor, RestoreMode::Eager))
    });
    group.bench_function("touch_after_lazy", |b| {
        b.iter(|| {
            let restored =
                restore_memory_file(&full_path, &descriptor, RestoreMode::Lazy).expect("lazy");
            touch(&restored)
        })
    });
    group.bench_function("touch_after_eager", |b| {
        b.iter(|| {
            let restored =
                restore_memory_file(&full_path, &descriptor, RestoreMode::Eager).expect("eager");
            touch(&restored)
        })
    });

    group.bench_function("write_after_lazy", |b| {
        b.iter(|| {
            let mut restored =
                restore_memory_file(&full_path, &descriptor, RestoreMode::Lazy).expect("lazy");
            write_every_page(&mut restored);
            restored
        })
    });
    group.bench_function("write_after_eager", |b| {
        b.iter(|| {
            let mut restored =
                restore_memory_file(&full_path, &descriptor, RestoreMode::Eager).expect("eager");
            write_every_page(&mut restored);
            restored
        })
    });

    // Diff after dirtying 1 % of the pages (seeded, spread over the guest).
    let pages = size / PAGE_SIZE;
    let mut dirty = vec![0u64; pages.div_ceil(64) as usize];
    let mut rng = Rng(7);
    let mut marked = 0;
    while marked < pages / 100 {
        let page = rng.next_u64() % pages;
        let word = &mut dirty[(page / 64) as usize];
        if *word & (1 << (page % 64)) == 0 {
            *word |= 1 << (page % 64);
            marked += 1;
        }
    }
    let diff_path = dir.join("1pct.diff");
    let diff_regions = [DiffRegion {
        guest_phys_addr: 0,
        bytes: memory.as_slice(),
        dirty: &dirty,
    }];
    let info = save_memory_diff(&diff_path, descriptor.layer, &diff_regions).expect("diff");
    println!(
        "memory: diff of {marked} dirty pages ({} %) writes {} bytes, {:.3} % of a full save's {}",
        marked as f64 * 100.0 / pages as f64,
        info.file_len,
        info.file_len as f64 * 100.0 / size as f64,
        size
    );
    group.bench_function("diff_1pct", |b| {
        b.iter(|| save_memory_diff(&diff_path, descriptor.layer, &diff_regions).expect("diff"))
    });

    // Chunk store: the second snapshot of an unchanged guest.
    let store = ChunkStore::open(dir.join("store")).expect("store");
    let first = store.save("first", &regions).expect("first");
    let second = store.save("second", &regions).expect("second");
    println!(
        "memory: chunk store first snapshot adds {} bytes, second of the unchanged guest {} bytes ({:.3} % of {})",
        first.new_bytes,
        second.new_bytes,
        second.new_bytes as f64 * 100.0 / size as f64,
        size
    );
    group.bench_function("chunk_second_snapshot", |b| {
        b.iter(|| store.save("second", &regions).expect("second"))
    });
    group.finish();
}

/// `restore_vm_16mib` and `restore_vm`: snapshots of the demo guest, mid-run, with 16 MiB
/// and `size` bytes of memory, each restored into a VM ready to run.
fn bench_restore_vm(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dir: &BenchDir,
    size: u64,
) {
    if !Path::new("/dev/kvm").exists() {
        println!("memory: /dev/kvm is missing: skipping restore_vm_16mib and restore_vm");
        return;
    }
    let snapshot = |mem: u64, name: &str| {
        let path = dir.join(name);
        let mut vm = demo_vmm::DemoVm::with_memory_size(mem).expect("demo vm");
        vm.load_guest().expect("guest");
        vm.run(demo_vmm::StopWhen::Condition(demo_vmm::mid_run))
            .expect("run");
        vm.save_with_memory(&path, kvm_state::CURRENT_APP_VERSION)
            .expect("save");
        path
    };
    let small = snapshot(16 * MIB, "vm-16mib.snap");
    let large = snapshot(size, "vm.snap");
    group.bench_function("restore_vm_16mib", |b| {
        b.iter(|| demo_vmm::DemoVm::restore_from_files(&small, RestoreMode::Lazy).expect("restore"))
    });
    group.bench_function("restore_vm", |b| {
        b.iter(|| demo_vmm::DemoVm::restore_from_files(&large, RestoreMode::Lazy).expect("restore"))
    });
}

fn config() -> Criterion {
    // Each iteration moves hundreds of MiB through the disk: few, long samples.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6))
        .sample_size(10)
}

/// The group with the shared configuration (what `criterion_group!` would generate,
/// written out so that the function is documented).
fn benches() {
    let mut criterion = config().configure_from_args();
    bench_memory(&mut criterion);
}

criterion_main!(benches);
