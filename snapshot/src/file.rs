//! Snapshot files: opening for reading without blocking on special files, and atomic save.
//!
//! Reading: [`open_regular_file`] stats the path, opens it with `O_NONBLOCK` (so a FIFO
//! cannot hang the open), checks with `fstat` that the opened file is a regular file, and
//! only then clears `O_NONBLOCK`. Every path-taking reader of this crate (and `vmstate`)
//! goes through it.
//!
//! Saving: the target must be absent or a regular file; a symbolic link is followed and the
//! file it names is replaced (the link stays). The new contents are written to an unnamed
//! `O_TMPFILE` in the target's directory, flushed and fsynced, then linked into place
//! (straight onto the target name if it is free, else onto a temporary name that is renamed
//! over the target) and the directory is fsynced. A failure at any step leaves the previous
//! target untouched, so a crash leaves either the old or the new snapshot, never a torn one.
//! A process killed while writing leaves nothing behind: the unnamed file dies with it.
//! Where `O_TMPFILE` is not supported, or the unnamed file cannot be linked (no `/proc`),
//! the file is written under a temporary name instead, which is removed on error or panic; temporary names left by writers that were killed (their pid no
//! longer runs) are removed by the next save to the same target.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fmt::Debug;
use std::fs::{self, File, FileType, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
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
    /// Linking or renaming it over the target.
    Rename,
    /// Fsyncing the directory.
    SyncDir,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Attempts at a fresh temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// Bytes of the target's name kept in a temporary name. With the dot, pid, random part and
/// suffix (at most 33 bytes) a temporary name stays within the 255 bytes file systems allow
/// whatever the length of the target's name.
const TEMP_STEM_MAX: usize = 200;

/// Suffix of every temporary name.
const TEMP_SUFFIX: &[u8] = b".tmp";

/// Hex digits of the random part of a temporary name.
const TEMP_RANDOM_DIGITS: usize = 16;

/// What a file type is called in errors.
fn kind_of(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn require_regular(step: &'static str, path: &Path, file_type: FileType) -> Result<()> {
    if file_type.is_file() {
        Ok(())
    } else {
        Err(SnapshotError::NotRegularFile {
            step,
            path: path.to_path_buf(),
            found: kind_of(file_type),
        })
    }
}

/// Opens `path` for reading if it is a regular file, and returns it with its length.
///
/// Never blocks on a FIFO and never opens a device: the path is stat'ed first, then opened
/// with `O_NONBLOCK` and checked again with `fstat` on the open file (so a path swapped in
/// between is caught too); `O_NONBLOCK` is cleared before the file is returned.
///
/// # Errors
/// [`SnapshotError::NotRegularFile`] for anything but a regular file (a symbolic link to
/// a regular file is fine), [`SnapshotError::File`] when the path cannot be stat'ed or
/// opened.
pub fn open_regular_file(path: impl AsRef<Path>) -> Result<(File, u64)> {
    let path = path.as_ref();
    let metadata = fs::metadata(path).map_err(|e| SnapshotError::file("open", path, e))?;
    require_regular("open", path, metadata.file_type())?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(|e| SnapshotError::file("open", path, e))?;
    let metadata = file
        .metadata()
        .map_err(|e| SnapshotError::file("stat", path, e))?;
    require_regular("open", path, metadata.file_type())?;
    rustix::fs::fcntl_getfl(&file)
        .and_then(|flags| rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK))
        .map_err(|e| SnapshotError::file("open", path, e.into()))?;
    Ok((file, metadata.len()))
}

/// Reads a whole regular file of at most `max_len` bytes, through [`open_regular_file`].
///
/// # Errors
/// As [`open_regular_file`], [`SnapshotError::FileTooLarge`] above `max_len` (checked
/// before reading, and again while reading a file that grows), [`SnapshotError::File`] when
/// reading fails.
pub fn read_regular_file(path: impl AsRef<Path>, max_len: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let (file, len) = open_regular_file(path)?;
    let too_large = |len| SnapshotError::FileTooLarge {
        path: path.to_path_buf(),
        len,
        limit: max_len,
    };
    if len > max_len {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| SnapshotError::file("read", path, e))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > max_len {
        return Err(too_large(read));
    }
    Ok(bytes)
}

/// The file a save to `target` replaces: `target` itself, or the file a symbolic link
/// names. Refuses anything that exists and is not a regular file, and dangling links.
fn resolve_target(target: &Path) -> Result<PathBuf> {
    if target.file_name().is_none() {
        return Err(SnapshotError::file(
            "save to",
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    }
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(target.to_path_buf()),
        // Whatever is wrong (a file in place of a directory, ...) creating the file says.
        Err(_) => Ok(target.to_path_buf()),
        Ok(metadata) if metadata.file_type().is_symlink() => {
            let resolved = fs::canonicalize(target)
                .map_err(|e| SnapshotError::file("follow symbolic link", target, e))?;
            let metadata = fs::metadata(&resolved)
                .map_err(|e| SnapshotError::file("follow symbolic link", target, e))?;
            require_regular("save to", target, metadata.file_type())?;
            Ok(resolved)
        }
        Ok(metadata) => {
            require_regular("save to", target, metadata.file_type())?;
            Ok(target.to_path_buf())
        }
    }
}

/// The part of the target's name that starts its temporary names.
fn temp_stem(name: &OsStr) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(TEMP_STEM_MAX)]
}

