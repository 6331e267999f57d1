//! The snapshot's info side file (`<FILE>.info`, see `snapshot::WriterInfo` and
//! `docs/FORMAT.md`): written next to every snapshot `run --save` writes, reported by
//! `restore` on stderr (stdout keeps the stable output format).

use std::path::Path;

use kvm_state::{version_map, HostFacts, MicrovmState};
use snapshot::{SnapshotError, WriterInfo};

use crate::cli::Failure;

/// The schema fingerprint of `app_version` of this build (`snapshot::schema_fingerprint`).
pub(crate) fn schema_fingerprint(app_version: u16) -> Option<String> {
    let schema = versionize::schema::export::<MicrovmState>(&version_map(), app_version).ok()?;
    Some(snapshot::schema_fingerprint(&schema))
}

/// `GenuineIntel family 6 model 85 stepping 7`, or `unknown`.
fn cpu(facts: &HostFacts) -> String {
    if facts.is_known() {
        format!(
            "{} family {} model {} stepping {}",
            facts.cpu_vendor, facts.cpu_family, facts.cpu_model, facts.cpu_stepping
        )
    } else {
        "unknown".to_owned()
    }
}

/// Writes `<path>.info` for the snapshot just saved at `app_version` on a host with `facts`.
pub(crate) fn write_info(path: &Path, app_version: u16, facts: &HostFacts) -> Result<(), Failure> {
    let mut info = WriterInfo::new(crate::cli::vmm_name(), app_version)
        .with_host_cpu(cpu(facts))
        .with_schema_fingerprint(schema_fingerprint(app_version).unwrap_or_default());
    info.save_for(path).map_err(|e| {
        Failure::Other(format!(
            "cannot save {}: {}",
            snapshot::writer_info_path(path).display(),
            crate::cli::chain(&e)
        ))
    })
}

/// Reports `<path>.info` on stderr, if there is one. A side file whose fingerprint differs from
/// this build's for the same data version means a build outside this release line wrote the
/// snapshot with another layout: refused (`SchemaFingerprint`). A stale or malformed side file
/// is reported and ignored: the snapshot is checked on its own (CRC-64, data version).
pub(crate) fn report_info(path: &Path) -> Result<(), Failure> {
    match WriterInfo::load_for(path) {
        Ok(None) => Ok(()),
        Ok(Some(info)) => {
            eprintln!(
                "demo-vmm: {}: written by {} at {} (unix time) on {} ({}), data version {}, schema {}",
                path.display(),
                info.vmm,
                info.saved_at,
                info.host_arch,
                info.host_cpu,
                info.data_version,
                info.schema_fingerprint
            );
            match schema_fingerprint(info.data_version) {
                Some(ours) if !info.schema_fingerprint.is_empty() && ours != info.schema_fingerprint => {
                    Err(Failure::Refused(format!(
                        "{}: SchemaFingerprint: data version {} has schema {} in this build, the writer's has {}",
                        path.display(),
                        info.data_version,
                        ours,
                        info.schema_fingerprint
                    )))
                }
                _ => Ok(()),
            }
        }
        Err(e @ (SnapshotError::WriterInfo { .. } | SnapshotError::WriterInfoStale { .. })) => {
            eprintln!(
                "demo-vmm: ignoring the side file: {}",
                crate::cli::chain(&e)
            );
            Ok(())
        }
        // The snapshot itself cannot be read: the load that follows says why.
        Err(_) => Ok(()),
    }
}
