//! `vmstate memory`: the guest memory a snapshot keeps beside its state file (`<state>.mem`).

use std::io::Write;
use std::path::{Path, PathBuf};

use kvm_state::{read_memory_diff_info, verify_memory_file, MemorySource, MicrovmState};
use vmstate_cli::clap::{self, FromArgMatches, Subcommand};

use crate::failure::{BoxError, Failure};

/// The `vmstate memory` command and its subcommands, for `Cli::command`.
pub(crate) fn command() -> clap::Command {
    MemoryCommand::augment_subcommands(
        clap::Command::new("memory")
            .about("Check or combine the memory files beside snapshot files")
            .subcommand_required(true),
    )
}

/// Runs a `vmstate memory` command from its parsed arguments.
pub(crate) fn run_matches(matches: &clap::ArgMatches, out: &mut dyn Write) -> Result<(), BoxError> {
    let command = MemoryCommand::from_arg_matches(matches)?;
    run(out, command).map_err(Into::into)
}

/// Check or combine the memory files beside snapshot files
#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// Check the memory file beside a snapshot against what its state records
    ///
    /// For a full snapshot, reads all of STATE.mem once: its length and the CRC-64 of every
    /// region, the check a lazy restore skips (about one sequential read of the file). For a
    /// diff snapshot, checks that STATE.mem is a sound diff of the layer the state records.
    /// A state with memory inside it needs no memory file (`vmstate verify` checks it).
    Verify {
        /// The snapshot's state file.
        state: PathBuf,
    },
    /// Collapse a full snapshot and diff snapshots on top of it into one full snapshot
    ///
    /// BASE is a full snapshot (state file with a memory file beside it), each DIFF a diff
    /// snapshot taken after the one before it, in order. OUT (and OUT.mem) get the last
    /// diff's state with all of guest memory in one memory file; both are replaced
    /// atomically. A diff on the wrong base or out of order is refused.
    Merge {
        /// The full snapshot at the bottom of the chain.
        base: PathBuf,
        /// The diff snapshots, oldest first.
        #[arg(required = true)]
        diffs: Vec<PathBuf>,
        /// Where to write the merged snapshot.
        #[arg(short, long = "output", value_name = "OUT")]
        output: PathBuf,
    },
}

/// Runs a `vmstate memory` command.
fn run(out: &mut dyn Write, command: MemoryCommand) -> Result<(), Failure> {
    match command {
        MemoryCommand::Verify { state } => verify(out, &state),
        MemoryCommand::Merge {
            base,
            diffs,
            output,
        } => merge(out, &base, &diffs, &output),
    }
}

fn verify(out: &mut dyn Write, path: &Path) -> Result<(), Failure> {
    let (state, _) = MicrovmState::load_file(path)
        .map_err(|e| Failure::new(format!("cannot load {}", path.display())).because(e))?;
    let unsound = |e: kvm_state::KvmStateError| {
        Failure::new(format!("the memory of {} is not sound", path.display())).because(e)
    };
    state.check_memory_source().map_err(unsound)?;
    let file = MicrovmState::memory_file_path(path);
    match &state.memory_source {
        MemorySource::Inline => writeln!(
            out,
            "{}: ok: guest memory is inside the state file (vmstate verify checks it)",
            path.display()
        )?,
        MemorySource::File(descriptor) => {
            verify_memory_file(&file, descriptor).map_err(|e| {
                Failure::new(format!("the memory of {} is not sound", path.display())).because(e)
            })?;
            writeln!(
                out,
                "{}: ok: {} region(s) of {} bytes, every crc64 matches, layer {}",
                file.display(),
                descriptor.regions.len(),
                descriptor.memory_size(),
                descriptor.layer
            )?;
        }
        MemorySource::Diff(layer) => {
            let info = read_memory_diff_info(&file).map_err(|e| {
                Failure::new(format!("the memory of {} is not sound", path.display())).because(e)
            })?;
            if info.layer != *layer {
                return Err(
                    Failure::new(format!("the memory of {} is not sound", path.display())).because(
                        format!(
                            "the state records memory layer {layer}, {} is layer {}",
                            file.display(),
                            info.layer
                        ),
                    ),
                );
            }
            writeln!(
                out,
                "{}: ok: diff of {} page(s) on layer {}, layer {}",
                file.display(),
                info.dirty_pages,
                info.base,
                info.layer
            )?;
        }
    }
    Ok(())
}

fn merge(
    out: &mut dyn Write,
    base: &Path,
    diffs: &[PathBuf],
    output: &Path,
) -> Result<(), Failure> {
    let state = MicrovmState::merge_diff_snapshots(base, diffs, output)
        .map_err(|e| Failure::new(format!("cannot merge into {}", output.display())).because(e))?;
    let MemorySource::File(descriptor) = &state.memory_source else {
        return Err(Failure::new("the merged state has no memory file"));
    };
    writeln!(
        out,
        "{}: {} diff(s) merged into {} bytes of guest memory, layer {}",
        output.display(),
        diffs.len(),
        descriptor.memory_size(),
        descriptor.layer
    )?;
    Ok(())
}
