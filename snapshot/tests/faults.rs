//! I/O faults at every byte: a writer that fails (an error, a short write then an error, a
//! zero-length write) at each offset of a save returns an error; an atomic save to a path
//! that fails at each offset of the file write, or between write and rename, leaves the
//! previous snapshot intact and loadable; a reader that fails, returns one byte at a time or
//! is `Interrupted` at each position gives an error that keeps the i/o kind, or the right
//! value. Nothing panics.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use snapshot::{atomic_write_with_faults, SaveStep, Snapshot, SnapshotError};
use versionize::{prelude::Versionize, VersionMap};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Queue {
    size: u16,
    ready: bool,
    addresses: [u64; 3],
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct State {
    id: u64,
    name: String,
    queues: Vec<Queue>,
    #[version(start = 2)]
    memory: Vec<u8>,
    irq: Option<u32>,
}

fn map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(State::type_id(), 2);
    map
}

fn state(seed: u8) -> State {
    State {
        id: 0x0102_0304_0506_0708 ^ u64::from(seed),
        name: format!("vm-{seed}"),
        queues: (0..4u16)
            .map(|i| Queue {
                size: 256 >> i,
                ready: i % 2 == 0,
                addresses: [u64::from(i) << 12, 0x1000, u64::from(seed)],
            })
            .collect(),
        memory: (0..512u32).map(|i| (i as u8) ^ seed).collect(),
        irq: Some(5),
    }
}

fn snapshot_bytes(value: &State) -> Vec<u8> {
    let mut bytes = Vec::new();
    Snapshot::new(map(), 2).save(&mut bytes, value).unwrap();
    bytes
}

/// The i/o error kind of a snapshot error, wherever the i/o error was wrapped.
fn io_kind(err: &SnapshotError) -> Option<io::ErrorKind> {
    match err {
        SnapshotError::Io { kind, .. } | SnapshotError::File { kind, .. } => Some(*kind),
        SnapshotError::Versionize(inner) => inner.io_kind(),
        _ => None,
    }
}

/// How a [`FaultyWriter`] fails once `limit` bytes have been accepted.
#[derive(Clone, Copy, Debug)]
enum WriteFault {
    /// A write that would cross the limit fails without writing anything.
    Error,
    /// A write that would cross the limit writes up to it (a short write); the next fails.
    ShortThenError,
    /// A write that would cross the limit writes up to it; the next returns `Ok(0)`.
    ShortThenZero,
}

/// Accepts `limit` bytes, then fails as `fault` says. The failure is `StorageFull`, as a
/// full disk would be.
struct FaultyWriter<W> {
    inner: W,
    written: usize,
    limit: usize,
    fault: WriteFault,
}

impl<W: Write> FaultyWriter<W> {
    fn new(inner: W, limit: usize, fault: WriteFault) -> Self {
        FaultyWriter {
            inner,
            written: 0,
            limit,
            fault,
        }
    }
}

