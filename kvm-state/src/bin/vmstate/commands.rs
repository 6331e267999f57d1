//! What each subcommand does. Each writes its report to `out` and returns a [`Failure`] for
//! anything that makes the file, or the check, unsound.

use std::io::Write;
use std::path::Path;

use kvm_state::{version_map, MicrovmState, CURRENT_APP_VERSION};
use snapshot::magic::host_arch;
use snapshot::{get_format_version, SnapshotError, SnapshotInfo, FORMAT_VERSION, MIN_SNAPSHOT_LEN};
use versionize::schema::{compare, export, Schema};

use crate::failure::Failure;
use crate::render;

/// The largest schema file `schema check` reads (this build's exports are about
/// 40 KiB): a bigger file, or an endless one such as /dev/zero, is refused before reading.
const MAX_SCHEMA_LEN: u64 = 16 << 20;

/// At most this many changes are listed after a conversion.
const MAX_LISTED_CHANGES: usize = 20;

fn load(file: &Path, max_state_len: u64) -> Result<(MicrovmState, u16), Failure> {
    MicrovmState::load_file_with_cap(file, max_state_len)
        .map_err(|e| Failure::new(format!("cannot load {}", file.display())).because(&e))
}

/// `vmstate info`: the container fields, without decoding the state.
pub(crate) fn info(out: &mut dyn Write, file: &Path, max_state_len: u64) -> Result<(), Failure> {
    let info = SnapshotInfo::from_file(file, max_state_len.saturating_add(MIN_SNAPSHOT_LEN))
        .map_err(|e| Failure::new(format!("cannot read {}", file.display())).because(&e))?;
    let latest = version_map().latest_version();
    let mut problems = Vec::new();

    let arch = match info.arch {
        Some(arch) if info.native_arch => format!("{arch}, this host's architecture"),
        Some(arch) => format!("{arch}, NOT this host's {}", host_arch()),
        None => "unknown: not a snapshot".to_owned(),
    };
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
    if info.data_version == 0 || info.data_version > latest {
        problems.push(
            SnapshotError::InvalidDataVersion {
                found: info.data_version,
                latest,
            }
            .to_string(),
        );
    }
    let crc = if info.crc_ok() {
        format!("ok ({:#018x})", info.stored_crc)
    } else {
        problems.push(
            SnapshotError::Crc64 {
                stored: info.stored_crc,
                computed: info.computed_crc,
            }
            .to_string(),
        );
        format!(
            "MISMATCH: stored {:#018x}, contents hash to {:#018x}",
            info.stored_crc, info.computed_crc
        )
    };

    writeln!(out, "file:           {}", file.display())?;
    writeln!(out, "magic:          {:#018x} ({arch})", info.magic)?;
    writeln!(
        out,
        "format version: {} (this build reads 1..={FORMAT_VERSION})",
        info.format_version
    )?;
    writeln!(
        out,
        "data version:   {} (this build reads 1..={latest})",
        info.data_version
    )?;
    writeln!(out, "file size:      {} bytes", info.file_len)?;
    writeln!(out, "state size:     {} bytes", info.state_len)?;
    writeln!(out, "crc64:          {crc}")?;

    if problems.is_empty() {
        Ok(())
    } else {
        Err(
            Failure::new(format!("{} is not a sound snapshot", file.display()))
                .cause(problems.join("; ")),
        )
    }
}

/// `vmstate verify`: a full load, CRC included, then the checks every restore makes before
/// touching KVM that need no target host ([`kvm_state::check_state`]).
pub(crate) fn verify(out: &mut dyn Write, file: &Path, max_state_len: u64) -> Result<(), Failure> {
    let (state, data_version) = load(file, max_state_len)?;
    kvm_state::check_state(&state)
        .map_err(|e| Failure::new(format!("{} is not sound", file.display())).because(&e))?;
    // check_state refused overlapping regions, so the sizes add up within u64.
    let memory = state
        .memory
        .iter()
        .fold(0u64, |sum, region| sum.saturating_add(region.size));
    writeln!(
        out,
        "{}: ok: data version {data_version}, {} vcpu(s), {} serial and {} virtio-mmio device(s), \
         {} memory region(s) of {memory} bytes",
        file.display(),
        state.vcpus.len(),
        state.devices.serial.len(),
        state.devices.virtio_mmio.len(),
        state.memory.len(),
    )?;
    Ok(())
}

