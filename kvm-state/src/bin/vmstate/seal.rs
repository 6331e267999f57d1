//! `vmstate keygen|seal|unseal|verify-sealed`: sealed snapshots (`snapshot`'s sealing), the
//! state file and the memory file beside it (`<state>.mem`) sealed together under one key.
//!
//! Plain Firecracker-v1 files stay the default: sealing is a separate step an operator (or a
//! VMM) takes on a saved snapshot, and `unseal` gives back the exact plain files.

use std::io::Write;
use std::path::{Path, PathBuf};

use kvm_state::MicrovmState;
use snapshot::{
    open_snapshot_files, peek_sealed_header, seal_snapshot_files, verify_sealed_file,
    SealAlgorithm, SealKey, SealOptions, SnapshotFile,
};
use vmstate_cli::clap::{self, Arg, ArgMatches};

use crate::failure::{BoxError, Failure};

/// The label of the memory file in a sealed snapshot's header.
const MEMORY_LABEL: &str = "memory";

/// The label of the state file.
const STATE_LABEL: &str = "state";

/// Largest state file `unseal` reads (the sealed file's payload is held in memory to be
/// checked before a byte is written).
const MAX_STATE_LEN: u64 = 1 << 30;

/// `error` about the file at `path`, naming the path once: errors that already name their
/// file (opening or reading it) as they are, the others prefixed with the path.
fn at(path: &Path, error: snapshot::SnapshotError) -> BoxError {
    match error {
        named @ (snapshot::SnapshotError::File { .. }
        | snapshot::SnapshotError::NotRegularFile { .. }
        | snapshot::SnapshotError::KeyFile { .. }) => named.into(),
        other => Failure::new(path.display().to_string())
            .because(other)
            .into(),
    }
}

fn key_arg() -> Arg {
    Arg::new("key")
        .long("key")
        .value_name("KEYFILE")
        .required(true)
        .value_parser(clap::value_parser!(PathBuf))
        .help("The key file: 32 random bytes, raw or as 64 hex digits, readable by its owner only")
}

fn path_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .required(true)
        .value_parser(clap::value_parser!(PathBuf))
        .help(help)
}

fn output_arg() -> Arg {
    Arg::new("output")
        .short('o')
        .long("output")
        .value_name("OUT")
        .required(true)
        .value_parser(clap::value_parser!(PathBuf))
        .help("Where to write (OUT, and OUT.mem when the snapshot has a memory file)")
}

fn path(matches: &ArgMatches, name: &str) -> Result<PathBuf, BoxError> {
    matches
        .get_one::<PathBuf>(name)
        .cloned()
        .ok_or_else(|| Failure::new(format!("missing {name}")).into())
}

/// `vmstate keygen KEYFILE`.
pub(crate) fn keygen_command() -> clap::Command {
    clap::Command::new("keygen")
        .about("Write a new random sealing key to a new file (mode 0600, never overwritten)")
        .arg(path_arg("keyfile", "The key file to create"))
}

/// Runs `vmstate keygen`.
pub(crate) fn keygen(matches: &ArgMatches, out: &mut dyn Write) -> Result<(), BoxError> {
    let keyfile = path(matches, "keyfile")?;
    let key =
        SealKey::generate().map_err(|e| Failure::new("cannot draw a random key").because(e))?;
    key.write_key_file(&keyfile)?;
    writeln!(out, "{}: new key {}", keyfile.display(), key.id())?;
    Ok(())
}

/// `vmstate seal --key KEYFILE [--algorithm NAME] STATE -o OUT`.
pub(crate) fn seal_command() -> clap::Command {
    let names: Vec<&'static str> = SealAlgorithm::ALL.iter().map(|a| a.name()).collect();
    clap::Command::new("seal")
        .about("Seal a snapshot (its state file and memory file) under a key")
        .long_about(
            "Seal a snapshot (its state file and memory file) under a key\n\n\
             Writes OUT (and OUT.mem when STATE.mem exists): every byte authenticated with a \
             MAC, and encrypted unless the algorithm is hmac-sha256. The sealed state lists \
             the sealed memory file, so the two are only ever opened together. The plain \
             files are left as they are.",
        )
        .arg(key_arg())
        .arg(
            Arg::new("algorithm")
                .long("algorithm")
                .value_name("NAME")
                .value_parser(clap::builder::PossibleValuesParser::new(names))
                .help("hmac-sha256 (authenticate only) or an AEAD; default: the fastest AEAD here"),
        )
        .arg(path_arg("state", "The snapshot's state file"))
        .arg(output_arg())
}

