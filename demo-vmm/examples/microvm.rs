//! Snapshot a running microVM to a file and resume it in a fresh VM.
//!
//! Boots the demo guest (64-bit long mode, values in XMM registers, `IA32_KERNEL_GS_BASE`,
//! LAPIC timer interrupts, a 16550 UART with pending input; see `kvm_state::demo`), runs it
//! uninterrupted once for reference, then runs it again, stops it mid-run at an I/O exit,
//! pauses it, saves the complete `MicrovmState` (VM, vCPU, UART, guest memory) to a snapshot
//! file, destroys the VM, loads the
//! file, restores it into a fresh VM and lets it finish. Prints both outputs, the snapshot
//! size and where the time went; exits non-zero when the outputs differ or `/dev/kvm` is
//! missing.
//!
//! ```text
//! cargo run --release -p kvm-state --example microvm -- [--app-version N] [--after N] [--out PATH]
//! ```
//!
//! - `--app-version N`: write the snapshot at app version N (1 = rollback to the first
//!   release; default: the current one).
//! - `--after N`: take the snapshot after the guest has reported N values (default 4).
//! - `--out PATH`: keep the snapshot file at PATH (default: a temporary file, removed).

#[cfg(target_arch = "x86_64")]
mod run {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use kvm_state::demo::{DemoExit, DemoVm, MEM_SIZE};
    use kvm_state::{
        pause_vcpu, restore_vcpu, restore_vm, save_vcpu, save_vm, version_map, KvmStateError,
        MicrovmState, CURRENT_APP_VERSION,
    };

    /// Command line options.
    struct Options {
        app_version: u16,
        after: usize,
        out: Option<PathBuf>,
    }

    fn parse_args() -> Result<Options, String> {
        let mut options = Options {
            app_version: CURRENT_APP_VERSION,
            after: 4,
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
                    options.after = v
                        .parse()
                        .map_err(|_| format!("--after: not a number: {v}"))?;
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

    fn run(options: &Options) -> Result<bool, KvmStateError> {
        println!(
            "demo guest: long mode, XMM registers, IA32_KERNEL_GS_BASE, LAPIC timer, 16550 UART"
        );

        // 1. Reference: the guest uninterrupted.
        let t = Instant::now();
        let mut reference = DemoVm::new()?;
        reference.load_guest()?;
        let uninterrupted = reference.run_to_end()?;
        drop(reference);
        println!(
            "uninterrupted run ({:.1} ms): {}",
            t.elapsed().as_secs_f64() * 1e3,
            words(&uninterrupted)
        );

        // 2. Run again and stop at the I/O exit of report number `after`.
        let mut source = DemoVm::new()?;
        source.load_guest()?;
        let mut before = Vec::new();
        while before.len() < options.after {
            match source.run_until_report()? {
                DemoExit::Report(v) => before.push(v),
                DemoExit::Done => break,
            }
        }

        // 3. Save. KVM: complete the pending `out` (immediate_exit), then read VM and vCPU;
        // then the emulated UART, and guest memory.
        let t = Instant::now();
        pause_vcpu(source.vcpu_mut())?;
        let vm_state = save_vm(source.vm())?;
        let vcpu_state = save_vcpu(source.vm(), source.vcpu(), source.msr_indices())?;
        let save_kvm = t.elapsed();
        let devices = source.devices_state();
        let t = Instant::now();
        let memory = source.memory_region();
        let save_memory = t.elapsed();
        let state = MicrovmState {
            vm: vm_state,
            vcpus: vec![vcpu_state],
            devices,
            memory: vec![memory],
        };
        // Encode + CRC in memory alone, to split serialization from the file write.
        let t = Instant::now();
        let encoded = state.to_snapshot_bytes(options.app_version)?;
        let save_encode = t.elapsed();
        let (path, _cleanup) = match &options.out {
            Some(p) => (p.clone(), TempFile(None)),
            None => {
                let p = std::env::temp_dir()
                    .join(format!("kvm-state-microvm-{}.snap", std::process::id()));
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
        let vcpu = &state.vcpus[0];
        println!(
            "snapshot after {} reports at app version {} -> {}",
            before.len(),
            options.app_version,
            path.display()
        );
        println!(
            "  size: {file_len} bytes ({} of guest memory, {} of VM, vCPU and device state and framing)",
            MEM_SIZE,
            file_len.saturating_sub(MEM_SIZE as u64)
        );
        println!(
            "  vcpu: rip {:#x}, {} MSRs, {} CPUID leaves, {}-byte xsave, tsc {:?} kHz",
            vcpu.regs.rip,
            vcpu.msrs.entries.len(),
            vcpu.cpuid.entries.len(),
            (vcpu.xsave.region.len() + vcpu.xsave.extra.len()) * 4,
            vcpu.tsc_khz
        );
        for uart in &state.devices.serial {
            println!(
                "  uart: scratch {:#04x}, {} input bytes pending {:?}",
                uart.scratch,
                uart.in_buffer.len(),
                String::from_utf8_lossy(&uart.in_buffer)
            );
        }
        drop(state);

        // 4. Restore into a fresh VM.
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
        target.restore_memory(&loaded.memory)?;
        let restore_memory = t.elapsed();
        let t = Instant::now();
        restore_vm(target.vm(), &loaded.vm)?;
        let [vcpu_state] = loaded.vcpus.as_slice() else {
            return Err(KvmStateError::BadLength {
                what: "vcpus",
                found: loaded.vcpus.len(),
                expected: 1,
            });
        };
        restore_vcpu(target.vm(), target.vcpu(), vcpu_state)?;
        let restore_kvm = t.elapsed();
        target.restore_devices(&loaded.devices)?;
        let after = target.run_to_end()?;

        println!("save:");
        println!(
            "  KVM ioctls (pause, VM + vCPU state)          {}",
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
            "  new VM (VM, irqchip, PIT, memory, vCPU)      {}",
            us(restore_create)
        );
        println!(
            "  guest memory copy                            {}",
            us(restore_memory)
        );
        println!(
            "  KVM ioctls (VM + vCPU state)                 {}",
            us(restore_kvm)
        );

        println!("before snapshot: {}", words(&before));
        println!("after restore:   {}", words(&after));
        let mut resumed = before;
        resumed.extend(after);
        if resumed == uninterrupted {
            println!("OK: the restored guest finished with the output of the uninterrupted run");
            Ok(true)
        } else {
            println!("MISMATCH: snapshot + restore: {}", words(&resumed));
            println!("          uninterrupted:      {}", words(&uninterrupted));
            Ok(false)
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn main() -> std::process::ExitCode {
    run::main()
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> std::process::ExitCode {
    eprintln!("the demo guest is x86_64 only");
    std::process::ExitCode::from(2)
}
