//! `demo-vmm migrate-to ADDR` and `demo-vmm migrate-from ADDR`: live migration of the demo
//! guest between two processes (two builds) with the `migration` crate's version
//! negotiation, over a Unix socket (`unix:PATH`) or TCP (`tcp:HOST:PORT`).
//!
//! The destination listens and prints `listening <ADDR>` on stderr (with the port chosen when
//! `tcp:HOST:0` was asked); the source runs the guest to the stop point, connects, and both
//! exchange their app-version ranges. On an agreement the source sends the state (without
//! guest memory) at the highest common app version, then guest memory; the destination
//! restores, acks, and resumes on the source's commit, runs the guest to the end and prints the
//! rest of its output. On any failure before the commit (no common version included) the
//! source resumes its own guest and prints the rest of the output itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use demo_vmm::{mid_run, DemoVm, StopWhen, MEM_SIZE};
use kvm_state::{version_map, MicrovmState};
use migration::{Config, Destination, GuestRegions, MigrationError, Source};
use versionize::VersionMap;

use crate::cli::{chain, demo_name, print_output, Failure};

/// How long either end waits for its peer's next bytes before it gives up (the source then
/// resumes its guest).
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Options both migration commands share.
#[derive(Debug, Args)]
pub(crate) struct WindowArgs {
    /// Offer app versions from V on only (default: this build's oldest supported one).
    #[arg(long, value_name = "V")]
    oldest_app_version: Option<u16>,
    /// Offer app versions up to V only (default: this build's newest).
    #[arg(long, value_name = "V")]
    newest_app_version: Option<u16>,
}

/// `demo-vmm migrate-to`.
#[derive(Debug, Args)]
pub(crate) struct MigrateToArgs {
    /// Where the destination listens: `unix:PATH` or `tcp:HOST:PORT`.
    addr: String,
    /// Stop when the vCPUs together have made N reports (default: the `run` default point).
    #[arg(long, value_name = "N")]
    stop_at_report: Option<usize>,
    #[command(flatten)]
    window: WindowArgs,
}

/// `demo-vmm migrate-from`.
#[derive(Debug, Args)]
pub(crate) struct MigrateFromArgs {
    /// Where to listen: `unix:PATH` or `tcp:HOST:PORT` (port 0: any free port).
    addr: String,
    #[command(flatten)]
    window: WindowArgs,
}

/// A connected byte stream, Unix or TCP.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

impl Stream {
    fn set_timeouts(&self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(Some(PEER_TIMEOUT))?;
                s.set_write_timeout(Some(PEER_TIMEOUT))
            }
            Stream::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(PEER_TIMEOUT))?;
                s.set_write_timeout(Some(PEER_TIMEOUT))
            }
        }
    }
}

/// A parsed `unix:PATH` or `tcp:HOST:PORT`.
enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

fn parse_addr(addr: &str) -> Result<Addr, Failure> {
    if let Some(path) = addr.strip_prefix("unix:").filter(|p| !p.is_empty()) {
        Ok(Addr::Unix(PathBuf::from(path)))
    } else if let Some(host_port) = addr.strip_prefix("tcp:").filter(|a| a.contains(':')) {
        Ok(Addr::Tcp(host_port.to_owned()))
    } else {
        Err(Failure::Other(format!(
            "address {addr:?} is neither unix:PATH nor tcp:HOST:PORT"
        )))
    }
}

/// This build's version map, cut to the window asked for on the command line: app versions
/// above `--newest-app-version` left out, `--oldest-app-version` as the oldest supported.
fn window_map(window: &WindowArgs) -> Result<VersionMap, Failure> {
    let full = version_map();
    let latest = full.latest_version();
    let newest = window.newest_app_version.unwrap_or(latest);
    let oldest = window.oldest_app_version.unwrap_or(full.oldest_supported());
    if !(1..=latest).contains(&newest) || !(1..=newest).contains(&oldest) {
        return Err(Failure::Other(format!(
            "app versions {oldest}..={newest} are not a window of this build's 1..={latest}"
        )));
    }
    let mut map = VersionMap::new();
    for app_version in 2..=newest {
        map.new_version()
            .adopt(&full, app_version)
            .map_err(|e| Failure::Other(format!("app version {app_version}: {e}")))?;
    }
    map.set_oldest_supported(oldest)
        .map_err(|e| Failure::Other(format!("app version {oldest}: {e}")))?;
    Ok(map)
}

