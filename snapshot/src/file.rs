//! Snapshot files: atomic save and load without a length argument.
//!
//! Saving writes a temporary file in the target's directory, flushes and fsyncs it, renames
//! it over the target and fsyncs the directory. A failure at any step removes the temporary
//! file and leaves the previous target untouched, so a crash leaves either the old or the
//! new snapshot, never a torn one.

use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use versionize::{VersionMap, Versionize};

use crate::snapshot::{LoadOptions, Snapshot};
use crate::{Result, SnapshotError};

/// The steps of an atomic save, in order. Used to inject faults in tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveStep {
    /// Creating the temporary file.
    CreateTemp,
    /// Writing the snapshot into it (checked before writing).
    Write,
    /// Flushing and fsyncing it.
    SyncFile,
    /// Renaming it over the target.
    Rename,
    /// Fsyncing the directory.
    SyncDir,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Attempts at a fresh temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// A temporary name next to `target`: `.<name>.<pid>.<random>.tmp`. The random part (from
/// the standard library's per-process hash keys, the clock and a counter) keeps a stale file
/// left by a crashed process that had the same pid (pid 1 in containers) from colliding.
fn temp_path(target: &Path) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        SnapshotError::file(
            "save to",
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{:016x}.tmp",
        std::process::id(),
        hasher.finish()
    ));
    Ok(target.with_file_name(temp_name))
}

/// Creates a new temporary file next to `target`, trying other names if one exists.
fn create_temp(target: &Path) -> Result<(PathBuf, File)> {
    let mut attempt = 0;
    loop {
        let temp = temp_path(target)?;
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < TEMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(SnapshotError::file("create temporary file", &temp, e)),
        }
    }
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes a file atomically; `fault` is asked before each step and may fail it.
#[doc(hidden)]
pub fn atomic_write_with_faults(
    target: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    fault: &mut dyn FnMut(SaveStep) -> io::Result<()>,
) -> Result<()> {
    fault(SaveStep::CreateTemp)
        .map_err(|e| SnapshotError::file("create temporary file", target, e))?;
    let (temp, file) = create_temp(target)?;

    let result = (|| {
        let mut writer = BufWriter::new(file);
        fault(SaveStep::Write).map_err(|e| SnapshotError::file("write", &temp, e))?;
        write(&mut writer)?;
        fault(SaveStep::SyncFile).map_err(|e| SnapshotError::file("sync", &temp, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| SnapshotError::file("write", &temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| SnapshotError::file("sync", &temp, e))?;
        drop(file);
        fault(SaveStep::Rename).map_err(|e| SnapshotError::file("rename", target, e))?;
        fs::rename(&temp, target).map_err(|e| SnapshotError::file("rename", target, e))
    })();
    if let Err(err) = result {
        // Best effort: the error that matters is the one already in hand.
        let _ = fs::remove_file(&temp);
        return Err(err);
    }

    // The rename is in place; make it durable. A failure here is reported, but the target
    // already holds the complete new snapshot.
    let dir = parent_dir(target);
    fault(SaveStep::SyncDir).map_err(|e| SnapshotError::file("sync directory", dir, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::file("sync directory", dir, e))
}

impl Snapshot {
    /// Saves `object` with a CRC to `path`, atomically.
    ///
    /// # Errors
    /// [`SnapshotError::File`] naming the step that failed, or any error of
    /// [`save`](Self::save). The previous file at `path`, if any, is intact on error.
    pub fn save_to_file<O: Versionize + Debug>(
        &mut self,
        path: impl AsRef<Path>,
        object: &O,
    ) -> Result<()> {
        self.save_to_file_with_faults(path.as_ref(), object, &mut |_| Ok(()))
    }

    /// [`save_to_file`](Self::save_to_file) with a fault injected before chosen steps.
    #[doc(hidden)]
    pub fn save_to_file_with_faults<O: Versionize + Debug>(
        &mut self,
        path: &Path,
        object: &O,
        fault: &mut dyn FnMut(SaveStep) -> io::Result<()>,
    ) -> Result<()> {
        atomic_write_with_faults(
            path,
            &mut |mut writer| self.save(&mut writer, object),
            fault,
        )
    }

    /// Loads a snapshot file, checking its CRC, with the default [`LoadOptions`].
    ///
    /// # Errors
    /// [`SnapshotError::File`] when the path cannot be opened or is not a regular file, or
    /// any error of [`load_with`](Self::load_with).
    pub fn load_file<O: Versionize>(
        path: impl AsRef<Path>,
        version_map: VersionMap,
    ) -> Result<(O, u16)> {
        Self::load_file_with(path, version_map, &LoadOptions::default())
    }

    /// Loads a snapshot file with `options`.
    ///
    /// # Errors
    /// As [`load_file`](Self::load_file).
    pub fn load_file_with<O: Versionize>(
        path: impl AsRef<Path>,
        version_map: VersionMap,
        options: &LoadOptions,
    ) -> Result<(O, u16)> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| SnapshotError::file("open", path, e))?;
        let metadata = file
            .metadata()
            .map_err(|e| SnapshotError::file("stat", path, e))?;
        if !metadata.is_file() {
            return Err(SnapshotError::file(
                "open",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let len = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
        let mut reader = io::BufReader::new(file);
        Self::load_with(&mut reader, len, version_map, options)
    }
}
