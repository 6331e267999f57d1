//! `demo-vmm`: the demo VMM's command line, stable from this release on (see
//! `docs/DEMO-VMM.md`): run the guest from power-on and snapshot it, restore a snapshot and run
//! it to the end, print the uninterrupted output, and say which app versions this build reads
//! and writes.
//!
//! The guest's output is printed one line per value, in this order: each vCPU's reports
//! (`vcpu<i> 0x<8 hex digits>`, vCPU 0 first), the virtio device's payloads
//! (`virtio 0x<8 hex digits>`), and `vm finished` if the guest finished. The output of `run`
//! followed by that of `restore` of its snapshot, sorted stably by the first field
//! (`sort -s -k1,1`), is the output of `expected`.
//!
//! `migrate-to ADDR` and `migrate-from ADDR` (from release 0.2.0 on) migrate the running guest
//! between two processes, over `unix:PATH` or `tcp:HOST:PORT` (see `cli_migrate.rs`).
//!
//! Exit codes: 0 ok; 2 the snapshot (or migration) is refused (a file this build cannot read, or a state
//! that does not fit this VM or host), with the named error on stderr in one line; 1 any other
//! failure.

#[cfg(target_arch = "x86_64")]
mod cli_info;
#[cfg(target_arch = "x86_64")]
mod cli_migrate;

#[cfg(target_arch = "x86_64")]
mod cli {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Duration;

    use clap::{Args, Parser, Subcommand};
    use demo_vmm::{mid_run, DemoVm, DemoVmError, RunOutput, StopWhen};
    use kvm_state::{KvmStateError, MemoryError, MicrovmState, RestoreMode, CURRENT_APP_VERSION};