/// `vmstate dump`: the decoded state, as text or JSON.
pub(crate) fn dump(
    out: &mut dyn Write,
    file: &Path,
    max_state_len: u64,
    json: bool,
    memory: bool,
) -> Result<(), Failure> {
    let (state, data_version) = load(file, max_state_len)?;
    let view = render::StateView::new(&state, data_version, memory);
    if json {
        view.write_json(out)
    } else {
        view.flat().write_text(out)
    }
}

/// `vmstate convert`: re-writes the state at another data version, then reads the new file
/// back and lists what the target version could not hold.
pub(crate) fn convert(
    out: &mut dyn Write,
    file: &Path,
    to_version: u16,
    output: &Path,
    max_state_len: u64,
) -> Result<(), Failure> {
    let (state, from_version) = load(file, max_state_len)?;
    state
        .save_to_file(output, to_version)
        .map_err(|e| Failure::new(format!("cannot write {}", output.display())).because(&e))?;
    let (written, _) = load(output, max_state_len)?;
    let size = std::fs::metadata(output).map_or(0, |m| m.len());
    writeln!(
        out,
        "wrote {}: data version {to_version} (was {from_version}), {size} bytes",
        output.display()
    )?;

    // Only the fields that differ are compared, as compact JSON: no JSON tree is built.
    let before = render::StateView::new(&state, from_version, false)
        .without_fields_equal_to(&written)
        .state_to_compact()?;
    let after = render::StateView::new(&written, to_version, false)
        .without_fields_equal_to(&state)
        .state_to_compact()?;
    drop((state, written));
    let changes = render::differences(&before, &after, MAX_LISTED_CHANGES);
    if changes.count > 0 {
        writeln!(
            out,
            "data version {to_version} cannot hold {} value(s); a build reading it sees:",
            changes.count
        )?;
        for change in &changes.listed {
            writeln!(out, "  {change}")?;
        }
        if changes.count > changes.listed.len() {
            writeln!(
                out,
                "  ... and {} more",
                changes.count - changes.listed.len()
            )?;
        }
    }
    Ok(())
}

/// `vmstate schema export`: this build's schema of one app version.
pub(crate) fn schema_export(out: &mut dyn Write, version: Option<u16>) -> Result<(), Failure> {
    let version = version.unwrap_or(CURRENT_APP_VERSION);
    let schema = export::<MicrovmState>(&version_map(), version).map_err(|e| {
        Failure::new(format!("cannot export the schema of app version {version}")).because(&e)
    })?;
    out.write_all(schema.to_json().as_bytes())?;
    Ok(())
}

fn read_schema(path: &Path) -> Result<Schema, Failure> {
    let bytes = snapshot::read_regular_file(path, MAX_SCHEMA_LEN)
        .map_err(|e| Failure::new(format!("cannot read {}", path.display())).because(&e))?;
    let json = String::from_utf8(bytes).map_err(|e| {
        Failure::new(format!("{} is not a schema export", path.display())).because(&e)
    })?;
    Schema::from_json(&json).map_err(|message| {
        Failure::new(format!("{} is not a schema export", path.display())).cause(message)
    })
}

/// `vmstate schema check`: every difference that would make one build misread the other's
/// snapshots.
pub(crate) fn schema_check(out: &mut dyn Write, old: &Path, new: &Path) -> Result<(), Failure> {
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
            "{} is app version {} and {} app version {}: compare two exports of the same app \
             version (`vmstate schema export --version {}` in the new build)",
            old.display(),
            old_schema.app_version,
            new.display(),
            new_schema.app_version,
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
