//! What each subcommand does. Each writes its report to `out` and returns a [`Failure`] for
//! anything that makes the file, or the check, unsound.

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};

use snapshot::magic::host_arch;
use snapshot::{
    get_format_version, read_regular_file, FirecrackerSnapshotInfo, LoadOptions, Snapshot,
    SnapshotError, SnapshotInfo, CRC_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC_LEN, MIN_SNAPSHOT_LEN,
};
use versionize::schema::{
    compare, decode_value, diff_values, export, JsonOptions, Schema, Value, ValueError,
};
use versionize::{Limits, Versionize};

use crate::args::SchemaArgs;
use crate::cli::Cli;
use crate::failure::Failure;
use crate::render::{write_text, SUMMARIZE_BYTES_OVER};

/// The largest schema file read (kvm-state's exports are about 40 KiB): a bigger file, or
/// an endless one such as /dev/zero, is refused before reading.
const MAX_SCHEMA_LEN: u64 = 16 << 20;

/// At most this many changes are listed after a conversion.
const MAX_LISTED_CHANGES: usize = 20;

/// Where the state starts in a v1 snapshot.
const STATE_AT: usize = (MAGIC_LEN + HEADER_LEN) as usize;

/// A snapshot file read whole.
struct SnapshotFile<'p> {
    path: &'p Path,
    bytes: Vec<u8>,
    info: SnapshotInfo,
}

impl SnapshotFile<'_> {
    /// The state's bytes (between the header and the CRC).
    fn state(&self) -> &[u8] {
        let end = self.bytes.len().saturating_sub(CRC_LEN as usize);
        self.bytes.get(STATE_AT..end).unwrap_or_default()
    }

    fn cannot_load(&self) -> Failure {
        Failure::new(format!("cannot load {}", self.path.display()))
    }
}

/// A state decoded to a [`Value`], without or with its Rust type.
struct Decoded {
    value: Value,
    data_version: u16,
    root: String,
}

/// Limits of a typed load of `max_state_len` bytes of state.
fn typed_limits(max_state_len: u64) -> Limits {
    Limits::default()
        .with_budget(max_state_len)
        .with_max_collection_len(max_state_len)
}

/// Limits of a schema-driven decode of `state_len` bytes: each element of a collection is
/// charged a whole [`Value`] of budget, so the budget is that many bytes per byte of state
/// (the file's size was capped before it was read).
fn value_limits(state_len: usize, max_state_len: u64) -> Limits {
    let per_byte = size_of::<Value>() as u64 + 16;
    let state_len = u64::try_from(state_len).unwrap_or(u64::MAX);
    Limits::default()
        .with_budget(
            state_len
                .saturating_mul(per_byte)
                .max(Limits::default().budget()),
        )
        .with_max_collection_len(max_state_len)
}

/// A whole snapshot file of at most `max_state_len` bytes of state; a larger one is
/// refused before reading, by its state's size.
fn read_snapshot(path: &Path, max_state_len: u64) -> Result<Vec<u8>, SnapshotError> {
    read_regular_file(path, max_state_len.saturating_add(MIN_SNAPSHOT_LEN)).map_err(|err| match err
    {
        SnapshotError::FileTooLarge { len, .. } => SnapshotError::StateTooLarge {
            len: len.saturating_sub(MIN_SNAPSHOT_LEN),
            limit: max_state_len,
        },
        other => other,
    })
}

fn read_schema(path: &Path) -> Result<Schema, Failure> {
    let bytes = read_regular_file(path, MAX_SCHEMA_LEN)
        .map_err(|e| Failure::new(format!("cannot read {}", path.display())).because(&e))?;
    let json = String::from_utf8(bytes).map_err(|e| {
        Failure::new(format!("{} is not a schema export", path.display())).because(&e)
    })?;
    Schema::from_json(&json).map_err(|message| {
        Failure::new(format!("{} is not a schema export", path.display())).cause(message)
    })
}