/// The name this build gives itself in the handshake.
fn config() -> Config {
    Config::new(crate::cli::vmm_name())
}

/// The line a migration failure prints, naming the error variant.
fn migration_failure(error: &MigrationError) -> String {
    let debug = format!("{error:?}");
    let name = debug
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    format!("{name}: {}", chain(error))
}

/// `demo-vmm migrate-to ADDR`: the source.
pub(crate) fn migrate_to(args: &MigrateToArgs) -> Result<(), Failure> {
    let addr = parse_addr(&args.addr)?;
    let map = window_map(&args.window)?;
    let stop_when = match args.stop_at_report {
        Some(n) => StopWhen::Reports(n),
        None => StopWhen::Condition(mid_run),
    };
    let mut vm = DemoVm::new().map_err(crate::cli::other("cannot create the vm"))?;
    vm.load_guest()
        .map_err(crate::cli::other("cannot load the guest"))?;
    let output = vm
        .run(stop_when)
        .map_err(crate::cli::other("the guest failed"))?;
    print_output(&output)?;
    if output.finished {
        return Err(Failure::Other(
            "the guest finished before the stop point: nothing to migrate".into(),
        ));
    }
    let paused = Instant::now();
    match send(&addr, &map, &mut vm) {
        Ok(outcome) => {
            eprintln!(
                "demo-vmm: migrated at app version {}: {} state bytes, {} memory bytes, \
                 downtime {} us (source paused to commit sent; {} us since the vcpus stopped)",
                outcome.app_version,
                outcome.state_bytes,
                outcome.memory_bytes,
                outcome.downtime.as_micros(),
                paused.elapsed().as_micros(),
            );
            Ok(())
        }
        Err(line) => {
            // The guest never left: resume it here and finish.
            eprintln!("demo-vmm: refused: {line}; resuming the guest here");
            let rest = vm
                .run(StopWhen::Done)
                .map_err(crate::cli::other("the resumed guest failed"))?;
            print_output(&rest)?;
            Err(Failure::Quiet(2))
        }
    }
}

/// Connects, negotiates and sends the paused VM; an error line on any failure.
fn send(addr: &Addr, map: &VersionMap, vm: &mut DemoVm) -> Result<migration::Outcome, String> {
    let stream = match addr {
        Addr::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
        Addr::Tcp(host_port) => TcpStream::connect(host_port.as_str()).map(Stream::Tcp),
    }
    .and_then(|s| s.set_timeouts().map(|()| s))
    .map_err(|e| format!("Connect: cannot connect: {e}"))?;
    let mut source =
        Source::handshake(stream, map, &config()).map_err(|e| migration_failure(&e))?;
    eprintln!(
        "demo-vmm: peer {:?} supports app versions {}, agreed on {}",
        source.negotiated().peer.name,
        source.negotiated().peer.app_versions,
        source.negotiated().app_version
    );
    let mut state = vm
        .save_microvm()
        .map_err(|e| format!("{}: {}", demo_name(&e), chain(&e)))?;
    // Memory travels in its own frames, streamed; the state carries the regions' shape.
    let contents: Vec<(u64, Vec<u8>)> = state
        .memory
        .iter_mut()
        .map(|region| (region.guest_phys_addr, std::mem::take(&mut region.contents)))
        .collect();
    let sent = source.send_state(&state).and_then(|()| {
        contents
            .iter()
            .try_for_each(|(addr, bytes)| source.send_memory(*addr, bytes))
    });
    match sent {
        Ok(()) => source.finish().map_err(|e| migration_failure(&e)),
        Err(e) => {
            let line = migration_failure(&e);
            let _ = source.abort(&line);
            Err(line)
        }
    }
}

