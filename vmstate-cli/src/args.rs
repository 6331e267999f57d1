//! The command line: each subcommand lists only the options that apply to it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The text after `--help`'s option list.
pub(crate) const AFTER_HELP: &str = "\
A snapshot file holds a VMM's state in Firecracker's v1 snapshot format: a magic number
naming the CPU architecture and format version, the data version (the app version of the
VMM build that wrote it), the state, and a CRC-64 of everything before it.

Exit status: 0 when the file (or check) is sound and, for diff, when the snapshots are
equal; 1 when it is not, they differ, or a file cannot be read or written; 2 for a bad
command line. Errors are one line on stderr: `<tool>: <what>: <why>`.

A snapshot of a data version this build does not read (a newer build's, or another VMM's)
is read with --schema FILE: the schema export of the build that wrote it, for that data
version (its schema guard's vN.json, or `schema export --version N` in that build).";

/// Inspect, verify, dump, compare and convert snapshot files.
#[derive(Debug, Parser)]
pub(crate) struct CliArgs {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The size cap of the state read.
#[derive(Debug, Args)]
pub(crate) struct SizeArgs {
    /// Refuse snapshots whose state (guest memory included) is larger than this; bytes,
    /// or with a K, M or G suffix (powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "10M", value_parser = parse_size)]
    pub(crate) max_state_size: u64,
}

/// How a snapshot's state is read: with this build's types, or with a schema file.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Decode the state with this schema export (the writing build's, of the file's data
    /// version) instead of this build's types.
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) schema: Option<PathBuf>,
    /// The root type the snapshot holds, as the schema names it (default: this tool's
    /// root type); needs --schema.
    #[arg(long, value_name = "TYPE", requires = "schema")]
    pub(crate) root: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show what a snapshot file says it is and whether this build reads it
    ///
    /// Prints the magic number and the CPU architecture it names, the format and data
    /// versions (and the data versions this build reads), the file and state sizes,
    /// whether the CRC-64 matches, and what the state says of the host it was saved on.
    /// Exits 1 (after printing) if this build cannot read the file.
    Info {
        /// The snapshot file.
        file: PathBuf,
        #[command(flatten)]
        schema: SchemaArgs,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Check that this build can restore a snapshot; exit 0 only if it can
    ///
    /// Loads the whole file as the VMM would before a restore: magic and architecture,
    /// format and data versions, CRC-64, every field of the state, and the VMM's own
    /// checks of the state. With --schema, the state is decoded with the schema instead.
    Verify {
        /// The snapshot file.
        file: PathBuf,
        #[command(flatten)]
        schema: SchemaArgs,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Print the decoded state, as text or JSON
    ///
    /// Every field, by path. 64-bit integers are hexadecimal (in JSON, strings such as
    /// "0x1000", which jq and JavaScript keep exactly); byte strings longer than 1 KiB
    /// (guest memory, XSAVE areas) are summarized as their length and CRC-64 unless
    /// --memory is given.
    Dump {
        /// The snapshot file.
        file: PathBuf,
        /// Print JSON (`{"data_version": N, "root": "...", "state": {...}}`).
        #[arg(long)]
        json: bool,
        /// Print long byte strings (guest memory) in full: a hex dump, or hex in JSON.
        #[arg(long)]
        memory: bool,
        #[command(flatten)]
        schema: SchemaArgs,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// List the field-level differences between two snapshots; exit 1 if there are any
    ///
    /// The snapshots may be of different data versions: fields are matched by name, and a
    /// field only one data version writes shows as absent on the other side. Byte strings
    /// (guest memory) are summarized by differing bytes and 4 KiB pages.
    Diff {
        /// The first (older) snapshot.
        old: PathBuf,
        /// The second (newer) snapshot.
        new: PathBuf,
        /// Decode the snapshots with this schema export; given twice, the first is OLD's
        /// and the second NEW's.
        #[arg(long, value_name = "SCHEMA", num_args = 1, action = clap::ArgAction::Append)]
        schema: Vec<PathBuf>,
        /// The root type the snapshots hold, as the schemas name it (default: this tool's
        /// root type); needs --schema.
        #[arg(long, value_name = "TYPE", requires = "schema")]
        root: Option<String>,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Re-write a snapshot at another data version, e.g. for a rollback to an older build
    ///
    /// An older build reads data versions up to its own app version only. Converting to an
    /// older version drops what it cannot hold; the values that change are listed. OUT is
    /// replaced atomically: it holds either its old contents or the complete new snapshot,
    /// never a torn file. Converting needs this build's types (their defaults and
    /// conversion hooks), so it takes no --schema.
    Convert {
        /// The snapshot file to read.
        file: PathBuf,
        /// The data (app) version to write.
        #[arg(long, value_name = "N")]
        to_version: u16,
        /// Where to write the converted snapshot.
        #[arg(short, long = "output", value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Export this build's state schema, or compare two exports
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// `schema export` and `schema check`.
#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Print the schema of one app version as JSON
    ///
    /// Every state type reachable from the root, the type version the app version maps it
    /// to, and its fields with their types and the versions they exist in. A snapshot of
    /// that app version can be decoded with it, without this build (--schema).
    Export {
        /// The app version to describe (default: the newest this build writes).
        #[arg(long, value_name = "N")]
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
        old: PathBuf,
        /// The export of the newer build.
        new: PathBuf,
    },
}

/// `4096`, `64K`, `10M`, `1G` (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
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

    #[test]
    fn test_cli_definition_is_consistent() {
        use clap::CommandFactory;
        CliArgs::command().debug_assert();
    }
}
