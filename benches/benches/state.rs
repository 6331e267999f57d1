//! Issue 7's benchmarks: versionize against serde + bincode 2 (`config::legacy()`) and
//! against `memcpy`, all in one run so that the ratios compare like with like.
//!
//! Groups (criterion ids `group/name`, read by `cargo run -p benchmarks --bin report`):
//! - `state`: the `MicrovmState` payload: ours at the latest version and at app version 1
//!   (`ser_fn` hooks, one clone per hooked struct), bincode, and a `memcpy` of as many bytes;
//! - `version_map`: the same payload through maps of 4, 100 and 1000 app versions;
//! - `bytes`: `Vec<u8>` and `[u8; N]` fields against `memcpy` of as many bytes, and
//!   against `to_vec` (allocate + copy + free: the floor of a decode into an owned `Vec`);
//! - `crc`: CRC-64 over 1 MiB against `memcpy` of 1 MiB;
//! - `snapshot`: save and load with and without the CRC;
//! - `kvm` (only with a usable `/dev/kvm`): VMs of 1, 4 and 16 vCPUs, the save and restore
//!   ioctls of the whole-VM API (`save_microvm`, `CheckedRestore::restore`) against
//!   `Snapshot::save` and `Snapshot::load` of the collected state and against the checks of
//!   `check_restore`.

use std::hint::black_box;
use std::time::Duration;

use benchmarks::{version_map, ArrayField, MicrovmState, VecField};
use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use snapshot::Snapshot;
use versionize::{VersionMap, Versionize};

/// The bincode configuration whose output is versionize's wire format.
fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
> {
    bincode::config::legacy()
}

fn encode<T: Versionize>(value: &T, map: &VersionMap, app_version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .serialize(&mut out, map, app_version)
        .expect("payload encodes");
    out
}

/// Keeps a decoded value alive for the optimizer, by reference: returning it by value from
/// the measured closure would move it into `black_box`, and for a 4 KiB array inside an
/// align-1 `Result` that move is compiled to 4096 single-byte copies, which would then be
/// what `bytes/array_u8_4k_decode` measures. The value is dropped inside the timing.
fn keep<T>(value: T) {
    black_box(&value);
}

fn throughput_of(bytes: usize) -> Throughput {
    Throughput::Bytes(u64::try_from(bytes).expect("fits u64"))
}

/// Ours at the latest and an older version, bincode, and `memcpy`, on the same payload.
fn bench_state(c: &mut Criterion) {
    let state = MicrovmState::bench_payload();
    let map = version_map(4);
    let latest = map.latest_version();
    let bytes = encode(&state, &map, latest);
    let theirs = bincode::serde::encode_to_vec(&state, bincode_config()).expect("bincode encodes");
    assert_eq!(
        bytes, theirs,
        "same value, same bytes at the latest version"
    );
    let len = bytes.len();

    let mut group = c.benchmark_group("state");
    group.throughput(throughput_of(len));
    let mut out = Vec::with_capacity(2 * len);

    group.bench_function("versionize_encode_latest", |b| {
        b.iter(|| {
            out.clear();
            black_box(&state)
                .serialize(&mut out, black_box(&map), black_box(latest))
                .expect("encodes");
            black_box(out.len())
        });
    });
    group.bench_function("versionize_encode_older", |b| {
        b.iter(|| {
            out.clear();
            black_box(&state)
                .serialize(&mut out, black_box(&map), black_box(1))
                .expect("encodes");
            black_box(out.len())
        });
    });
    group.bench_function("versionize_decode_latest", |b| {
        b.iter(|| {
            keep(
                MicrovmState::deserialize(
                    &mut black_box(bytes.as_slice()),
                    &map,
                    black_box(latest),
                )
                .expect("decodes"),
            );
        });
    });
    group.bench_function("bincode_encode", |b| {
        b.iter(|| {
            out.clear();
            bincode::serde::encode_into_std_write(black_box(&state), &mut out, bincode_config())
                .expect("encodes")
        });
    });
    let mut slice = vec![0u8; len];
    group.bench_function("bincode_encode_slice", |b| {
        b.iter(|| {
            bincode::serde::encode_into_slice(black_box(&state), &mut slice, bincode_config())
                .expect("encodes")
        });
    });
    group.bench_function("bincode_decode", |b| {
        b.iter(|| {
            keep(
                bincode::serde::decode_from_slice::<MicrovmState, _>(
                    black_box(&bytes),
                    bincode_config(),
                )
                .expect("decodes"),
            );
        });
    });
    let mut copy = vec![0u8; len];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&bytes));
            black_box(copy.as_ptr())
        });
    });
    group.finish();
}

