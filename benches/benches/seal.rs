//! Issue 16's sealing benchmarks: sealing and opening guest memory against the plain save and
//! load of the same memory, measured in the same run.
//!
//! Group `seal` (criterion ids `seal/name`), for a guest of `N` MiB (64 by default,
//! `SEAL_BENCH_MIB` to change; 8 under `cargo test --benches`, which runs each once), files in
//! `SEAL_BENCH_DIR` (default the system temp dir):
//! - `plain_save`: `kvm_state::save_memory_file` of N MiB (CRC-64, temporary file, fsync,
//!   rename), the baseline of
//! - `seal_save_<algorithm>`: `snapshot::save_sealed` of the same N MiB straight from guest
//!   memory (temporary file, fsync, link into place), for hmac-sha256, chacha20-poly1305 and
//!   aes-256-gcm;
//! - `plain_load`: `restore_memory_file` in eager mode (read into anonymous memory, CRC-64 of
//!   every region), the baseline of
//! - `open_load_<algorithm>`: `open_reader` on the sealed file, `read_exact` into anonymous
//!   guest memory, then `finish` (every chunk verified, nothing after the last);
//! - `seal_only_<algorithm>` / `open_only_<algorithm>`: the cryptography alone, sealing
//!   into `io::sink()` and opening from a sealed copy in memory into a reused buffer (what
//!   the CPU costs without the disk and the page faults).

use std::fs::File;
use std::hint::black_box;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use kvm_state::{restore_memory_file, save_memory_file, GuestMemoryMapping, RestoreMode};
use snapshot::{
    open_reader, save_sealed, seal_bytes, seal_writer, SealAlgorithm, SealKey, SealOptions,
    SealedFileRef,
};

mod support;

use support::{guest, guest_mib, BenchDir};

const MIB: u64 = 1 << 20;

/// Opens a sealed memory file into new anonymous guest memory, verifying every chunk.
fn open_load(key: &SealKey, path: &PathBuf, file: &SealedFileRef) -> GuestMemoryMapping {
    let sealed = File::open(path).expect("open");
    let mut reader =
        open_reader(key, BufReader::with_capacity(0, sealed), Some(file)).expect("sealed header");
    let mut memory = GuestMemoryMapping::anonymous(0, file.payload_len).expect("memory");
    reader
        .read_exact(memory.as_mut_slice())
        .expect("verified payload");
    reader.finish().expect("nothing after the last chunk");
    memory
}

fn bench_seal(c: &mut Criterion) {
    let size = guest_mib("SEAL_BENCH_MIB", 64) * MIB;
    let dir = BenchDir::new("SEAL_BENCH_DIR", "seal-bench");
    let memory = guest(size, 0x5ea1);
    let key = SealKey::from_bytes([0x42; 32]);

    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(size));

    let plain = dir.join("plain.mem");
    group.bench_function("plain_save", |b| {
        b.iter(|| save_memory_file(black_box(&plain), &[memory.region()]).expect("save"));
    });
    let descriptor = save_memory_file(&plain, &[memory.region()]).expect("save");
    group.bench_function("plain_load", |b| {
        b.iter(|| restore_memory_file(&plain, &descriptor, RestoreMode::Eager).expect("load"));
    });
    std::fs::remove_file(&plain).expect("remove plain file");

    for algorithm in SealAlgorithm::ALL {
        let options = SealOptions::new(algorithm).with_label("memory");
        let sealed = dir.join(&format!("{algorithm}.sealed"));
        group.bench_function(format!("seal_save_{algorithm}"), |b| {
            b.iter(|| save_sealed(&key, &options, memory.as_slice(), black_box(&sealed)));
        });
        let file = save_sealed(&key, &options, memory.as_slice(), &sealed).expect("seal");
        let opened = open_load(&key, &sealed, &file);
        assert!(
            opened.as_slice() == memory.as_slice(),
            "{algorithm} round trip"
        );
        drop(opened);
        group.bench_function(format!("open_load_{algorithm}"), |b| {
            b.iter(|| open_load(&key, black_box(&sealed), &file));
        });
        std::fs::remove_file(&sealed).expect("remove sealed file");

        group.bench_function(format!("seal_only_{algorithm}"), |b| {
            b.iter(|| {
                let mut writer =
                    seal_writer(&key, &options, size, io::sink()).expect("sealed header");
                writer.write_all(memory.as_slice()).expect("sealed");
                writer.finish().expect("finished")
            });
        });
        let (in_memory, file) = seal_bytes(&key, &options, memory.as_slice()).expect("seal");
        let mut out = vec![0u8; memory.as_slice().len()];
        let open_only = |out: &mut [u8]| {
            let mut reader =
                open_reader(&key, black_box(&in_memory[..]), Some(&file)).expect("header");
            reader.read_exact(out).expect("verified payload");
            reader.finish().expect("end")
        };
        open_only(&mut out);
        assert!(out == memory.as_slice(), "{algorithm} round trip in memory");
        group.bench_function(format!("open_only_{algorithm}"), |b| {
            b.iter(|| open_only(&mut out));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Each iteration moves the guest through the disk: few, long samples.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
}

/// The group with the shared configuration (what `criterion_group!` would generate,
/// written out so that the function is documented).
fn benches() {
    let mut criterion = config().configure_from_args();
    bench_seal(&mut criterion);
}

criterion_main!(benches);