/// Runs `vmstate seal`.
pub(crate) fn seal(matches: &ArgMatches, out: &mut dyn Write) -> Result<(), BoxError> {
    let key = SealKey::from_key_file(path(matches, "key")?)?;
    let algorithm = match matches.get_one::<String>("algorithm") {
        Some(name) => SealAlgorithm::from_name(name)
            .ok_or_else(|| Failure::new(format!("unknown algorithm {name}")))?,
        None => SealAlgorithm::preferred_encryption(),
    };
    let state = path(matches, "state")?;
    let output = path(matches, "output")?;
    let memory = MicrovmState::memory_file_path(&state);
    let memory_out = MicrovmState::memory_file_path(&output);
    let companions: Vec<SnapshotFile<'_>> = if memory.exists() {
        vec![SnapshotFile {
            label: MEMORY_LABEL,
            source: &memory,
            dest: &memory_out,
        }]
    } else {
        Vec::new()
    };
    let sealed = seal_snapshot_files(
        &key,
        &SealOptions::new(algorithm),
        SnapshotFile {
            label: STATE_LABEL,
            source: &state,
            dest: &output,
        },
        &companions,
    )
    .map_err(|e| at(&state, e))?;
    writeln!(
        out,
        "{}: sealed with {} under key {}, file {}{}",
        output.display(),
        algorithm.name(),
        key.id(),
        sealed.file_id,
        if companions.is_empty() {
            String::new()
        } else {
            format!(", with {}", memory_out.display())
        }
    )?;
    Ok(())
}

/// `vmstate unseal --key KEYFILE SEALED -o OUT`.
pub(crate) fn unseal_command() -> clap::Command {
    clap::Command::new("unseal")
        .about("Check and open a sealed snapshot into plain files")
        .long_about(
            "Check and open a sealed snapshot into plain files\n\n\
             Every byte of SEALED (and SEALED.mem when the sealed state lists a memory file) \
             is checked before its plain bytes are written to OUT (and OUT.mem); a tampered, \
             truncated, reordered or foreign file, or a wrong key, is refused and nothing is \
             left behind.",
        )
        .arg(key_arg())
        .arg(path_arg("sealed", "The sealed state file"))
        .arg(output_arg())
}

/// The memory file beside a sealed state, if the state lists one.
fn listed_memory(sealed: &Path) -> Result<Option<PathBuf>, BoxError> {
    let (file, _) = snapshot::open_regular_file(sealed).map_err(|e| at(sealed, e))?;
    // Unauthenticated: only to learn which files to give; the open checks them all.
    let header = peek_sealed_header(std::io::BufReader::new(file)).map_err(|e| at(sealed, e))?;
    Ok(header
        .companion(MEMORY_LABEL)
        .map(|_| MicrovmState::memory_file_path(sealed)))
}

/// Runs `vmstate unseal`.
pub(crate) fn unseal(matches: &ArgMatches, out: &mut dyn Write) -> Result<(), BoxError> {
    let key = SealKey::from_key_file(path(matches, "key")?)?;
    let sealed = path(matches, "sealed")?;
    let output = path(matches, "output")?;
    let memory_out = MicrovmState::memory_file_path(&output);
    let memory = listed_memory(&sealed)?;
    let companions: Vec<SnapshotFile<'_>> = memory
        .as_deref()
        .map(|source| SnapshotFile {
            label: MEMORY_LABEL,
            source,
            dest: &memory_out,
        })
        .into_iter()
        .collect();
    let header = open_snapshot_files(
        &key,
        SnapshotFile {
            label: STATE_LABEL,
            source: &sealed,
            dest: &output,
        },
        &companions,
        MAX_STATE_LEN,
        None,
    )
    .map_err(|e| at(&sealed, e))?;
    writeln!(
        out,
        "{}: opened ({}, key {}){}",
        output.display(),
        header.algorithm.name(),
        header.key_id,
        if companions.is_empty() {
            String::new()
        } else {
            format!(", with {}", memory_out.display())
        }
    )?;
    Ok(())
}

/// `vmstate verify-sealed --key KEYFILE SEALED`.
pub(crate) fn verify_command() -> clap::Command {
    clap::Command::new("verify-sealed")
        .about("Check every byte of a sealed snapshot under a key, writing nothing")
        .arg(key_arg())
        .arg(path_arg("sealed", "The sealed state file"))
}

/// Runs `vmstate verify-sealed`.
pub(crate) fn verify(matches: &ArgMatches, out: &mut dyn Write) -> Result<(), BoxError> {
    let key = SealKey::from_key_file(path(matches, "key")?)?;
    let sealed = path(matches, "sealed")?;
    let header = verify_sealed_file(&key, &sealed, None).map_err(|e| at(&sealed, e))?;
    for listed in &header.companions {
        if listed.label != MEMORY_LABEL {
            return Err(Failure::new(format!(
                "{} lists a file labelled {}, which vmstate does not know",
                sealed.display(),
                listed.label
            ))
            .into());
        }
        let memory = MicrovmState::memory_file_path(&sealed);
        verify_sealed_file(&key, &memory, Some(listed)).map_err(|e| at(&memory, e))?;
    }
    writeln!(
        out,
        "{}: ok: sealed with {} under key {}, {} byte(s) of state{}",
        sealed.display(),
        header.algorithm.name(),
        header.key_id,
        header.payload_len,
        match header.companion(MEMORY_LABEL) {
            Some(memory) => format!(", {} byte(s) of memory", memory.payload_len),
            None => String::new(),
        }
    )?;
    Ok(())
}