/// `demo-vmm migrate-from ADDR`: the destination.
pub(crate) fn migrate_from(args: &MigrateFromArgs) -> Result<(), Failure> {
    let addr = parse_addr(&args.addr)?;
    let map = window_map(&args.window)?;
    let stream = accept(&addr)?;
    let mut destination = Destination::handshake(stream, &map, &config())
        .map_err(|e| Failure::Refused(migration_failure(&e)))?;
    eprintln!(
        "demo-vmm: peer {:?} supports app versions {}, agreed on {}",
        destination.negotiated().peer.name,
        destination.negotiated().peer.app_versions,
        destination.negotiated().app_version
    );
    let mut state: MicrovmState = destination
        .recv_state()
        .map_err(|e| Failure::Refused(migration_failure(&e)))?;
    let mut vm = DemoVm::new().map_err(crate::cli::other("cannot create the vm"))?;
    // The regions must be the demo VM's before any memory is allocated for them.
    let layout = vm.layout();
    let fits = state.memory.len() == layout.memory.len()
        && state
            .memory
            .iter()
            .zip(&layout.memory)
            .all(|(saved, ours)| saved.check(ours.guest_phys_addr, ours.size).is_ok());
    if !fits || state.memory.iter().any(|r| r.size > MEM_SIZE as u64) {
        let line = format!(
            "MemoryRegion: the migrated memory regions are not this vm's ({} bytes at 0)",
            MEM_SIZE
        );
        let _ = destination.failed(&line);
        return Err(Failure::Refused(line));
    }
    let mut buffers: Vec<Vec<u8>> = state
        .memory
        .iter()
        .map(|r| vec![0u8; r.size as usize])
        .collect();
    let mut regions: Vec<(u64, &mut [u8])> = state
        .memory
        .iter()
        .zip(buffers.iter_mut())
        .map(|(r, b)| (r.guest_phys_addr, b.as_mut_slice()))
        .collect();
    let stats = destination
        .recv_memory(&mut GuestRegions::new(&mut regions))
        .map_err(|e| Failure::Refused(migration_failure(&e)))?;
    // Every byte of guest memory must have arrived: a region left zeroed would restore a
    // guest whose memory silently differs.
    let expected: u64 = state.memory.iter().map(|r| r.size).sum();
    if stats.bytes != expected {
        let line = format!(
            "MemoryIncomplete: {} bytes of guest memory arrived, the regions hold {expected}",
            stats.bytes
        );
        let _ = destination.failed(&line);
        return Err(Failure::Refused(line));
    }
    for (region, bytes) in state.memory.iter_mut().zip(buffers) {
        region.contents = bytes;
    }
    if let Err(e) = vm.restore_microvm(&state) {
        let line = format!("{}: {}", demo_name(&e), chain(&e));
        let _ = destination.failed(&line);
        return Err(Failure::Refused(line));
    }
    let committed = destination
        .restored()
        .map_err(|e| Failure::Refused(migration_failure(&e)))?;
    match committed.since_source_paused {
        Some(downtime) => eprintln!(
            "demo-vmm: resumed; downtime {} us (source paused to destination running)",
            downtime.as_micros()
        ),
        None => eprintln!("demo-vmm: resumed; downtime unknown (clocks disagree)"),
    }
    let output = vm
        .run(StopWhen::Done)
        .map_err(crate::cli::other("the migrated guest failed"))?;
    print_output(&output)
}

/// Binds `addr`, says where on stderr, and accepts one connection.
fn accept(addr: &Addr) -> Result<Stream, Failure> {
    let bind_failed = |e: std::io::Error| Failure::Other(format!("cannot listen: {e}"));
    let stream = match addr {
        Addr::Unix(path) => {
            let listener = UnixListener::bind(path).map_err(bind_failed)?;
            eprintln!("listening unix:{}", path.display());
            let accepted = listener.accept().map(|(s, _)| Stream::Unix(s));
            let _ = std::fs::remove_file(path);
            accepted
        }
        Addr::Tcp(host_port) => {
            let listener = TcpListener::bind(host_port.as_str()).map_err(bind_failed)?;
            let local = listener.local_addr().map_err(bind_failed)?;
            eprintln!("listening tcp:{local}");
            listener.accept().map(|(s, _)| Stream::Tcp(s))
        }
    }
    .map_err(|e| Failure::Other(format!("cannot accept: {e}")))?;
    stream
        .set_timeouts()
        .map_err(|e| Failure::Other(format!("cannot set socket timeouts: {e}")))?;
    Ok(stream)
}
