//! The info side file `<snapshot>.info`: which VMM and version wrote a snapshot, when, on which
//! host, its data version and a schema fingerprint, in a text format frozen for every build,
//! past and future (see `docs/FORMAT.md`, "Writer info side file").
//!
//! The snapshot itself keeps the Firecracker v1 layout byte for byte, so every build that ever
//! read our snapshots still reads them; the side file is tied to its snapshot by the
//! snapshot's stored CRC-64, so a side file left over from another save is detected, never
//! believed.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::io::{Read, Seek, SeekFrom};

use versionize::crc::crc64;
use versionize::schema::{FieldSchema, Schema, TypeKind};

use crate::file::{atomic_write_with_faults, open_regular_file, read_regular_file};
use crate::snapshot::MIN_SNAPSHOT_LEN;
use crate::{Result, SnapshotError};

/// The data version (header, bytes 8..10) and the stored CRC-64 (the last 8 bytes) of a
/// snapshot file, without reading the rest.
fn data_version_and_crc(snapshot: &Path) -> Result<(u16, u64)> {
    let (mut file, len) = open_regular_file(snapshot)?;
    if len < MIN_SNAPSHOT_LEN {
        return Err(SnapshotError::InvalidSnapshotSize {
            len,
            min: MIN_SNAPSHOT_LEN,
        });
    }
    let read = |file: &mut std::fs::File, at: u64, buf: &mut [u8]| {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| SnapshotError::file("read", snapshot, e))
    };
    let (mut version, mut crc) = ([0u8; 2], [0u8; 8]);
    read(&mut file, 8, &mut version)?;
    read(&mut file, len - 8, &mut crc)?;
    Ok((u16::from_le_bytes(version), u64::from_le_bytes(crc)))
}

/// The first line of every info file, version 1 of the format.
pub const WRITER_INFO_HEADER: &str = "# vmstate snapshot info 1";

/// The largest info file read (they are a few hundred bytes).
pub const MAX_WRITER_INFO_LEN: u64 = 64 * 1024;

/// Who wrote a snapshot: the contents of its `<snapshot>.info` side file.
///
/// The format is `key=value` lines after [`WRITER_INFO_HEADER`]. Later builds may add keys;
/// every build ignores (and keeps, in [`WriterInfo::other`]) the keys it does not know, and
/// no key ever changes meaning.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriterInfo {
    /// The VMM and its version, e.g. `demo-vmm 0.3.0`.
    pub vmm: String,
    /// When the snapshot was saved, seconds since the Unix epoch (UTC).
    pub saved_at: u64,
    /// The host's architecture (`x86_64`, `aarch64`).
    pub host_arch: String,
    /// The host's CPU, e.g. `GenuineIntel family 6 model 85 stepping 7`.
    pub host_cpu: String,
    /// The snapshot's data version (app version).
    pub data_version: u16,
    /// A fingerprint of the state's schema at `data_version`, e.g. `crc64:0123456789abcdef`:
    /// two snapshots with the same fingerprint have the same layout.
    pub schema_fingerprint: String,
    /// The CRC-64 stored at the end of the snapshot this file describes.
    pub snapshot_crc64: u64,
    /// Keys this build does not know, in file order.
    pub other: Vec<(String, String)>,
}

/// The schema fingerprint of a snapshot's layout: `crc64:` and 16 hex digits, the CRC-64 of
/// the schema's JSON ([`Schema::to_json`]) reduced to the layout at its app version: only the
/// fields and variants written at it, with `latest_version`, `start` and `end` set to 0, 0 and
/// none (what the exporting build happened to know of other versions). Every build that
/// writes the same layout at that version gives the same fingerprint, and so does the
/// committed schema file of that version, reduced the same way.
pub fn schema_fingerprint(schema: &Schema) -> String {
    let mut schema = schema.clone();
    let reduce = |fields: &mut Vec<FieldSchema>| {
        fields.retain(|f| f.present);
        for f in fields {
            (f.start, f.end) = (0, None);
        }
    };
    for ty in schema.types.values_mut() {
        ty.latest_version = 0;
        match &mut ty.kind {
            TypeKind::Struct { fields } => reduce(fields),
            TypeKind::Enum { variants } => {
                variants.retain(|v| v.present);
                for v in variants {
                    (v.start, v.end) = (0, None);
                    reduce(&mut v.fields);
                }
            }
            TypeKind::Opaque => {}
        }
    }
    format!("crc64:{:016x}", crc64(schema.to_json().as_bytes()))
}

