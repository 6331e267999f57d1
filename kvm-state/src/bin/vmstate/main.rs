//! `vmstate`: inspect, verify, dump and convert microVM snapshot files, and export or compare
//! the state schema of this build.
//!
//! Every failure is one line on stderr, `vmstate: <what failed>: <why>`, and a non-zero exit
//! code: 1 for a bad file or a failed check, 2 for a bad command line. Run `vmstate --help`.

#[cfg(target_arch = "x86_64")]
mod commands;
mod failure;
#[cfg(target_arch = "x86_64")]
mod memory;
#[cfg(target_arch = "x86_64")]
mod render;
#[cfg(target_arch = "x86_64")]
mod text;

use std::io::Write;
use std::process::ExitCode;

#[cfg(target_arch = "x86_64")]
use clap::{Parser, Subcommand};

use crate::failure::Failure;

/// Exit code of a bad file, a failed check or an i/o error.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a bad command line.
const EXIT_USAGE: u8 = 2;

#[cfg(target_arch = "x86_64")]
const AFTER_HELP: &str = "\
A snapshot file holds the complete state of a paused microVM (vCPUs, interrupt controllers,
clocks, devices and guest memory) in Firecracker's v1 snapshot format: a magic number naming
the CPU architecture and format version, the data version (the app version of the VMM build
that wrote it), the state, and a CRC-64 of everything before it.

Exit status: 0 when the file (or check) is sound, 1 when it is not or a file cannot be read
or written, 2 for a bad command line. Errors are one line on stderr: `vmstate: <what>: <why>`.

Examples:
  vmstate info vm.snap                           what the file says it is, without decoding it
  vmstate verify vm.snap                         will this build restore it?
  vmstate dump vm.snap --json | jq .state.vcpus[0].regs
  vmstate convert vm.snap --to-version 1 -o vm-v1.snap   for a rollback to an older build
  vmstate schema export --version 1 > v1.json";

/// Inspect, verify, dump and convert microVM snapshot files.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Parser)]
#[command(name = "vmstate", version, after_help = AFTER_HELP)]
struct Cli {
    /// Refuse snapshots whose state (guest memory included) is larger than this; bytes, or
    /// with a K, M or G suffix (powers of 1024).
    #[arg(
        long,
        global = true,
        value_name = "SIZE",
        default_value = "10M",
        value_parser = parse_size
    )]
    max_state_size: u64,

    #[command(subcommand)]
    command: Command,
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a snapshot file says it is, without decoding the state
    ///
    /// Prints the magic number and the CPU architecture it names, the format and data
    /// versions, the file and state sizes, and whether the CRC-64 matches. Exits 1 (after
    /// printing) if the container is unsound: another architecture, a version this build
    /// does not read, or a CRC mismatch.
    Info {
        /// The snapshot file.
        file: std::path::PathBuf,
    },
    /// Check that this build can restore a snapshot; exit 0 only if it can
    ///
    /// Loads the whole file as the VMM would before a restore: magic and architecture,
    /// format and data versions, CRC-64, every field of the state, and guest memory regions
    /// whose contents match their size.
    Verify {
        /// The snapshot file.
        file: std::path::PathBuf,
    },
    /// Print the decoded microVM state, as text or JSON
    ///
    /// vCPUs (registers, LAPIC, MSRs, CPUID, events), the VM (PIC, IOAPIC, PIT, clock),
    /// devices and guest memory regions. Guest memory is summarized as its length and CRC-64
    /// per region unless --memory is given.
    Dump {
        /// The snapshot file.
        file: std::path::PathBuf,
        /// Print JSON (`{"data_version": N, "state": {...}}`) instead of text.
        #[arg(long)]
        json: bool,
        /// Also print guest memory contents (a hex dump, or a hex string in JSON).
        #[arg(long)]
        memory: bool,
    },
    /// Re-write a snapshot at another data version, e.g. for a rollback to an older build
    ///
    /// An older VMM build reads data versions up to its own app version only. Converting to
    /// an older version drops what it cannot hold; the values that change are listed. OUT is
    /// replaced atomically: it holds either its old contents or the complete new snapshot,
    /// never a torn file.
    Convert {
        /// The snapshot file to read.
        file: std::path::PathBuf,
        /// The data (app) version to write.
        #[arg(long, value_name = "N", value_parser = app_version_parser())]
        to_version: u16,
        /// Where to write the converted snapshot.
        #[arg(short, long = "output", value_name = "OUT")]
        output: std::path::PathBuf,
    },
    /// Export this build's state schema, or compare two exports
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Check or merge the guest memory files beside snapshot files
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Print the schema of one app version as JSON
    ///
    /// Every state type reachable from the microVM state, the type version the app version
    /// maps it to, and its fields with their types and the versions they exist in.
    Export {
        /// The app version to describe (default: the newest this build writes).
        #[arg(long, value_name = "N", value_parser = app_version_parser())]
        version: Option<u16>,
    },
    /// Compare two schema exports of one app version; exit 1 if they differ
    ///
    /// OLD is typically the export of the released build and NEW that of this one, both of
    /// the same app version (exports of different app versions are refused). Lists, by
    /// type and field path, every change that would make one build misread the other's
    /// snapshots: a field added, removed, retyped or reordered without a version bump, a
    /// variant removed or renumbered, a type version lowered, or an app version mapped to
    /// another type version.
    Check {
        /// The export of the older (released) build.
        old: std::path::PathBuf,
        /// The export of the newer build.
        new: std::path::PathBuf,
    },
}

/// Accepts the app versions of this build's version map only.
#[cfg(target_arch = "x86_64")]
fn app_version_parser() -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..=i64::from(kvm_state::CURRENT_APP_VERSION))
}

/// `4096`, `64K`, `10M`, `1G` (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (bytes, or a number with K, M or G)"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(target_arch = "x86_64")]
fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let max = cli.max_state_size;
    match cli.command {
        Command::Info { file } => commands::info(out, &file, max),
        Command::Verify { file } => commands::verify(out, &file, max),
        Command::Dump { file, json, memory } => commands::dump(out, &file, max, json, memory),
        Command::Convert {
            file,
            to_version,
            output,
        } => commands::convert(out, &file, to_version, &output, max),
        Command::Schema(SchemaCommand::Export { version }) => commands::schema_export(out, version),
        Command::Schema(SchemaCommand::Check { old, new }) => {
            commands::schema_check(out, &old, &new)
        }
        Command::Memory(command) => memory::run(out, command),
    }
}

/// A command-line error as one line (clap's own text spans several).
#[cfg(target_arch = "x86_64")]
fn usage_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let first_paragraph: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = first_paragraph.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see vmstate --help)")
}

#[cfg(target_arch = "x86_64")]
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            return match err.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(EXIT_FAILURE),
            };
        }
        Err(err)
            if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // `vmstate` alone: the help, on stderr.
            let _ = err.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(err) => {
            report(&Failure::new(usage_line(&err)));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Whatever was printed before the failure belongs before the error line.
            let _ = out.flush();
            if !failure.broken_pipe {
                report(&failure);
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> ExitCode {
    let _ = parse_size;
    report(&Failure::new(
        "this build reads x86_64 snapshots only, and this host is not x86_64",
    ));
    ExitCode::from(EXIT_FAILURE)
}

fn report(failure: &Failure) {
    // Nothing is left to do if stderr is gone too.
    let _ = writeln!(std::io::stderr(), "vmstate: {failure}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_size_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn test_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