    /// The demo VMM: an SMP guest with a UART and a virtio device on /dev/kvm, snapshotted to a
    /// file and resumed in a fresh VM.
    #[derive(Debug, Parser)]
    #[command(name = "demo-vmm")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        /// Run the guest from power-on until the stop point, print its output so far, and save a
        /// snapshot if asked.
        Run(RunArgs),
        /// Restore a snapshot into a fresh VM, run the guest to the end, print the rest of its
        /// output.
        Restore {
            /// The snapshot file.
            file: PathBuf,
            /// Read a memory file beside the snapshot into memory, checking its CRC-64s,
            /// instead of mapping it copy-on-write (lazily).
            #[arg(long)]
            eager: bool,
            /// Act as a build whose support window starts at this app version
            /// (`VersionMap::set_oldest_supported`): an older snapshot is refused by name
            /// (`AppVersionUnsupported`) before any of its state is decoded.
            #[arg(long, value_name = "V")]
            oldest_app_version: Option<u16>,
        },
        /// Run the guest from power-on to the end without a snapshot and print its output.
        Expected {
            /// Guest memory in MiB (a multiple of 2, at most 1024).
            #[arg(long, value_name = "MIB", default_value_t = 2)]
            memory_mib: u64,
        },
        /// Print the app versions this build reads and writes.
        Versions,
        /// Run the guest to the stop point and migrate it to a `migrate-from` process at ADDR
        /// (`unix:PATH` or `tcp:HOST:PORT`); resume it here if the migration fails.
        MigrateTo(crate::cli_migrate::MigrateToArgs),
        /// Listen at ADDR (`unix:PATH` or `tcp:HOST:PORT`), receive a migrated guest, resume it
        /// and run it to the end.
        MigrateFrom(crate::cli_migrate::MigrateFromArgs),
    }

    #[derive(Debug, Args)]
    struct RunArgs {
        /// Stop when the vCPUs together have made N reports (default stop point: the BSP has
        /// submitted its virtio requests, AP1 is running, AP2 is halted waiting for an IPI).
        #[arg(long, value_name = "N", conflicts_with = "stop_after_ms")]
        stop_at_report: Option<usize>,
        /// Stop T milliseconds after the run started, wherever each vCPU is.
        #[arg(long, value_name = "T")]
        stop_after_ms: Option<u64>,
        /// Save a snapshot of the stopped VM to FILE.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// The app version to write the snapshot at (default: this build's current one).
        #[arg(long, value_name = "V", default_value_t = CURRENT_APP_VERSION, requires = "save")]
        app_version: u16,
        /// Guest memory in MiB (a multiple of 2, at most 1024); above 2 the guest touches a
        /// page every 64 KiB across it and reports a checksum.
        #[arg(long, value_name = "MIB", default_value_t = 2)]
        memory_mib: u64,
        /// Save guest memory to FILE.mem beside the snapshot instead of inside it (always so
        /// above 2 MiB).
        #[arg(long, requires = "save")]
        memory_file: bool,
    }

    /// Why a command failed, and so its exit code.
    pub(crate) enum Failure {
        /// The snapshot is refused: exit code 2.
        Refused(String),
        /// Anything else: exit code 1.
        Other(String),
        /// This exit code, the reason already printed.
        Quiet(u8),
    }

    pub(crate) fn main() -> ExitCode {
        let cli = match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) if !e.use_stderr() => {
                // --help, --version
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(1);
            }
        };
        let result = match cli.command {
            Command::Run(args) => run(&args),
            Command::Restore {
                file,
                eager,
                oldest_app_version,
            } => restore(&file, eager, oldest_app_version),
            Command::Expected { memory_mib } => expected(memory_mib),
            Command::Versions => {
                versions();
                Ok(())
            }
            Command::MigrateTo(args) => crate::cli_migrate::migrate_to(&args),
            Command::MigrateFrom(args) => crate::cli_migrate::migrate_from(&args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Refused(line)) => {
                eprintln!("demo-vmm: refused: {line}");
                ExitCode::from(2)
            }
            Err(Failure::Other(line)) => {
                eprintln!("demo-vmm: {line}");
                ExitCode::from(1)
            }
            Err(Failure::Quiet(code)) => ExitCode::from(code),
        }
    }

    /// `demo-vmm run`.
    fn run(args: &RunArgs) -> Result<(), Failure> {
        if !(1..=CURRENT_APP_VERSION).contains(&args.app_version) {
            return Err(Failure::Other(format!(
                "app version {} is not one this build writes (1..={CURRENT_APP_VERSION})",
                args.app_version
            )));
        }
        let stop_when = match (args.stop_at_report, args.stop_after_ms) {
            (Some(n), _) => StopWhen::Reports(n),
            (None, Some(ms)) => StopWhen::After(Duration::from_millis(ms)),
            (None, None) => StopWhen::Condition(mid_run),
        };
        let mut vm = new_vm(args.memory_mib)?;
        vm.load_guest().map_err(other("cannot load the guest"))?;
        let output = vm.run(stop_when).map_err(other("the guest failed"))?;
        print_output(&output)?;
        if let Some(path) = &args.save {
            if output.finished {
                return Err(Failure::Other(format!(
                    "the guest finished before the stop point: nothing to save to {}",
                    path.display()
                )));
            }
            if args.memory_file || args.memory_mib != 2 {
                vm.save_with_memory(path, args.app_version).map_err(|e| {
                    Failure::Other(format!("cannot save {}: {}", path.display(), chain(&e)))
                })?;
                return Ok(());
            }
            let state = vm.save_microvm().map_err(other("cannot save the vm"))?;
            state.save_to_file(path, args.app_version).map_err(|e| {
                Failure::Other(format!("cannot save {}: {}", path.display(), chain(&e)))
            })?;
            crate::cli_info::write_info(path, args.app_version, &state.host)?;
        }
        Ok(())
    }

    /// `demo-vmm restore FILE`.
    fn restore(path: &Path, eager: bool, oldest: Option<u16>) -> Result<(), Failure> {
        crate::cli_info::report_info(path)?;
        if let Some(oldest) = oldest {
            check_support_window(path, oldest)?;
        }
        let (state, _app_version) = MicrovmState::load_file(path).map_err(|e| {
            if is_unreadable(&e) {
                Failure::Other(chain(&e))
            } else {
                Failure::Refused(format!("{}: {}: {}", path.display(), name(&e), chain(&e)))
            }
        })?;
        if state.memory_source.is_outside() {
            // Guest memory is the memory file beside the snapshot, mapped or read.
            let mode = if eager {
                RestoreMode::Eager
            } else {
                RestoreMode::Lazy
            };
            let mut vm = DemoVm::restore_from_files(path, mode).map_err(|e| {
                let line = format!("{}: {}: {}", path.display(), demo_name(&e), chain(&e));
                match e {
                    // No VM, or a memory file that cannot be read at all: not a refusal.
                    DemoVmError::OpenKvm(_)
                    | DemoVmError::Ioctl { .. }
                    | DemoVmError::GuestMemory { .. }
                    | DemoVmError::Thread { .. }
                    | DemoVmError::EventFd(_) => Failure::Other(line),
                    DemoVmError::State(KvmStateError::Memory(memory))
                        if matches!(*memory, MemoryError::Io { .. }) =>
                    {
                        Failure::Other(line)
                    }
                    _ => Failure::Refused(line),
                }
            })?;
            let output = vm
                .run(StopWhen::Done)
                .map_err(other("the restored guest failed"))?;
            return print_output(&output);
        }
        let mut vm = DemoVm::new().map_err(other("cannot create the vm"))?;
        vm.restore_microvm(&state).map_err(|e| {
            let line = format!("{}: {}: {}", path.display(), demo_name(&e), chain(&e));
            match e {
                DemoVmError::Thread { .. } | DemoVmError::EventFd(_) => Failure::Other(line),
                _ => Failure::Refused(line),
            }
        })?;
        let output = vm
            .run(StopWhen::Done)
            .map_err(other("the restored guest failed"))?;
        print_output(&output)
    }

    /// `demo-vmm expected`.
    fn expected(memory_mib: u64) -> Result<(), Failure> {
        let mut vm = new_vm(memory_mib)?;
        vm.load_guest().map_err(other("cannot load the guest"))?;
        let output = vm.run(StopWhen::Done).map_err(other("the guest failed"))?;
        print_output(&output)
    }

    /// Refuses, before decoding any state, a snapshot whose data version is outside the
    /// support window `oldest..=CURRENT_APP_VERSION` (the library's check, through
    /// `Snapshot::get_data_version` with a map whose window starts at `oldest`).
    fn check_support_window(path: &Path, oldest: u16) -> Result<(), Failure> {
        let mut map = kvm_state::version_map();
        map.set_oldest_supported(oldest)
            .map_err(|e| Failure::Other(format!("--oldest-app-version {oldest}: {e}")))?;
        let (file, _) = snapshot::open_regular_file(path)
            .map_err(|e| Failure::Other(format!("{}: {}", path.display(), chain(&e))))?;
        snapshot::Snapshot::get_data_version(&mut std::io::BufReader::new(file), &map)
            .map(|_| ())
            .map_err(|e| {
                Failure::Refused(format!(
                    "{}: {}: {}",
                    path.display(),
                    match &e {
                        snapshot::SnapshotError::Versionize(inner) => variant_name(inner),
                        other => variant_name(other),
                    },
                    // The snapshot error already says the cause; its source repeats it.
                    e
                ))
            })
    }

    /// A VM with `memory_mib` MiB of guest memory.
    fn new_vm(memory_mib: u64) -> Result<DemoVm, Failure> {
        let size = memory_mib.saturating_mul(1 << 20);
        DemoVm::with_memory_size(size).map_err(other("cannot create the vm"))
    }

    /// This build's name and version as the side file and the migration handshake give it:
    /// the crate version and the newest app version (`demo-vmm 0.1.0 (app version 6)`).
    pub(crate) fn vmm_name() -> String {
        format!(
            "demo-vmm {} (app version {CURRENT_APP_VERSION})",
            env!("CARGO_PKG_VERSION")
        )
    }

    /// `demo-vmm versions`: the app versions of `kvm_state::version_map()`, which this build
    /// both reads and writes.
    fn versions() {
        let all: Vec<String> = (1..=CURRENT_APP_VERSION).map(|v| v.to_string()).collect();
        println!("reads {}", all.join(" "));
        println!("writes {}", all.join(" "));
        println!("current {CURRENT_APP_VERSION}");
    }

    /// Prints a run's output in the stable line format (see the crate docs).
    pub(crate) fn print_output(output: &RunOutput) -> Result<(), Failure> {
        let mut text = String::new();
        for (vcpu, reports) in output.reports.iter().enumerate() {
            for value in reports {
                text.push_str(&format!("vcpu{vcpu} {value:#010x}\n"));
            }
        }
        for payload in &output.virtio {
            text.push_str(&format!("virtio {payload:#010x}\n"));
        }
        if output.finished {
            text.push_str("vm finished\n");
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::Other(format!("cannot write the output: {e}")))
    }

    /// A failure of `what`, with the error's causes.
    pub(crate) fn other(what: &'static str) -> impl FnOnce(DemoVmError) -> Failure {
        move |e| Failure::Other(format!("{what}: {}", chain(&e)))
    }

    /// The error and its causes on one line, joined by `: `. An I/O error whose kind the line
    /// already names is left out, so the cause is stated once.
    pub(crate) fn chain(error: &dyn std::error::Error) -> String {
        let mut line = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let said = cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| line.contains(&io.kind().to_string()));
            if !said {
                line.push_str(": ");
                line.push_str(&cause.to_string());
            }
            source = cause.source();
        }
        line
    }

    /// The name of an error's variant, as its `Debug` output starts with it.
    fn variant_name(error: &dyn std::fmt::Debug) -> String {
        let debug = format!("{error:?}");
        debug
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The name of the innermost `kvm-state` or `snapshot` error variant that says what is
    /// wrong: `ApicId`, `Crc64`, `CpuidNotOffered`, ... (not the `Vcpu` or `Snapshot` wrapper).
    fn name(error: &KvmStateError) -> String {
        match error {
            KvmStateError::Vcpu { source, .. } => name(source),
            KvmStateError::Snapshot { source, .. } => variant_name(source),
            KvmStateError::Memory(source) => variant_name(source),
            other => variant_name(other),
        }
    }

    /// As [`name`], for the demo VMM's errors.
    pub(crate) fn demo_name(error: &DemoVmError) -> String {
        match error {
            DemoVmError::State(e) => name(e),
            other => variant_name(other),
        }
    }

    /// Whether a load failed because the file could not be read at all (a missing file, an I/O
    /// error), rather than because its contents are refused.
    fn is_unreadable(error: &KvmStateError) -> bool {
        matches!(
            error,
            KvmStateError::Snapshot {
                source: snapshot::SnapshotError::Io { .. } | snapshot::SnapshotError::File { .. },
                ..
            }
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> std::process::ExitCode {
    eprintln!("demo-vmm: runs on x86_64 only");
    std::process::ExitCode::from(1)
}