impl<W: Write> Write for FaultyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.written;
        if buf.len() <= room {
            let n = self.inner.write(buf)?;
            self.written += n;
            return Ok(n);
        }
        match self.fault {
            WriteFault::Error => Err(io::Error::new(io::ErrorKind::StorageFull, "injected")),
            WriteFault::ShortThenError | WriteFault::ShortThenZero if room > 0 => {
                let n = self.inner.write(&buf[..room])?;
                self.written += n;
                Ok(n)
            }
            WriteFault::ShortThenError => {
                Err(io::Error::new(io::ErrorKind::StorageFull, "injected"))
            }
            WriteFault::ShortThenZero => Ok(0),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Returns `Interrupted` once when the write position first reaches `at`, then writes.
struct InterruptingWriter {
    inner: Vec<u8>,
    at: usize,
    fired: bool,
}

impl Write for InterruptingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.fired && self.inner.len() + buf.len() > self.at {
            self.fired = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_faults_writer_failing_at_every_offset() {
    let value = state(1);
    let expected = snapshot_bytes(&value);
    let mut failures = 0;
    for fault in [
        WriteFault::Error,
        WriteFault::ShortThenError,
        WriteFault::ShortThenZero,
    ] {
        for limit in 0..=expected.len() {
            let mut writer = FaultyWriter::new(Vec::new(), limit, fault);
            let result = Snapshot::new(map(), 2).save(&mut writer, &value);
            if limit == expected.len() {
                result.unwrap_or_else(|e| panic!("{fault:?}: room for all: {e}"));
                assert_eq!(writer.inner, expected);
                continue;
            }
            let err = result.expect_err("a failing writer must fail the save");
            let want = match fault {
                WriteFault::ShortThenZero => io::ErrorKind::WriteZero,
                _ => io::ErrorKind::StorageFull,
            };
            assert_eq!(io_kind(&err), Some(want), "{fault:?} at {limit}: {err}");
            assert!(writer.inner.len() <= limit);
            assert_eq!(writer.inner, expected[..writer.inner.len()]);
            failures += 1;
        }
    }
    assert_eq!(failures, 3 * expected.len());
    eprintln!(
        "writer faults: {failures} failed saves ({} offsets x 3 kinds)",
        expected.len()
    );
}

#[test]
fn test_faults_writer_interrupted_at_every_offset_still_saves() {
    let value = state(2);
    let expected = snapshot_bytes(&value);
    for at in 0..expected.len() {
        let mut writer = InterruptingWriter {
            inner: Vec::new(),
            at,
            fired: false,
        };
        Snapshot::new(map(), 2)
            .save(&mut writer, &value)
            .unwrap_or_else(|e| panic!("interrupted at {at}: {e}"));
        assert!(writer.fired);
        assert_eq!(writer.inner, expected, "interrupted at {at}");
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("snapshot-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(path: &Path) -> Result<(State, u16), SnapshotError> {
    Snapshot::load_file::<State>(path, map())
}

#[test]
fn test_faults_atomic_save_failing_at_every_offset_keeps_previous_file() {
    let dir = TempDir::new("every-offset");
    let path = dir.0.join("vm.snap");
    let old = state(3);
    Snapshot::new(map(), 2).save_to_file(&path, &old).unwrap();
    let original = std::fs::read(&path).unwrap();
    let new = state(4);
    let new_len = snapshot_bytes(&new).len();

    for fault in [WriteFault::Error, WriteFault::ShortThenError] {
        for limit in 0..new_len {
            // The file write (what `save_to_file` does) failing at byte `limit`, as a full
            // disk would make it.
            let err = atomic_write_with_faults(
                &path,
                &mut |file| {
                    let mut faulty = FaultyWriter::new(file, limit, fault);
                    Snapshot::new(map(), 2).save(&mut faulty, &new)
                },
                &mut |_| Ok(()),
            )
            .expect_err("the write fails");
            assert_eq!(
                io_kind(&err),
                Some(io::ErrorKind::StorageFull),
                "{fault:?} at {limit}: {err}"
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                original,
                "{fault:?} at {limit}"
            );
            assert_eq!(
                dir.entries(),
                ["vm.snap"],
                "{fault:?} at {limit}: temp file"
            );
        }
    }
    assert_eq!(load(&path).unwrap(), (old.clone(), 2));
    eprintln!(
        "atomic save: {} failed file writes, previous file intact",
        2 * new_len
    );

    // Every byte written, then a failure between the write and the rename (sync or rename
    // itself): still the old file.
    for step in [SaveStep::SyncFile, SaveStep::Rename] {
        let err = Snapshot::new(map(), 2)
            .save_to_file_with_faults(&path, &new, &mut |at| {
                if at == step {
                    Err(io::Error::new(io::ErrorKind::StorageFull, "injected"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!(io_kind(&err), Some(io::ErrorKind::StorageFull), "{step:?}");
        assert_eq!(load(&path).unwrap(), (old.clone(), 2), "{step:?}");
        assert_eq!(dir.entries(), ["vm.snap"], "{step:?}");
    }

    // And with no fault the new snapshot replaces the old one.
    Snapshot::new(map(), 2).save_to_file(&path, &new).unwrap();
    assert_eq!(load(&path).unwrap(), (new, 2));
}

#[test]
fn test_faults_crash_before_rename_leaves_previous_file_and_later_saves_work() {
    // A process killed between write and rename leaves its temporary file behind; the
    // target is untouched and the next save (another process, another temp name) works.
    let dir = TempDir::new("crash");
    let path = dir.0.join("vm.snap");
    let old = state(5);
    Snapshot::new(map(), 2).save_to_file(&path, &old).unwrap();
    let stale = dir.0.join(".vm.snap.1.0.tmp");
    std::fs::write(&stale, &snapshot_bytes(&state(6))[..100]).unwrap();
    assert_eq!(load(&path).unwrap(), (old, 2));
    let new = state(7);
    Snapshot::new(map(), 2).save_to_file(&path, &new).unwrap();
    assert_eq!(load(&path).unwrap(), (new, 2));
    assert_eq!(dir.entries(), [".vm.snap.1.0.tmp", "vm.snap"]);
}

/// How a [`FaultyReader`] behaves at position `at`.
#[derive(Clone, Copy, Debug)]
enum ReadFault {
    /// Fails with `ConnectionReset` at `at` and at every read after.
    Error,
    /// Returns `Interrupted` once at `at`, then reads normally.
    InterruptedOnce,
}

/// Reads from `data` at most `chunk` bytes per call, and fails as `fault` says at `at`.
struct FaultyReader<'a> {
    data: &'a [u8],
    position: usize,
    chunk: usize,
    at: usize,
    fault: Option<ReadFault>,
    fired: bool,
}

impl<'a> FaultyReader<'a> {
    fn new(data: &'a [u8], chunk: usize, at: usize, fault: Option<ReadFault>) -> Self {
        FaultyReader {
            data,
            position: 0,
            chunk,
            at,
            fault,
            fired: false,
        }
    }
}

impl FaultyReader<'_> {
    /// Whether a fault is still to happen at `at`.
    fn pending(&self) -> bool {
        match self.fault {
            Some(ReadFault::Error) => true,
            Some(ReadFault::InterruptedOnce) => !self.fired,
            None => false,
        }
    }
}

impl Read for FaultyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.position == self.at && self.pending() {
            self.fired = true;
            return Err(match self.fault {
                Some(ReadFault::Error) => io::ErrorKind::ConnectionReset.into(),
                _ => io::ErrorKind::Interrupted.into(),
            });
        }
        let mut end = self
            .position
            .saturating_add(self.chunk.min(buf.len()))
            .min(self.data.len());
        // Stop short of a pending fault, so that the next read starts on it.
        if self.position < self.at && self.at < end && self.pending() {
            end = self.at;
        }
        let n = end - self.position;
        buf[..n].copy_from_slice(&self.data[self.position..end]);
        self.position = end;
        Ok(n)
    }
}

#[test]
fn test_faults_reader_one_byte_at_a_time_loads() {
    let value = state(8);
    let bytes = snapshot_bytes(&value);
    let mut reader = FaultyReader::new(&bytes, 1, usize::MAX, None);
    assert_eq!(
        Snapshot::load::<_, State>(&mut reader, bytes.len(), map()).unwrap(),
        (value.clone(), 2)
    );
    let mut reader = FaultyReader::new(&bytes, 1, usize::MAX, None);
    assert_eq!(
        Snapshot::unchecked_load::<_, State>(&mut reader, map()).unwrap(),
        (value, 2)
    );
}

#[test]
fn test_faults_reader_failing_at_every_position() {
    let value = state(9);
    let bytes = snapshot_bytes(&value);
    let mut checked = 0;
    for chunk in [1, 7, usize::MAX] {
        for at in 0..bytes.len() {
            let mut reader = FaultyReader::new(&bytes, chunk, at, Some(ReadFault::Error));
            let err = Snapshot::load::<_, State>(&mut reader, bytes.len(), map())
                .expect_err("a failing reader fails the load");
            assert_eq!(
                io_kind(&err),
                Some(io::ErrorKind::ConnectionReset),
                "chunk {chunk} at {at}: {err}"
            );
            // The decoders read the stream directly when no CRC is checked: the error comes
            // out of whichever of them was reading, with its kind.
            if at < bytes.len() - 8 {
                let mut reader = FaultyReader::new(&bytes, chunk, at, Some(ReadFault::Error));
                let err = Snapshot::unchecked_load::<_, State>(&mut reader, map())
                    .expect_err("a failing reader fails the load");
                assert_eq!(
                    io_kind(&err),
                    Some(io::ErrorKind::ConnectionReset),
                    "unchecked, chunk {chunk} at {at}: {err}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * bytes.len());
    eprintln!(
        "reader faults: {checked} failed loads ({} positions x 3 read sizes)",
        bytes.len()
    );
}

#[test]
fn test_faults_reader_interrupted_at_every_position_still_loads() {
    let value = state(10);
    let bytes = snapshot_bytes(&value);
    for chunk in [1, 7, usize::MAX] {
        for at in 0..bytes.len() {
            let mut reader = FaultyReader::new(&bytes, chunk, at, Some(ReadFault::InterruptedOnce));
            assert_eq!(
                Snapshot::load::<_, State>(&mut reader, bytes.len(), map())
                    .unwrap_or_else(|e| panic!("chunk {chunk}, interrupted at {at}: {e}")),
                (value.clone(), 2)
            );
            assert!(reader.fired, "chunk {chunk} at {at}");
            if at < bytes.len() - 8 {
                let mut reader =
                    FaultyReader::new(&bytes, chunk, at, Some(ReadFault::InterruptedOnce));
                assert_eq!(
                    Snapshot::unchecked_load::<_, State>(&mut reader, map())
                        .unwrap_or_else(|e| panic!("unchecked, chunk {chunk} at {at}: {e}")),
                    (value.clone(), 2)
                );
            }
        }
    }
}

/// Regression: a VMM that crashed mid-save left `.vm.snap.<pid>.<n>.tmp`; a later process
/// with the same pid (a VMM running as pid 1 in a fresh container, with the snapshot
/// directory on a persistent volume) reached the same `<n>` and its save failed with
/// `AlreadyExists`, because the temporary name was only the pid and a per-process counter.
/// Names now carry a random part and a taken name is retried. The stale files here cover
/// every counter value this test binary can reach under the old scheme.
#[test]
fn test_faults_stale_temp_file_of_a_previous_process_with_the_same_pid() {
    let dir = TempDir::new("same-pid");
    let path = dir.0.join("vm.snap");
    for counter in 0..4096 {
        let stale = dir
            .0
            .join(format!(".vm.snap.{}.{counter}.tmp", std::process::id()));
        std::fs::write(stale, b"torn").unwrap();
    }
    let value = state(11);
    Snapshot::new(map(), 2)
        .save_to_file(&path, &value)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&path).unwrap(), (value, 2));
}