/// The latest version through maps of 4, 100 and 1000 app versions.
fn bench_version_map(c: &mut Criterion) {
    let state = MicrovmState::bench_payload();
    let reference = encode(&state, &version_map(4), 4);
    let mut group = c.benchmark_group("version_map");
    group.throughput(throughput_of(reference.len()));
    let mut out = Vec::with_capacity(2 * reference.len());
    for app_versions in [4u16, 100, 1000] {
        let map = version_map(app_versions);
        let bytes = encode(&state, &map, app_versions);
        assert_eq!(
            bytes, reference,
            "the latest layout does not depend on the map"
        );
        group.bench_function(format!("encode_{app_versions}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&state)
                    .serialize(&mut out, black_box(&map), black_box(app_versions))
                    .expect("encodes");
                black_box(out.len())
            });
        });
        group.bench_function(format!("decode_{app_versions}"), |b| {
            b.iter(|| {
                keep(
                    MicrovmState::deserialize(
                        &mut black_box(bytes.as_slice()),
                        &map,
                        black_box(app_versions),
                    )
                    .expect("decodes"),
                );
            });
        });
    }
    group.finish();
}

/// Encode and decode of one byte field; `memcpy` of as many bytes is the baseline.
fn bench_byte_field<T: Versionize>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    value: &T,
) {
    let map = VersionMap::new();
    let bytes = encode(value, &map, 1);
    let mut out = Vec::with_capacity(bytes.len());
    group.bench_function(format!("{name}_encode"), |b| {
        b.iter(|| {
            out.clear();
            black_box(value)
                .serialize(&mut out, black_box(&map), 1)
                .expect("encodes");
            black_box(out.len())
        });
    });
    group.bench_function(format!("{name}_decode"), |b| {
        b.iter(|| {
            keep(T::deserialize(&mut black_box(bytes.as_slice()), &map, 1).expect("decodes"))
        });
    });
}

fn bench_memcpy(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    len: usize,
) {
    let source = benchmarks::SplitMix64::new(7).bytes(len);
    let mut copy = vec![0u8; len];
    group.bench_function(name, |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&source));
            black_box(copy.as_ptr())
        });
    });
}

/// The floor of any decode into an owned `Vec<u8>`: allocate, copy, free (`to_vec`).
fn bench_to_vec(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    len: usize,
) {
    let source = benchmarks::SplitMix64::new(7).bytes(len);
    group.bench_function(name, |b| {
        b.iter(|| keep(black_box(source.as_slice()).to_vec()))
    });
}

/// `Vec<u8>` and byte-array fields against `memcpy` of as many bytes.
fn bench_bytes(c: &mut Criterion) {
    let mut group = c.benchmark_group("bytes");
    group.throughput(throughput_of(4096));
    bench_memcpy(&mut group, "memcpy_4k", 4096);
    bench_byte_field(&mut group, "vec_u8_4k", &VecField::new(1, 4096));
    bench_byte_field(&mut group, "array_u8_4k", &ArrayField::<4096>::new(1));
    bench_to_vec(&mut group, "to_vec_4k", 4096);
    group.throughput(throughput_of(64 * 1024));
    bench_memcpy(&mut group, "memcpy_64k", 64 * 1024);
    bench_byte_field(&mut group, "vec_u8_64k", &VecField::new(1, 64 * 1024));
    bench_to_vec(&mut group, "to_vec_64k", 64 * 1024);
    group.finish();
}

/// CRC-64 over 1 MiB against `memcpy` of 1 MiB.
fn bench_crc(c: &mut Criterion) {
    const MIB: usize = 1024 * 1024;
    let source = benchmarks::SplitMix64::new(11).bytes(MIB);
    let mut group = c.benchmark_group("crc");
    group.throughput(throughput_of(MIB));
    group.bench_function("crc64_1mib", |b| {
        b.iter(|| versionize::crc::crc64(black_box(&source)));
    });
    bench_memcpy(&mut group, "memcpy_1mib", MIB);
    group.finish();
}