/// The info side file of `snapshot`: the same path with `.info` appended.
pub fn writer_info_path(snapshot: impl AsRef<Path>) -> PathBuf {
    let mut path = snapshot.as_ref().as_os_str().to_owned();
    path.push(".info");
    PathBuf::from(path)
}

impl WriterInfo {
    /// Info for a snapshot of `data_version` written by `vmm` now, on this architecture; the
    /// CPU, fingerprint and CRC are the caller's to fill in.
    pub fn new(vmm: impl Into<String>, data_version: u16) -> Self {
        WriterInfo {
            vmm: vmm.into(),
            saved_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            host_arch: std::env::consts::ARCH.to_owned(),
            data_version,
            ..WriterInfo::default()
        }
    }

    /// Sets the host's CPU description.
    #[must_use]
    pub fn with_host_cpu(mut self, cpu: impl Into<String>) -> Self {
        self.host_cpu = cpu.into();
        self
    }

    /// Sets the schema fingerprint.
    #[must_use]
    pub fn with_schema_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.schema_fingerprint = fingerprint.into();
        self
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{WRITER_INFO_HEADER}\n");
        let one_line = |value: &str| value.replace(['\n', '\r'], " ");
        let _ = writeln!(text, "vmm={}", one_line(&self.vmm));
        let _ = writeln!(text, "saved_at={}", self.saved_at);
        let _ = writeln!(text, "host_arch={}", one_line(&self.host_arch));
        let _ = writeln!(text, "host_cpu={}", one_line(&self.host_cpu));
        let _ = writeln!(text, "data_version={}", self.data_version);
        let _ = writeln!(
            text,
            "schema_fingerprint={}",
            one_line(&self.schema_fingerprint)
        );
        let _ = writeln!(text, "snapshot_crc64={:#018x}", self.snapshot_crc64);
        for (key, value) in &self.other {
            let _ = writeln!(text, "{key}={}", one_line(value));
        }
        text
    }

    /// Parses an info file's text.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::WriterInfo`] naming the first line that is not the header, not
    /// `key=value`, or a known key with a value of the wrong kind, or a missing
    /// `data_version` or `snapshot_crc64`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |line: usize, reason: String| SnapshotError::WriterInfo {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut lines = text.lines();
        if lines.next() != Some(WRITER_INFO_HEADER) {
            return Err(bad(
                1,
                format!("the first line is not {WRITER_INFO_HEADER:?}"),
            ));
        }
        let mut info = WriterInfo::default();
        let (mut has_version, mut has_crc) = (false, false);
        for (index, line) in lines.enumerate() {
            let number = index + 2;
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(number, "not key=value".into()));
            };
            let number_of = |what: &str| bad(number, format!("{key}: {value:?} is not {what}"));
            match key {
                "vmm" => info.vmm = value.to_owned(),
                "saved_at" => info.saved_at = value.parse().map_err(|_| number_of("a u64"))?,
                "host_arch" => info.host_arch = value.to_owned(),
                "host_cpu" => info.host_cpu = value.to_owned(),
                "data_version" => {
                    info.data_version = value.parse().map_err(|_| number_of("a u16"))?;
                    has_version = true;
                }
                "schema_fingerprint" => info.schema_fingerprint = value.to_owned(),
                "snapshot_crc64" => {
                    let hex = value
                        .strip_prefix("0x")
                        .ok_or_else(|| number_of("0x<hex>"))?;
                    info.snapshot_crc64 =
                        u64::from_str_radix(hex, 16).map_err(|_| number_of("0x<hex>"))?;
                    has_crc = true;
                }
                _ => info.other.push((key.to_owned(), value.to_owned())),
            }
        }
        if !(has_version && has_crc) {
            return Err(bad(
                text.lines().count(),
                "data_version or snapshot_crc64 is missing".into(),
            ));
        }
        Ok(info)
    }

    /// Writes the side file of `snapshot` (which must be saved already) atomically, with the
    /// snapshot's stored CRC-64 filled in.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::File`] or [`SnapshotError::InvalidSnapshotSize`] reading the snapshot,
    /// and the errors of an atomic save.
    pub fn save_for(&mut self, snapshot: impl AsRef<Path>) -> Result<()> {
        self.snapshot_crc64 = data_version_and_crc(snapshot.as_ref())?.1;
        let text = self.to_text();
        atomic_write_with_faults(
            &writer_info_path(snapshot),
            &mut |out: &mut dyn Write| out.write_all(text.as_bytes()).map_err(Into::into),
            &mut |_| Ok(()),
        )
    }

    /// Reads the side file of `snapshot`, if there is one, and checks that it describes this
    /// snapshot (the stored CRC-64s agree) and the data version in its header.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::WriterInfo`] for a malformed file, [`SnapshotError::WriterInfoStale`]
    /// for a side file of another save, and the errors of reading either file.
    pub fn load_for(snapshot: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = writer_info_path(&snapshot);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_regular_file(&path, MAX_WRITER_INFO_LEN)?;
        let text = String::from_utf8_lossy(&bytes);
        let info = WriterInfo::parse(&text, &path)?;
        let (data_version, stored_crc) = data_version_and_crc(snapshot.as_ref())?;
        if stored_crc != info.snapshot_crc64 || data_version != info.data_version {
            return Err(SnapshotError::WriterInfoStale {
                path,
                info_crc: info.snapshot_crc64,
                snapshot_crc: stored_crc,
            });
        }
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WriterInfo {
        WriterInfo {
            vmm: "demo-vmm 0.3.0".into(),
            saved_at: 1_764_547_200,
            host_arch: "x86_64".into(),
            host_cpu: "GenuineIntel family 6 model 85 stepping 7".into(),
            data_version: 5,
            schema_fingerprint: "crc64:0123456789abcdef".into(),
            snapshot_crc64: 0xfeed_beef,
            other: vec![],
        }
    }

    /// The frozen format, byte for byte: a change here breaks every other build's reader.
    #[test]
    fn test_writer_info_text_is_frozen() {
        assert_eq!(
            sample().to_text(),
            "# vmstate snapshot info 1\nvmm=demo-vmm 0.3.0\nsaved_at=1764547200\n\
             host_arch=x86_64\nhost_cpu=GenuineIntel family 6 model 85 stepping 7\n\
             data_version=5\nschema_fingerprint=crc64:0123456789abcdef\n\
             snapshot_crc64=0x00000000feedbeef\n"
        );
        let path = Path::new("s.info");
        assert_eq!(
            WriterInfo::parse(&sample().to_text(), path).unwrap(),
            sample()
        );
    }

    /// A later build's extra keys are kept, not refused: an older build still reads the file.
    #[test]
    fn test_writer_info_keeps_unknown_keys() {
        let text = format!("{}vmm_commit=41afe55\n", sample().to_text());
        let info = WriterInfo::parse(&text, Path::new("s.info")).unwrap();
        assert_eq!(info.other, [("vmm_commit".into(), "41afe55".into())]);
        assert_eq!(info.to_text(), text);
    }

    /// The side file travels with its snapshot; a save of the snapshot without one makes the
    /// old side file stale, which `load_for` says instead of believing it.
    #[test]
    fn test_writer_info_save_load_and_stale() {
        let dir = std::env::temp_dir().join(format!("writer-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let snap = dir.join("s.snap");
        let write_snapshot = |data_version: u16, fill: u8| {
            let mut bytes = vec![fill; 64];
            bytes[8..10].copy_from_slice(&data_version.to_le_bytes());
            let crc = crc64(&bytes[..56]);
            bytes[56..].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&snap, &bytes).unwrap();
            crc
        };
        assert!(
            matches!(WriterInfo::load_for(&snap), Ok(None)),
            "nothing there"
        );
        let crc = write_snapshot(5, 1);
        assert_eq!(WriterInfo::load_for(&snap).unwrap(), None, "no side file");
        let mut info = sample();
        info.save_for(&snap).unwrap();
        assert_eq!(info.snapshot_crc64, crc);
        assert_eq!(WriterInfo::load_for(&snap).unwrap(), Some(info));
        let other = write_snapshot(5, 2);
        assert!(matches!(
            WriterInfo::load_for(&snap),
            Err(SnapshotError::WriterInfoStale { info_crc, snapshot_crc, .. })
                if info_crc == crc && snapshot_crc == other
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_writer_info_refuses_malformed() {
        let path = Path::new("s.info");
        for (text, line) in [
            ("", 1),
            ("# another format\n", 1),
            ("# vmstate snapshot info 1\nno equals sign\n", 2),
            ("# vmstate snapshot info 1\ndata_version=70000\n", 2),
            ("# vmstate snapshot info 1\nsnapshot_crc64=12\n", 2),
            ("# vmstate snapshot info 1\nvmm=x\n", 2),
        ] {
            match WriterInfo::parse(text, path) {
                Err(SnapshotError::WriterInfo { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
