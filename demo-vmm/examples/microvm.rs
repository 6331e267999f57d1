//! Snapshot a running SMP microVM to a file and resume it in a fresh VM.
//!
//! Boots the demo guest on three vCPU threads (see `demo_vmm::guest`: the BSP with values in
//! XMM registers, `IA32_KERNEL_GS_BASE`, its LAPIC timer and a `vm_superio` UART with pending
//! input; AP1 computing with its own timer; AP2 halted waiting for the BSP's IPI), runs it
//! uninterrupted once for reference, then runs it again, stops it mid-run (virtio requests in
//! flight, AP1 running, AP2 halted), pauses every vCPU, saves the complete `MicrovmState` (VM, vCPUs, UART, virtio device,
//! guest memory, the host's facts) to a snapshot file, destroys the VM, loads the file, restores it into a fresh VM
//! with as many vCPU threads and lets it finish. Prints each vCPU's output, the snapshot size
//! and where the time went; exits non-zero when an output differs or `/dev/kvm` is missing.
//!
//! ```text
//! cargo run --release -p demo-vmm --example microvm -- [--app-version N] [--after N] [--out PATH]
//! ```
//!
//! - `--app-version N`: write the snapshot at app version N (1 = rollback to the first
//!   release; default: the current one).
//! - `--after N`: take the snapshot once the vCPUs together have reported N values (default:
//!   mid-run, `demo_vmm::mid_run`: the BSP's virtio requests in flight, AP1 running, AP2 halted
//!   waiting for its IPI).
//! - `--out PATH`: keep the snapshot file at PATH (default: a temporary file, removed).

#[cfg(target_arch = "x86_64")]
mod run {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use demo_vmm::{mid_run, DemoVm, DemoVmError, StopWhen, MEM_SIZE};
    use kvm_state::{save_microvm, version_map, KvmStateError, MicrovmState, CURRENT_APP_VERSION};

    /// Command line options.
    struct Options {
        app_version: u16,
        after: Option<usize>,
        out: Option<PathBuf>,
    }