/// Snapshot save and load, with and without the CRC.
fn bench_snapshot(c: &mut Criterion) {
    let state = MicrovmState::bench_payload();
    let map = version_map(4);
    let latest = map.latest_version();
    let mut snapshot = Snapshot::new(map.clone(), latest);
    let mut file = Vec::new();
    snapshot.save(&mut file, &state).expect("saves");
    let mut plain = Vec::new();
    snapshot
        .save_without_crc(&mut plain, &state)
        .expect("saves");

    let mut group = c.benchmark_group("snapshot");
    group.throughput(throughput_of(file.len()));
    let mut out = Vec::with_capacity(2 * file.len());
    group.bench_function("save_crc", |b| {
        b.iter(|| {
            out.clear();
            snapshot.save(&mut out, black_box(&state)).expect("saves");
            black_box(out.len())
        });
    });
    group.bench_function("save_without_crc", |b| {
        b.iter(|| {
            out.clear();
            snapshot
                .save_without_crc(&mut out, black_box(&state))
                .expect("saves");
            black_box(out.len())
        });
    });
    // `load` takes the map by value: its clone is setup, not measured. One input per batch,
    // so that each loaded state is dropped before the next load and the allocator reuses
    // its memory (with many outputs alive, fresh pages fault in and dominate).
    group.bench_function("load_crc", |b| {
        b.iter_batched(
            || map.clone(),
            |map| {
                keep(
                    Snapshot::load::<_, MicrovmState>(
                        &mut black_box(file.as_slice()),
                        file.len(),
                        map,
                    )
                    .expect("loads"),
                );
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("unchecked_load", |b| {
        b.iter_batched(
            || map.clone(),
            |map| {
                keep(
                    Snapshot::unchecked_load::<_, MicrovmState>(
                        &mut black_box(plain.as_slice()),
                        map,
                    )
                    .expect("loads"),
                );
            },
            BatchSize::PerIteration,
        );
    });
    // What the CRC alone costs: one call over the finished file (`save` takes it over
    // 64 KiB blocks as they are written).
    group.bench_function("crc64_of_file", |b| {
        b.iter(|| versionize::crc::crc64(black_box(&file)));
    });
    group.finish();
}

/// KVM save and restore of a 1-vCPU and a 4-vCPU VM: the ioctls that collect and write the
/// state, against `Snapshot::save` / `Snapshot::load` of that state (without guest memory).
#[cfg(target_arch = "x86_64")]
mod kvm {
    use std::hint::black_box;

    use criterion::{BatchSize, Criterion, Throughput};
    use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
    use kvm_ioctls::{Kvm, VcpuFd, VmFd};
    use kvm_state::{check_restore, save_microvm, CheckedRestore, VmLayout};
    use kvm_state::{version_map, MicrovmState, CURRENT_APP_VERSION};
    use snapshot::Snapshot;

    use super::keep;

    /// A VM with an in-kernel irqchip and PIT and `n` vCPUs holding the CPUID KVM supports.
    /// No memory and no guest: the vCPUs never run, which is what `CheckedRestore` expects
    /// of its target and does not change what the save ioctls read.
    struct BenchVm {
        vcpus: Vec<VcpuFd>,
        vm: VmFd,
        host: kvm_state::HostSupport,
    }

    impl BenchVm {
        fn new(kvm: &Kvm, n: u64) -> Result<Self, String> {
            let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
            // Needed by VMX hosts; the address is far above any guest memory.
            vm.set_tss_address(0xfffb_d000)
                .map_err(|e| format!("KVM_SET_TSS_ADDR: {e}"))?;
            vm.create_irq_chip()
                .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
            vm.create_pit2(kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            })
            .map_err(|e| format!("KVM_CREATE_PIT2: {e}"))?;
            let cpuid = kvm
                .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
            let mut vcpus = Vec::new();
            for id in 0..n {
                let vcpu = vm
                    .create_vcpu(id)
                    .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
                vcpu.set_cpuid2(&cpuid)
                    .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
                vcpus.push(vcpu);
            }
            let host = kvm_state::HostSupport::query(kvm, &vm).map_err(|e| e.to_string())?;
            Ok(BenchVm { vcpus, vm, host })
        }

        fn fds(&self) -> Vec<&VcpuFd> {
            self.vcpus.iter().collect()
        }

        /// `save_microvm` (`save_vm`, then `save_vcpu` for every vCPU, the host's facts):
        /// what a VMM does with its vCPUs paused; no devices, no memory.
        fn save(&self, msr_indices: &[u32]) -> kvm_state::Result<MicrovmState> {
            save_microvm(
                &self.vm,
                &self.fds(),
                &self.host,
                msr_indices,
                Default::default(),
                Vec::new(),
            )
        }

        /// Every check of a restore into this VM, before any write (`check_restore`).
        fn check<'a>(&self, state: &'a MicrovmState) -> kvm_state::Result<CheckedRestore<'a>> {
            check_restore(state, &self.host, &VmLayout::of_state(state))
        }

        /// The writes of a checked restore: `restore_vm`, then every vCPU
        /// (`CheckedRestore::restore`).
        fn restore(&self, checked: &CheckedRestore<'_>) -> kvm_state::Result<()> {
            checked.restore(&self.vm, &self.fds())
        }
    }

    /// One source and one target VM of `n` vCPUs, and the state and snapshot bytes of the
    /// source, or why they could not be made.
    fn setup(
        kvm: &Kvm,
        n: u64,
        msr_indices: &[u32],
    ) -> Result<(BenchVm, BenchVm, MicrovmState, Vec<u8>), String> {
        let source = BenchVm::new(kvm, n)?;
        let target = BenchVm::new(kvm, n)?;
        let state = source.save(msr_indices).map_err(|e| e.to_string())?;
        let checked = target.check(&state).map_err(|e| e.to_string())?;
        target.restore(&checked).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        Snapshot::new(version_map(), CURRENT_APP_VERSION)
            .save(&mut bytes, &state)
            .map_err(|e| e.to_string())?;
        let (back, _) =
            Snapshot::load::<_, MicrovmState>(&mut bytes.as_slice(), bytes.len(), version_map())
                .map_err(|e| e.to_string())?;
        if back != state {
            return Err("the loaded state differs from the saved one".into());
        }
        Ok((source, target, state, bytes))
    }

    pub(super) fn bench(c: &mut Criterion) {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => {
                println!("kvm: skipping: /dev/kvm not available ({e})");
                return;
            }
        };
        let msr_indices = match kvm_state::savable_msr_indices(&kvm) {
            Ok(indices) => indices,
            Err(e) => {
                println!("kvm: skipping: {e}");
                return;
            }
        };
        let mut vms = Vec::new();
        for n in [1u64, 4, 16] {
            match setup(&kvm, n, &msr_indices) {
                Ok(vm) => vms.push((n, vm)),
                Err(e) => {
                    println!("kvm: skipping: {n}-vCPU VM: {e}");
                    return;
                }
            }
        }

        let mut group = c.benchmark_group("kvm");
        for (n, (source, target, state, bytes)) in &vms {
            let map = version_map();
            let mut snapshot = Snapshot::new(map.clone(), CURRENT_APP_VERSION);
            let mut out = Vec::with_capacity(2 * bytes.len());
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(format!("ioctl_save_{n}vcpu"), |b| {
                b.iter(|| keep(source.save(black_box(&msr_indices)).expect("saves")));
            });
            group.bench_function(format!("serialize_crc_{n}vcpu"), |b| {
                b.iter(|| {
                    out.clear();
                    snapshot.save(&mut out, black_box(state)).expect("saves");
                    black_box(out.len())
                });
            });
            group.bench_function(format!("check_restore_{n}vcpu"), |b| {
                b.iter(|| keep(target.check(black_box(state)).expect("checks")));
            });
            let checked = target.check(state).expect("checks");
            group.bench_function(format!("ioctl_restore_{n}vcpu"), |b| {
                b.iter(|| target.restore(black_box(&checked)).expect("restores"));
            });
            // `load` takes the map by value: its clone is setup, as in `snapshot/load_crc`.
            group.bench_function(format!("load_{n}vcpu"), |b| {
                b.iter_batched(
                    || map.clone(),
                    |map| {
                        keep(
                            Snapshot::load::<_, MicrovmState>(
                                &mut black_box(bytes.as_slice()),
                                bytes.len(),
                                map,
                            )
                            .expect("loads"),
                        );
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    // Two shared cores: short, equal windows for every benchmark keep a full run near
    // three minutes; ratios come from one run.
    Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .noise_threshold(0.03)
}

/// Every group, with the shared configuration (what `criterion_group!` would generate,
/// written out so that the function is documented).
fn benches() {
    let mut criterion = config().configure_from_args();
    bench_state(&mut criterion);
    bench_version_map(&mut criterion);
    bench_bytes(&mut criterion);
    bench_crc(&mut criterion);
    bench_snapshot(&mut criterion);
    #[cfg(target_arch = "x86_64")]
    kvm::bench(&mut criterion);
}

criterion_main!(benches);