/// A temporary name next to `target`: `.<name>.<pid>.<random>.tmp`, `<name>` cut to
/// [`TEMP_STEM_MAX`] bytes. The random part (from the standard library's per-process hash
/// keys, the clock and a counter) keeps a stale file left by a crashed process that had the
/// same pid (pid 1 in containers) from colliding.
fn temp_path(target: &Path, name: &OsStr) -> PathBuf {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    let mut temp = b".".to_vec();
    temp.extend_from_slice(temp_stem(name));
    temp.extend_from_slice(
        format!(
            ".{}.{:0width$x}",
            std::process::id(),
            hasher.finish(),
            width = TEMP_RANDOM_DIGITS
        )
        .as_bytes(),
    );
    temp.extend_from_slice(TEMP_SUFFIX);
    target.with_file_name(OsString::from_vec(temp))
}

/// The pid in `entry` if it is a temporary name of a save to a target named `name`.
fn temp_name_pid(entry: &[u8], name: &OsStr) -> Option<u32> {
    let rest = entry.strip_prefix(b".")?.strip_prefix(temp_stem(name))?;
    let rest = rest.strip_prefix(b".")?.strip_suffix(TEMP_SUFFIX)?;
    let (pid, random) = rest.split_at(rest.iter().position(|&b| b == b'.')?);
    let random = &random[1..];
    if random.len() != TEMP_RANDOM_DIGITS || !random.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Whether no process with `pid` runs (in this pid namespace).
fn process_is_gone(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// Removes the temporary files of saves to `target` whose writer was killed. Best effort:
/// a file that cannot be removed is left for the next save.
fn remove_stale_temps(target: &Path) {
    let Some(name) = target.file_name() else {
        return;
    };
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = temp_name_pid(entry.file_name().as_bytes(), name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && pid != std::process::id() && process_is_gone(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A named temporary file, removed when dropped (on error or panic) unless kept.
struct NamedTemp {
    path: PathBuf,
    keep: bool,
}

impl Drop for NamedTemp {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the error that matters is the one already in hand.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a new file under a temporary name next to `target`, trying other names if one
/// exists.
fn create_named_temp(target: &Path, name: &OsStr) -> Result<(NamedTemp, File)> {
    let mut attempt = 0;
    loop {
        let path = temp_path(target, name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((NamedTemp { path, keep: false }, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < TEMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(SnapshotError::file("create temporary file", target, e)),
        }
    }
}

/// Which temporary files may be tried (tests force the fallbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TempKind {
    /// An unnamed file where possible, else a named one.
    Any,
    /// A named file only (file systems without `O_TMPFILE`).
    #[cfg(test)]
    NamedOnly,
    /// An unnamed file whose link fails (no `/proc`): the save starts again, named.
    #[cfg(test)]
    UnlinkableUnnamed,
}

/// Where an open file descriptor can be named for `linkat`.
const PROC_FD_DIR: &str = "/proc/self/fd";

/// An unnamed file in `dir`, if the file system and `/proc` support linking one in later.
fn create_unnamed_temp(dir: &Path) -> Option<File> {
    if !Path::new(PROC_FD_DIR).is_dir() {
        return None;
    }
    rustix::fs::open(
        dir,
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o666),
    )
    .ok()
    .map(File::from)
}

/// Links the unnamed `file` in as `target`: straight onto the name if it is free, else
/// under a temporary name renamed over it. `Ok(false)` when this system cannot link an
/// unnamed file through `proc_fd_dir` at all (the caller falls back to a named file).
fn link_unnamed(file: &File, proc_fd_dir: &str, target: &Path, name: &OsStr) -> Result<bool> {
    let proc_path = format!("{proc_fd_dir}/{}", file.as_raw_fd());
    let link = |to: &Path| rustix::fs::linkat(CWD, &*proc_path, CWD, to, AtFlags::SYMLINK_FOLLOW);
    match link(target) {
        Ok(()) => return Ok(true),
        // The link itself works (the kernel resolves the source first): the name is taken.
        Err(rustix::io::Errno::EXIST) => {}
        Err(_) => return Ok(false),
    }
    let mut attempt = 0;
    let temp = loop {
        let path = temp_path(target, name);
        match link(&path) {
            Ok(()) => break NamedTemp { path, keep: false },
            Err(rustix::io::Errno::EXIST) if attempt + 1 < TEMP_ATTEMPTS => attempt += 1,
            Err(e) => return Err(SnapshotError::file("link", target, e.into())),
        }
    };
    rename_into_place(temp, target)?;
    Ok(true)
}

fn rename_into_place(mut temp: NamedTemp, target: &Path) -> Result<()> {
    fs::rename(&temp.path, target).map_err(|e| SnapshotError::file("rename", target, e))?;
    temp.keep = true;
    Ok(())
}

/// A file writer that remembers the first error of the file itself, so that a failed
/// write is reported as a failure of the file (step and path) rather than of the encoder.
struct Recording {
    file: File,
    error: Option<(io::ErrorKind, Option<i32>)>,
}

impl Recording {
    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            if self.error.is_none() && e.kind() != io::ErrorKind::Interrupted {
                self.error = Some((e.kind(), e.raw_os_error()));
            }
        }
        result
    }

    /// The first error of the file, rebuilt (an `io::Error` cannot be cloned).
    fn take_error(&mut self) -> Option<io::Error> {
        self.error.take().map(|(kind, code)| match code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::from(kind),
        })
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.file.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.file.flush();
        self.note(result)
    }
}

/// Writes a file atomically; `fault` is asked before each step and may fail it.
#[doc(hidden)]
pub fn atomic_write_with_faults(
    target: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    fault: &mut dyn FnMut(SaveStep) -> io::Result<()>,
) -> Result<()> {
    atomic_write(target, write, fault, TempKind::Any)
}

fn atomic_write(
    target: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    fault: &mut dyn FnMut(SaveStep) -> io::Result<()>,
    kind: TempKind,
) -> Result<()> {
    let target = &resolve_target(target)?;
    let name = target.file_name().unwrap_or_default();
    let dir = parent_dir(target);
    fault(SaveStep::CreateTemp)
        .map_err(|e| SnapshotError::file("create temporary file", target, e))?;
    remove_stale_temps(target);
    let (unnamed, proc_fd_dir) = match kind {
        TempKind::Any => (create_unnamed_temp(dir), PROC_FD_DIR),
        #[cfg(test)]
        TempKind::NamedOnly => (None, PROC_FD_DIR),
        #[cfg(test)]
        TempKind::UnlinkableUnnamed => (create_unnamed_temp(dir), "/nonexistent/fd"),
    };
    let mut placed = false;
    if let Some(file) = unnamed {
        let file = write_and_sync(file, target, write, fault)?;
        fault(SaveStep::Rename).map_err(|e| SnapshotError::file("rename", target, e))?;
        placed = link_unnamed(&file, proc_fd_dir, target, name)?;
    }
    if !placed {
        let (named, file) = create_named_temp(target, name)?;
        let file = write_and_sync(file, target, write, fault)?;
        drop(file);
        fault(SaveStep::Rename).map_err(|e| SnapshotError::file("rename", target, e))?;
        rename_into_place(named, target)?;
    }

    // The new file is in place; make it durable. A failure here is reported, but the target
    // already holds the complete new snapshot.
    fault(SaveStep::SyncDir).map_err(|e| SnapshotError::file("sync directory", dir, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::file("sync directory", dir, e))
}

/// Writes the new contents into `file`, flushes and fsyncs it.
fn write_and_sync(
    file: File,
    target: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    fault: &mut dyn FnMut(SaveStep) -> io::Result<()>,
) -> Result<File> {
    let mut writer = BufWriter::new(Recording { file, error: None });
    fault(SaveStep::Write).map_err(|e| SnapshotError::file("write", target, e))?;
    let written = write(&mut writer).and_then(|()| writer.flush().map_err(SnapshotError::from));
    if let Err(err) = written {
        // The file's own failure (a full disk) is the cause, not the encoder that saw it.
        return Err(match writer.get_mut().take_error() {
            Some(cause) => SnapshotError::file("write", target, cause),
            None => err,
        });
    }
    fault(SaveStep::SyncFile).map_err(|e| SnapshotError::file("sync", target, e))?;
    let file = writer
        .into_inner()
        .map_err(|e| SnapshotError::file("write", target, e.into_error()))?
        .file;
    file.sync_all()
        .map_err(|e| SnapshotError::file("sync", target, e))?;
    Ok(file)
}

impl Snapshot {
    /// Saves `object` with a CRC to `path`, atomically.
    ///
    /// `path` must be absent or a regular file; a symbolic link is followed and the regular
    /// file it names is replaced, the link itself staying in place. No temporary file is
    /// left behind, whether the save fails, the object's encoding panics or the process is
    /// killed (see the module docs of `file.rs` and docs/SECURITY.md).
    ///
    /// # Errors
    /// [`SnapshotError::NotRegularFile`] when `path` is a device, FIFO, socket or
    /// directory (or a link to one), [`SnapshotError::File`] naming the step that failed
    /// (a full disk is `write <path>: no storage space`), or any error of
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
    /// The version map is borrowed: pass `&map` (or a map by value, as the original API
    /// did).
    ///
    /// # Errors
    /// [`SnapshotError::NotRegularFile`] when the path is not a regular file (a FIFO is
    /// refused without blocking), [`SnapshotError::File`] when it cannot be opened or read
    /// (`read <path>: unexpected end of file` for a file shorter than its size says), or
    /// any other error of [`load_with`](Self::load_with).
    pub fn load_file<O: Versionize>(
        path: impl AsRef<Path>,
        version_map: impl std::borrow::Borrow<VersionMap>,
    ) -> Result<(O, u16)> {
        Self::load_file_with(path, version_map, &LoadOptions::default())
    }

    /// Loads a snapshot file with `options`.
    ///
    /// # Errors
    /// As [`load_file`](Self::load_file).
    pub fn load_file_with<O: Versionize>(
        path: impl AsRef<Path>,
        version_map: impl std::borrow::Borrow<VersionMap>,
        options: &LoadOptions,
    ) -> Result<(O, u16)> {
        let path = path.as_ref();
        let (file, len) = open_regular_file(path)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let mut reader = io::BufReader::new(file);
        // Reading the file failed (or it was shorter than it said): name the step and path.
        Self::load_with(&mut reader, len, version_map, options).map_err(|err| match err {
            SnapshotError::Io { source, .. } => SnapshotError::file("read", path, source),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_temp_names_fit_and_parse() {
        let long = OsString::from("n".repeat(255));
        let temp = temp_path(Path::new("/d").join(&long).as_path(), &long);
        let temp_name = temp.file_name().unwrap().as_bytes();
        assert!(temp_name.len() <= 255, "{}", temp_name.len());
        assert_eq!(temp_name_pid(temp_name, &long), Some(std::process::id()));
        let short = OsStr::new("vm.snap");
        let temp = temp_path(Path::new("vm.snap"), short);
        let temp_name = temp.file_name().unwrap().as_bytes();
        assert_eq!(temp_name_pid(temp_name, short), Some(std::process::id()));
        assert_eq!(temp_name_pid(temp_name, OsStr::new("other.snap")), None);
        assert_eq!(temp_name_pid(b".vm.snap.1.0.tmp", short), None);
        assert_eq!(temp_name_pid(b"vm.snap", short), None);
        assert_eq!(
            temp_name_pid(b".vm.snap.12.0123456789abcdef.tmp", short),
            Some(12)
        );
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("snapshot-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Where an unnamed file cannot be linked in (no `/proc`), the save starts again with a
    /// named file and succeeds, leaving nothing behind.
    #[test]
    fn test_file_unlinkable_unnamed_file_falls_back_to_a_named_one() {
        let dir = temp_dir("unlinkable");
        let target = dir.join("vm.snap");
        let mut writes = 0;
        let mut ok = |w: &mut dyn Write| {
            writes += 1;
            w.write_all(b"new").map_err(SnapshotError::from)
        };
        let fault = &mut |_| Ok(());
        atomic_write(&target, &mut ok, fault, TempKind::UnlinkableUnnamed).unwrap();
        atomic_write(&target, &mut ok, fault, TempKind::UnlinkableUnnamed).unwrap();
        assert_eq!(writes, 4, "each save wrote twice: unnamed, then named");
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(entries(&dir), ["vm.snap"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The named fallback (file systems without `O_TMPFILE`) removes its file on error and
    /// on panic, and saves to long names.
    #[test]
    fn test_file_named_fallback_cleans_up_on_error_and_panic() {
        let dir = temp_dir("named");
        let target = dir.join("n".repeat(250));
        let mut ok = |w: &mut dyn Write| w.write_all(b"new").map_err(SnapshotError::from);
        atomic_write(&target, &mut ok, &mut |_| Ok(()), TempKind::NamedOnly).unwrap();
        atomic_write(&target, &mut ok, &mut |_| Ok(()), TempKind::NamedOnly).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");

        let mut fail = |w: &mut dyn Write| {
            w.write_all(b"torn")?;
            Err(SnapshotError::from(io::Error::from(io::ErrorKind::Other)))
        };
        atomic_write(&target, &mut fail, &mut |_| Ok(()), TempKind::NamedOnly).unwrap_err();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut boom = |w: &mut dyn Write| -> Result<()> {
                w.write_all(b"torn")?;
                panic!("a hook panicked");
            };
            atomic_write(&target, &mut boom, &mut |_| Ok(()), TempKind::NamedOnly)
        }));
        assert!(panicked.is_err());
        assert_eq!(entries(&dir), ["n".repeat(250)]);
        assert_eq!(fs::read(&target).unwrap(), b"new");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Temporary names of writers that no longer run are removed by the next save to the
    /// same target; those of running processes (this one, pid 1) and of other targets stay.
    #[test]
    fn test_file_stale_temps_of_dead_writers_are_removed() {
        let dir = temp_dir("stale");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = format!(".vm.snap.{dead}.0123456789abcdef.tmp");
        let alive = ".vm.snap.1.0123456789abcdef.tmp".to_owned();
        let mine = format!(".vm.snap.{}.0123456789abcdef.tmp", std::process::id());
        let other = format!(".other.snap.{dead}.0123456789abcdef.tmp");
        for name in [&stale, &alive, &mine, &other] {
            fs::write(dir.join(name), b"torn").unwrap();
        }
        let mut ok = |w: &mut dyn Write| w.write_all(b"new").map_err(SnapshotError::from);
        atomic_write(
            &dir.join("vm.snap"),
            &mut ok,
            &mut |_| Ok(()),
            TempKind::Any,
        )
        .unwrap();
        let mut expected = vec![alive, mine, other, "vm.snap".to_owned()];
        expected.sort();
        assert_eq!(entries(&dir), expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