    fn parse_args() -> Result<Options, String> {
        let mut options = Options {
            app_version: CURRENT_APP_VERSION,
            after: None,
            out: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--app-version" => {
                    let v = value("--app-version")?;
                    options.app_version = v
                        .parse()
                        .map_err(|_| format!("--app-version: not a number: {v}"))?;
                }
                "--after" => {
                    let v = value("--after")?;
                    options.after = Some(
                        v.parse()
                            .map_err(|_| format!("--after: not a number: {v}"))?,
                    );
                }
                "--out" => options.out = Some(PathBuf::from(value("--out")?)),
                "-h" | "--help" => {
                    return Err(
                        "usage: microvm [--app-version N] [--after N] [--out PATH]".to_string()
                    )
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(options)
    }

    /// A duration in microseconds, right-aligned.
    fn us(d: Duration) -> String {
        format!("{:>9.1} us", d.as_secs_f64() * 1e6)
    }

    fn words(values: &[u32]) -> String {
        let parts: Vec<String> = values.iter().map(|v| format!("{v:08x}")).collect();
        format!("[{}]", parts.join(" "))
    }

    /// Prints an error and the chain of its sources.
    fn report(err: &dyn std::error::Error) {
        eprintln!("error: {err}");
        let mut source = err.source();
        while let Some(e) = source {
            eprintln!("  caused by: {e}");
            source = e.source();
        }
    }

    /// Removes the temporary snapshot file on every exit path.
    struct TempFile(Option<PathBuf>);

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(path) = &self.0 {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    pub(crate) fn main() -> ExitCode {
        let options = match parse_args() {
            Ok(o) => o,
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::from(2);
            }
        };
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("/dev/kvm is missing: this example needs KVM to run a guest");
            return ExitCode::from(2);
        }
        match run(&options) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                report(&e);
                ExitCode::FAILURE
            }
        }
    }

    fn mp_state_name(mp_state: u32) -> &'static str {
        match mp_state {
            kvm_bindings::KVM_MP_STATE_RUNNABLE => "running",
            kvm_bindings::KVM_MP_STATE_HALTED => "halted",
            kvm_bindings::KVM_MP_STATE_UNINITIALIZED => "waiting for SIPI",
            _ => "other",
        }
    }

    fn run(options: &Options) -> Result<bool, DemoVmError> {
        println!(
            "demo guest: {} vCPUs on threads; BSP: long mode, XMM registers, IA32_KERNEL_GS_BASE, \
             LAPIC timer, vm-superio UART; AP1 computing with its LAPIC timer; AP2 halted until \
             the BSP's IPI",
            demo_vmm::VCPU_COUNT
        );

        // 1. Reference: the guest uninterrupted.
        let t = Instant::now();
        let mut reference = DemoVm::new()?;
        reference.load_guest()?;
        let reference_run = reference.run(StopWhen::Done)?;
        let uninterrupted = reference_run.reports;
        drop(reference);
        println!(
            "uninterrupted run ({:.1} ms):",
            t.elapsed().as_secs_f64() * 1e3
        );
        for (vcpu, out) in uninterrupted.iter().enumerate() {
            println!("  vcpu {vcpu}: {}", words(out));
        }
        println!("  virtio: {}", words(&reference_run.virtio));

        // 2. Run again; every vCPU thread stops (kicked out of KVM_RUN, its pending I/O
        // completed) at the snapshot point.
        let mut source = DemoVm::new()?;
        source.load_guest()?;
        let stop_when = match options.after {
            Some(n) => StopWhen::Reports(n),
            None => StopWhen::Condition(mid_run),
        };
        let before_run = source.run(stop_when)?;
        let before = before_run.reports;

        // 3. Save with the vCPUs paused (what `DemoVm::save_microvm` does, timed in parts):
        // the devices and guest memory (the VMM's), then `kvm_state::save_microvm`, which
        // reads the VM-wide state and each vCPU and records the facts of this host.
        let devices = source.devices_state();
        let t = Instant::now();
        let memory = source.memory_region();
        let save_memory = t.elapsed();
        let t = Instant::now();
        let vcpu_fds: Vec<_> = source.vcpus().iter().collect();
        let state = save_microvm(
            source.vm(),
            &vcpu_fds,
            source.host(),
            source.msr_indices(),
            devices,
            vec![memory],
        )?;
        let save_kvm = t.elapsed();
        // Encode + CRC in memory alone, to split serialization from the file write.
        let t = Instant::now();
        let encoded = state.to_snapshot_bytes(options.app_version)?;
        let save_encode = t.elapsed();
        let (path, _cleanup) = match &options.out {
            Some(p) => (p.clone(), TempFile(None)),
            None => {
                let p = std::env::temp_dir()
                    .join(format!("demo-vmm-microvm-{}.snap", std::process::id()));
                (p.clone(), TempFile(Some(p)))
            }
        };
        let t = Instant::now();
        state.save_to_file(&path, options.app_version)?;
        let save_file = t.elapsed();
        // The VM is destroyed: nothing of it survives but the file.
        drop(source);
        let file_len = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default();
        println!(
            "snapshot after {} reports at app version {} -> {}",
            before.iter().map(Vec::len).sum::<usize>(),
            options.app_version,
            path.display()
        );
        println!(
            "  size: {file_len} bytes ({} of guest memory, {} of VM, vCPU and device state and framing)",
            MEM_SIZE,
            file_len.saturating_sub(MEM_SIZE as u64)
        );
        let host = &state.host;
        println!(
            "  host: {} family {:#x} model {:#x} stepping {}, tsc {:?} kHz, {} relied kvm capabilities, kernel {}",
            host.cpu_vendor,
            host.cpu_family,
            host.cpu_model,
            host.cpu_stepping,
            host.tsc_khz,
            host.kvm_capabilities.len(),
            host.kernel_release
        );
        for (index, vcpu) in state.vcpus.iter().enumerate() {
            println!(
                "  vcpu {index}: {}, rip {:#x}, {} MSRs, {} CPUID leaves, {}-byte xsave, tsc {:?} kHz",
                mp_state_name(vcpu.mp_state.mp_state),
                vcpu.regs.rip,
                vcpu.msrs.entries.len(),
                vcpu.cpuid.entries.len(),
                (vcpu.xsave.region.len() + vcpu.xsave.extra.len()) * 4,
                vcpu.tsc_khz
            );
        }
        for device in &state.devices.virtio_mmio {
            for queue in &device.queues {
                println!(
                    "  virtio: status {:#x}, queue of {}: next_avail {}, next_used {} ({} payloads received before the snapshot)",
                    device.device_status,
                    queue.size,
                    queue.next_avail,
                    queue.next_used,
                    before_run.virtio.len()
                );
            }
        }
        for uart in &state.devices.serial {
            println!(
                "  uart: scratch {:#04x}, {} input bytes pending {:?}",
                uart.scratch,
                uart.in_buffer.len(),
                String::from_utf8_lossy(&uart.in_buffer)
            );
        }
        drop(state);

        // 4. Restore into a fresh VM with as many vCPU threads.
        let t = Instant::now();
        let (loaded, data_version) = MicrovmState::load_file(&path)?;
        let restore_file = t.elapsed();
        let t = Instant::now();
        let (decoded, _) = snapshot::Snapshot::load::<_, MicrovmState>(
            &mut encoded.as_slice(),
            encoded.len(),
            version_map(),
        )
        .map_err(|source| KvmStateError::Snapshot {
            action: "load",
            source,
        })?;
        let restore_decode = t.elapsed();
        drop(decoded);

        let t = Instant::now();
        let mut target = DemoVm::new()?;
        let restore_create = t.elapsed();
        let t = Instant::now();
        target.restore_microvm(&loaded)?;
        let restore_all = t.elapsed();
        let after_run = target.run(StopWhen::Done)?;
        let after = after_run.reports;

        println!("save:");
        println!(
            "  KVM ioctls (VM + {} vCPU states)             {}",
            loaded.vcpus.len(),
            us(save_kvm)
        );
        println!(
            "  guest memory copy                            {}",
            us(save_memory)
        );
        println!(
            "  serialization + CRC-64, in memory            {}",
            us(save_encode)
        );
        println!(
            "  serialization + CRC-64 + atomic file write   {}",
            us(save_file)
        );
        println!("restore (file written at app version {data_version}):");
        println!(
            "  file read + CRC-64 + deserialization         {}",
            us(restore_file)
        );
        println!(
            "  CRC-64 + deserialization, in memory          {}",
            us(restore_decode)
        );
        println!(
            "  new VM (VM, irqchip, PIT, memory, vCPUs)     {}",
            us(restore_create)
        );
        println!(
            "  checks, memory copy, KVM ioctls, devices     {}",
            us(restore_all)
        );

        let mut ok = true;
        for (vcpu, ((b, a), want)) in before.iter().zip(&after).zip(&uninterrupted).enumerate() {
            println!("vcpu {vcpu}: before snapshot {}", words(b));
            println!("        after restore   {}", words(a));
            let resumed: Vec<u32> = b.iter().chain(a).copied().collect();
            if resumed != *want {
                println!(
                    "MISMATCH on vcpu {vcpu}: snapshot + restore: {}",
                    words(&resumed)
                );
                println!("          uninterrupted:      {}", words(want));
                ok = false;
            }
        }
        println!("virtio: before snapshot {}", words(&before_run.virtio));
        println!("        after restore   {}", words(&after_run.virtio));
        let transmitted: Vec<u32> = before_run
            .virtio
            .iter()
            .chain(&after_run.virtio)
            .copied()
            .collect();
        if transmitted != reference_run.virtio {
            println!("MISMATCH on virtio: {}", words(&transmitted));
            ok = false;
        }
        if ok {
            println!("OK: every vCPU and the virtio device of the restored guest finished with the output of the uninterrupted run");
        }
        Ok(ok)
    }
}

#[cfg(target_arch = "x86_64")]
fn main() -> std::process::ExitCode {
    run::main()
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> std::process::ExitCode {
    eprintln!("the demo VMM is x86_64 only");
    std::process::ExitCode::from(2)
}