/// A file in the layout of Firecracker's later releases: named, never decoded.
fn firecracker_failure(path: &Path, file: &FirecrackerSnapshotInfo) -> Failure {
    let mut failure = Failure::new(format!(
        "{} is a Firecracker snapshot of format version {}",
        path.display(),
        file.format_version
    ));
    if !file.crc_ok() {
        failure = failure.because(&SnapshotError::Crc64 {
            stored: file.stored_crc,
            computed: file.computed_crc,
        });
    }
    failure.cause(
        "its state is Firecracker's own (serde) encoding, not a versionize state: this tool \
         does not decode it",
    )
}

fn crc_line(stored: u64, computed: u64) -> String {
    if stored == computed {
        format!("ok ({stored:#018x})")
    } else {
        format!("MISMATCH: stored {stored:#018x}, contents hash to {computed:#018x}")
    }
}

fn arch_line(arch: Option<&str>, native: bool) -> String {
    match arch {
        Some(arch) if native => format!("{arch}, this host's architecture"),
        Some(arch) => format!("{arch}, NOT this host's {}", host_arch()),
        None => "unknown: not a snapshot".to_owned(),
    }
}

impl<T: Versionize + Debug + 'static> Cli<T> {
    /// Reads a whole snapshot file of at most `max_state_len` bytes of state and its
    /// container fields; refuses Firecracker's later files by name.
    fn read<'p>(
        &self,
        path: &'p Path,
        max_state_len: u64,
        what: &str,
    ) -> Result<SnapshotFile<'p>, Failure> {
        let failure = || Failure::new(format!("{what} {}", path.display()));
        let bytes = read_snapshot(path, max_state_len).map_err(|e| failure().because(&e))?;
        if let Some(firecracker) = FirecrackerSnapshotInfo::from_bytes(&bytes) {
            return Err(firecracker_failure(path, &firecracker));
        }
        let info = SnapshotInfo::from_bytes(&bytes).map_err(|e| failure().because(&e))?;
        Ok(SnapshotFile { path, bytes, info })
    }

    /// The full name of the root type, as schema exports name it.
    fn own_root(&self) -> String {
        export::<T>(&self.map, self.map.latest_version()).map_or_else(
            |_| std::any::type_name::<T>().to_owned(),
            |schema| schema.root,
        )
    }

    /// The state, loaded as the VMM loads it (CRC, versions, every field).
    fn load(&self, file: &SnapshotFile<'_>, max_state_len: u64) -> Result<(T, u16), Failure> {
        let map = self.map.clone().with_limits(typed_limits(max_state_len));
        let options = LoadOptions::default().with_max_state_len(max_state_len);
        Snapshot::load_with(&mut file.bytes.as_slice(), file.bytes.len(), &map, &options)
            .map_err(|err| self.load_failure(file, &err, None, max_state_len))
    }

    fn load_failure(
        &self,
        file: &SnapshotFile<'_>,
        err: &SnapshotError,
        schema: Option<&Schema>,
        max_state_len: u64,
    ) -> Failure {
        match err {
            SnapshotError::Crc64 { .. } => {
                if let Some(cut) = self.truncation(file, schema, max_state_len) {
                    return file.cannot_load().cause(cut);
                }
                file.cannot_load().because(err)
            }
            SnapshotError::InvalidDataVersion { found, latest } if found > latest => {
                file.cannot_load().because(err).cause(format!(
                    "decode it with --schema, the writing build's schema export of app \
                     version {found}"
                ))
            }
            _ => file.cannot_load().because(err),
        }
    }

    /// Why a file whose CRC does not match is truncated, if it is: its state, decoded
    /// from every byte after the header (the presumed CRC included), runs past the end.
    fn truncation(
        &self,
        file: &SnapshotFile<'_>,
        schema: Option<&Schema>,
        max_state_len: u64,
    ) -> Option<String> {
        let own;
        let schema = match schema {
            Some(schema) => schema,
            None => {
                own = export::<T>(&self.map, file.info.data_version).ok()?;
                &own
            }
        };
        let rest = file.bytes.get(STATE_AT..)?;
        match decode_value(
            schema,
            &mut &rest[..],
            &value_limits(rest.len(), max_state_len),
        ) {
            Err(ValueError::Truncated { .. }) => Some(format!(
                "the file is truncated: its state runs past the end of its {} bytes (so the \
                 CRC-64 cannot match)",
                file.info.file_len
            )),
            // The whole state is there, and less than a CRC after it.
            Ok(_) => Some("the file is truncated: its CRC-64 is missing".to_owned()),
            Err(ValueError::TrailingBytes { count, .. }) if count < CRC_LEN => Some(format!(
                "the file is truncated: it ends {} byte(s) into its CRC-64",
                count
            )),
            _ => None,
        }
    }

    /// The state as a value: loaded with the Rust type, then decoded field by field with
    /// this build's schema of its data version, or decoded with `--schema`.
    fn decode(
        &self,
        file: &SnapshotFile<'_>,
        schema: Option<(&Path, &Schema)>,
        root: Option<&str>,
        max_state_len: u64,
    ) -> Result<Decoded, Failure> {
        match schema {
            Some((schema_path, schema)) => {
                self.decode_with_schema(file, schema_path, schema, root, max_state_len)
            }
            None => {
                // Loaded as the VMM loads it (so nothing this build would refuse is
                // printed), then decoded with this build's schema of its data version: the
                // values on the wire, by field name.
                let (state, data_version) = self.load(file, max_state_len)?;
                drop(state);
                self.own_value(file, data_version, max_state_len)
            }
        }
    }

    /// The state of a file this build has loaded, decoded field by field with this
    /// build's schema of its data version.
    fn own_value(
        &self,
        file: &SnapshotFile<'_>,
        data_version: u16,
        max_state_len: u64,
    ) -> Result<Decoded, Failure> {
        let schema = export::<T>(&self.map, data_version).map_err(|e| {
            Failure::new(format!(
                "cannot export the schema of app version {data_version}"
            ))
            .because(&e)
        })?;
        let state = file.state();
        let value = decode_value(
            &schema,
            &mut &state[..],
            &value_limits(state.len(), max_state_len),
        )
        .map_err(|e| file.cannot_load().because(&e))?;
        Ok(Decoded {
            value,
            data_version,
            root: schema.root,
        })
    }

    /// A loaded state (dropped as soon as it is encoded) as this build sees it at `version`: encoded at that version, then
    /// decoded field by field with this build's schema of it (fields the file's data
    /// version lacks hold the values this build reads for them).
    fn value_at(&self, state: T, version: u16, max_state_len: u64) -> Result<Value, Failure> {
        let failure = || {
            Failure::new(format!(
                "cannot re-encode the state at app version {version}"
            ))
        };
        let mut bytes = Vec::new();
        state
            .serialize(&mut bytes, &self.map, version)
            .map_err(|e| failure().because(&e))?;
        drop(state);
        let schema = export::<T>(&self.map, version).map_err(|e| failure().because(&e))?;
        decode_value(
            &schema,
            &mut bytes.as_slice(),
            &value_limits(bytes.len(), max_state_len),
        )
        .map_err(|e| failure().because(&e))
    }

    /// The state decoded with a schema export: the root and app version must be the
    /// file's, the container sound.
    fn decode_with_schema(
        &self,
        file: &SnapshotFile<'_>,
        schema_path: &Path,
        schema: &Schema,
        root: Option<&str>,
        max_state_len: u64,
    ) -> Result<Decoded, Failure> {
        let expected = root.map_or_else(|| self.own_root(), str::to_owned);
        if schema.root != expected {
            return Err(Failure::new(format!(
                "{} describes {} snapshots, not {expected}",
                schema_path.display(),
                schema.root
            ))
            .cause(format!(
                "pass --root {} if {} holds that type",
                schema.root,
                file.path.display()
            )));
        }
        let format_version =
            get_format_version(file.info.magic).map_err(|e| file.cannot_load().because(&e))?;
        if format_version == 0 || format_version > FORMAT_VERSION {
            return Err(file
                .cannot_load()
                .because(&SnapshotError::InvalidFormatVersion {
                    found: format_version,
                    supported: FORMAT_VERSION,
                }));
        }
        if !file.info.crc_ok() {
            let err = SnapshotError::Crc64 {
                stored: file.info.stored_crc,
                computed: file.info.computed_crc,
            };
            return Err(self.load_failure(file, &err, Some(schema), max_state_len));
        }
        if schema.app_version != file.info.data_version {
            return Err(Failure::new(format!(
                "{} is not the schema of {}",
                schema_path.display(),
                file.path.display()
            ))
            .cause(format!(
                "it describes app version {}, the file holds data version {}: use the \
                 writing build's export of app version {}",
                schema.app_version, file.info.data_version, file.info.data_version
            )));
        }
        let state = file.state();
        let value = decode_value(
            schema,
            &mut &state[..],
            &value_limits(state.len(), max_state_len),
        )
        .map_err(|e| {
            Failure::new(format!(
                "cannot decode {} with {}",
                file.path.display(),
                schema_path.display()
            ))
            .because(&e)
        })?;
        Ok(Decoded {
            value,
            data_version: file.info.data_version,
            root: schema.root.clone(),
        })
    }

    /// `info`: the container fields, whether this build reads the file, and what the
    /// state says of itself.
    pub(crate) fn info(
        &self,
        out: &mut dyn Write,
        path: &Path,
        schema_args: &SchemaArgs,
        max_state_len: u64,
    ) -> Result<(), Failure> {
        let schema = match &schema_args.schema {
            Some(schema_path) => Some((schema_path.as_path(), read_schema(schema_path)?)),
            None => None,
        };
        let cannot_read = || Failure::new(format!("cannot read {}", path.display()));
        let bytes = read_snapshot(path, max_state_len).map_err(|e| cannot_read().because(&e))?;
        if let Some(firecracker) = FirecrackerSnapshotInfo::from_bytes(&bytes) {
            writeln!(out, "file:           {}", path.display())?;
            writeln!(
                out,
                "format:         Firecracker snapshot, later than the v1 format"
            )?;
            writeln!(
                out,
                "magic:          {:#018x} ({})",
                firecracker.magic,
                arch_line(Some(firecracker.arch), firecracker.native_arch)
            )?;
            writeln!(out, "format version: {}", firecracker.format_version)?;
            writeln!(out, "file size:      {} bytes", firecracker.file_len)?;
            writeln!(out, "payload size:   {} bytes", firecracker.payload_len)?;
            writeln!(
                out,
                "crc64:          {}",
                crc_line(firecracker.stored_crc, firecracker.computed_crc)
            )?;
            writeln!(
                out,
                "state:          Firecracker's own encoding, not ours to decode"
            )?;
            return Err(firecracker_failure(path, &firecracker));
        }
        let info = SnapshotInfo::from_bytes(&bytes).map_err(|e| cannot_read().because(&e))?;
        let file = SnapshotFile { path, bytes, info };
        let info = &file.info;
        let supported = self.map.supported_range();
        let mut problems = Vec::new();

        if let Err(wrong_magic) = get_format_version(info.magic) {
            problems.push(wrong_magic.to_string());
        }
        if info.native_arch && (info.format_version == 0 || info.format_version > FORMAT_VERSION) {
            problems.push(
                SnapshotError::InvalidFormatVersion {
                    found: info.format_version,
                    supported: FORMAT_VERSION,
                }
                .to_string(),
            );
        }
        if schema.is_none() && !supported.contains(&info.data_version) {
            problems.push(format!(
                "data version {} is not supported (this build reads {}..={}); decode it with \
                 --schema, the writing build's export of that app version",
                info.data_version,
                supported.start(),
                supported.end()
            ));
        }
        if !info.crc_ok() {
            let crc = SnapshotError::Crc64 {
                stored: info.stored_crc,
                computed: info.computed_crc,
            };
            let schema = schema.as_ref().map(|(_, schema)| schema);
            problems.push(
                self.truncation(&file, schema, max_state_len)
                    .unwrap_or_else(|| crc.to_string()),
            );
        }

        writeln!(out, "file:           {}", path.display())?;
        writeln!(
            out,
            "magic:          {:#018x} ({})",
            info.magic,
            arch_line(info.arch, info.native_arch)
        )?;
        writeln!(
            out,
            "format version: {} (this build reads 1..={FORMAT_VERSION})",
            info.format_version
        )?;
        writeln!(
            out,
            "data version:   {} (this build reads {}..={})",
            info.data_version,
            supported.start(),
            supported.end()
        )?;
        writeln!(out, "file size:      {} bytes", info.file_len)?;
        writeln!(out, "state size:     {} bytes", info.state_len)?;
        writeln!(
            out,
            "crc64:          {}",
            crc_line(info.stored_crc, info.computed_crc)
        )?;
        if !problems.is_empty() {
            return Err(
                Failure::new(format!("{} is not a sound snapshot", path.display()))
                    .cause(problems.join("; ")),
            );
        }

        match &schema {
            Some((schema_path, schema)) => {
                let decoded = self.decode_with_schema(
                    &file,
                    schema_path,
                    schema,
                    schema_args.root.as_deref(),
                    max_state_len,
                )?;
                writeln!(
                    out,
                    "state:          {} decoded with {}",
                    decoded.root,
                    schema_path.display()
                )?;
            }
            None => {
                let (state, data_version) = self.load(&file, max_state_len)?;
                writeln!(
                    out,
                    "state:          {}, read by this build",
                    self.own_root()
                )?;
                if let Some(describe) = &self.describe {
                    for (label, text) in describe(&state, data_version) {
                        writeln!(out, "{:<16}{text}", format!("{label}:"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `verify`: a full load, CRC included, then the VMM's own checks; with `--schema`,
    /// a full decode with the schema.
    pub(crate) fn verify(
        &self,
        out: &mut dyn Write,
        path: &Path,
        schema_args: &SchemaArgs,
        max_state_len: u64,
    ) -> Result<(), Failure> {
        let file = self.read(path, max_state_len, "cannot load")?;
        if let Some(schema_path) = &schema_args.schema {
            let schema = read_schema(schema_path)?;
            let decoded = self.decode_with_schema(
                &file,
                schema_path,
                &schema,
                schema_args.root.as_deref(),
                max_state_len,
            )?;
            writeln!(
                out,
                "{}: ok: data version {}, {} decoded with {} (the VMM's own checks need its \
                 build)",
                path.display(),
                decoded.data_version,
                decoded.root,
                schema_path.display()
            )?;
            return Ok(());
        }
        let (state, data_version) = self.load(&file, max_state_len)?;
        let summary = match &self.verify {
            Some(check) => check(&state).map_err(|e| {
                Failure::new(format!("{} is not sound", path.display())).because(&*e)
            })?,
            None => self.own_root(),
        };
        writeln!(
            out,
            "{}: ok: data version {data_version}, {summary}",
            path.display()
        )?;
        Ok(())
    }

    /// `dump`: the decoded state, as text or JSON.
    pub(crate) fn dump(
        &self,
        out: &mut dyn Write,
        path: &Path,
        schema_args: &SchemaArgs,
        max_state_len: u64,
        json: bool,
        memory: bool,
    ) -> Result<(), Failure> {
        let file = self.read(path, max_state_len, "cannot load")?;
        let schema = match &schema_args.schema {
            Some(schema_path) => Some((schema_path.as_path(), read_schema(schema_path)?)),
            None => None,
        };
        let decoded = self.decode(
            &file,
            schema.as_ref().map(|(path, schema)| (*path, schema)),
            schema_args.root.as_deref(),
            max_state_len,
        )?;
        drop(file);
        if json {
            let options = if memory {
                JsonOptions::new()
            } else {
                JsonOptions::new().summarize_bytes_over(SUMMARIZE_BYTES_OVER)
            };
            let document = serde_json::json!({
                "data_version": decoded.data_version,
                "root": decoded.root,
                "state": decoded.value.to_json_with(&options),
            });
            serde_json::to_writer_pretty(&mut *out, &document).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(out, "data_version: {}", decoded.data_version)?;
            writeln!(out, "root: {}", decoded.root)?;
            write_text(out, "", &decoded.value, memory)?;
        }
        Ok(())
    }

    /// `diff`: field-level differences between two snapshots.
    pub(crate) fn diff(
        &self,
        out: &mut dyn Write,
        old: &Path,
        new: &Path,
        schemas: &[PathBuf],
        root: Option<String>,
        max_state_len: u64,
    ) -> Result<(), Failure> {
        if schemas.len() > 2 {
            return Err(Failure::new("diff takes at most two --schema files").cause(
                "the first decodes the old snapshot and the second the new one; one decodes both",
            ));
        }
        let schemas = schemas
            .iter()
            .map(|path| Ok((path.as_path(), read_schema(path)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        let schema_of = |index: usize| {
            schemas
                .get(index)
                .or_else(|| schemas.first())
                .map(|(path, schema)| (*path, schema))
        };
        let (old_value, new_value, versions) = if schemas.is_empty() {
            // Both read with this build's types, and compared at the newer data version:
            // what this build sees of each.
            let old_file = self.read(old, max_state_len, "cannot load")?;
            let (old_state, old_version) = self.load(&old_file, max_state_len)?;
            drop(old_file);
            let new_file = self.read(new, max_state_len, "cannot load")?;
            let (new_state, new_version) = self.load(&new_file, max_state_len)?;
            drop(new_file);
            let common = old_version.max(new_version);
            let versions = if old_version == new_version {
                format!("data version {common}")
            } else {
                format!(
                    "data versions {old_version} and {new_version}, compared as this build \
                     reads them at {common}"
                )
            };
            (
                self.value_at(old_state, common, max_state_len)?,
                self.value_at(new_state, common, max_state_len)?,
                versions,
            )
        } else {
            // Without the types: each as its schema describes it, fields matched by name.
            let old_file = self.read(old, max_state_len, "cannot load")?;
            let old_state = self.decode(&old_file, schema_of(0), root.as_deref(), max_state_len)?;
            drop(old_file);
            let new_file = self.read(new, max_state_len, "cannot load")?;
            let new_state = self.decode(&new_file, schema_of(1), root.as_deref(), max_state_len)?;
            drop(new_file);
            let versions = if old_state.data_version == new_state.data_version {
                format!("data version {}", old_state.data_version)
            } else {
                format!(
                    "data versions {} and {}",
                    old_state.data_version, new_state.data_version
                )
            };
            (old_state.value, new_state.value, versions)
        };

        let differences = diff_values(&old_value, &new_value);
        if differences.is_empty() {
            writeln!(
                out,
                "{} and {}: equal ({versions})",
                old.display(),
                new.display()
            )?;
            return Ok(());
        }
        for difference in &differences {
            writeln!(out, "{difference}")?;
        }
        Err(
            Failure::new(format!("{} and {} differ", old.display(), new.display())).cause(format!(
                "{} difference(s) (listed on stdout; {versions})",
                differences.len()
            )),
        )
    }

    /// `convert`: re-writes the state at another data version, then reads the new file
    /// back and lists what the target version could not hold.
    pub(crate) fn convert(
        &self,
        out: &mut dyn Write,
        path: &Path,
        to_version: u16,
        output: &Path,
        max_state_len: u64,
    ) -> Result<(), Failure> {
        let map = self.map.clone().with_limits(typed_limits(max_state_len));
        let options = LoadOptions::default().with_max_state_len(max_state_len);
        // Loaded straight from the file (no second copy of its bytes); a failure is read
        // again whole, to be reported as every other command reports it.
        let (state, from_version): (T, u16) = match Snapshot::load_file_with(path, &map, &options) {
            Ok(loaded) => loaded,
            Err(err) => {
                let file = self.read(path, max_state_len, "cannot load")?;
                self.load(&file, max_state_len)?;
                return Err(Failure::new(format!("cannot load {}", path.display())).because(&err));
            }
        };
        Snapshot::new(self.map.clone(), to_version)
            .save_to_file(output, &state)
            .map_err(|e| Failure::new(format!("cannot write {}", output.display())).because(&e))?;
        // What a build reading the new file sees, against the original, both at the
        // original's version: fields the target version lacks show their defaults. One
        // state at a time is held beside the values.
        let before = self.value_at(state, from_version, max_state_len)?;
        let (converted, _): (T, u16) = Snapshot::load_file_with(output, &map, &options)
            .map_err(|e| Failure::new(format!("cannot load {}", output.display())).because(&e))?;
        let size = std::fs::metadata(output).map_or(0, |m| m.len());
        writeln!(
            out,
            "wrote {}: data version {to_version} (was {from_version}), {size} bytes",
            output.display(),
        )?;
        let after = self.value_at(converted, from_version, max_state_len)?;

        let changes = diff_values(&before, &after);
        if !changes.is_empty() {
            writeln!(
                out,
                "data version {to_version} cannot hold {} value(s); a build reading it sees:",
                changes.len()
            )?;
            for change in changes.iter().take(MAX_LISTED_CHANGES) {
                writeln!(out, "  {change}")?;
            }
            if changes.len() > MAX_LISTED_CHANGES {
                writeln!(out, "  ... and {} more", changes.len() - MAX_LISTED_CHANGES)?;
            }
        }
        Ok(())
    }

    /// `schema export`: this build's schema of one app version.
    pub(crate) fn schema_export(
        &self,
        out: &mut dyn Write,
        version: Option<u16>,
    ) -> Result<(), Failure> {
        let version = version.unwrap_or_else(|| self.map.latest_version());
        let schema = export::<T>(&self.map, version).map_err(|e| {
            Failure::new(format!("cannot export the schema of app version {version}")).because(&e)
        })?;
        out.write_all(schema.to_json().as_bytes())?;
        Ok(())
    }

    /// `schema check`: every difference that would make one build misread the other's
    /// snapshots.
    pub(crate) fn schema_check(
        &self,
        out: &mut dyn Write,
        old: &Path,
        new: &Path,
    ) -> Result<(), Failure> {
        let old_schema = read_schema(old)?;
        let new_schema = read_schema(new)?;
        if old_schema.app_version != new_schema.app_version {
            // Two app versions differ by design: comparing them says nothing about either.
            return Err(Failure::new(format!(
                "{} and {} describe different app versions",
                old.display(),
                new.display()
            ))
            .cause(format!(
                "{} is app version {} and {} app version {}: compare two exports of the same \
                 app version (`{} schema export --version {}` in the new build)",
                old.display(),
                old_schema.app_version,
                new.display(),
                new_schema.app_version,
                self.name,
                old_schema.app_version
            )));
        }
        let differences = compare(&old_schema, &new_schema);
        if differences.is_empty() {
            writeln!(
                out,
                "{} and {}: compatible (app version {})",
                old.display(),
                new.display(),
                new_schema.app_version
            )?;
            return Ok(());
        }
        for difference in &differences {
            if difference.path.is_empty() {
                writeln!(out, "{}", difference.message)?;
            } else {
                writeln!(out, "{difference}")?;
            }
        }
        Err(
            Failure::new(format!("{} and {} differ", old.display(), new.display())).cause(format!(
                "{} breaking difference(s) (listed on stdout)",
                differences.len()
            )),
        )
    }
}
