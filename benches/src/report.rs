//! The ratio table of `benches/README.md`, read from criterion's results.
//!
//! Criterion writes the estimates of benchmark `group/name` to
//! `<target>/criterion/group/name/new/estimates.json`; [`table`] reads the medians and
//! prints one markdown row per measure of issue 7: ours, the baseline, their ratio, the
//! target and whether it is met.
//!
//! # Example
//! ```
//! let table = benchmarks::report::table(std::path::Path::new("/nonexistent"));
//! assert!(table.contains("| encode, latest version / bincode encode |"));
//! assert!(table.contains("not run"));
//! ```

use std::fmt::Write as _;
use std::path::Path;

/// How the two medians of a row compare.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ratio {
    /// `ours / baseline` times; the target is a maximum.
    TimeAtMost(f64),
    /// `baseline / ours` times, that is ours' throughput over the baseline's (same bytes);
    /// the target is a minimum.
    ThroughputAtLeast(f64),
    /// `ours / baseline` times, shown for information.
    Info,
}

/// One measure: two benchmarks (`group/name`) and how they compare.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    /// What the row measures.
    pub name: &'static str,
    /// The benchmark of ours.
    pub ours: &'static str,
    /// The benchmark it is compared with.
    pub baseline: &'static str,
    /// The ratio and its target.
    pub ratio: Ratio,
}

const fn measure(
    name: &'static str,
    ours: &'static str,
    baseline: &'static str,
    ratio: Ratio,
) -> Measure {
    Measure {
        name,
        ours,
        baseline,
        ratio,
    }
}

/// The measures of issue 7 (targets first), then informative ones.
pub const MEASURES: &[Measure] = &[
    measure(
        "encode, latest version / bincode encode",
        "state/versionize_encode_latest",
        "state/bincode_encode",
        Ratio::TimeAtMost(1.0),
    ),
    measure(
        "decode, latest version / bincode decode",
        "state/versionize_decode_latest",
        "state/bincode_decode",
        Ratio::TimeAtMost(1.0),
    ),
    measure(
        "encode to older version (ser_fn) / encode latest",
        "state/versionize_encode_older",
        "state/versionize_encode_latest",
        Ratio::TimeAtMost(1.5),
    ),
    measure(
        "encode, 1000 app versions / 4 app versions",
        "version_map/encode_1000",
        "version_map/encode_4",
        Ratio::TimeAtMost(1.05),
    ),
    measure(
        "decode, 1000 app versions / 4 app versions",
        "version_map/decode_1000",
        "version_map/decode_4",
        Ratio::TimeAtMost(1.05),
    ),
    measure(
        "`Vec<u8>` 4 KiB field encode: throughput / memcpy",
        "bytes/vec_u8_4k_encode",
        "bytes/memcpy_4k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "`Vec<u8>` 4 KiB field decode: throughput / memcpy",
        "bytes/vec_u8_4k_decode",
        "bytes/memcpy_4k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "`[u8; 4096]` field encode: throughput / memcpy",
        "bytes/array_u8_4k_encode",
        "bytes/memcpy_4k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "`[u8; 4096]` field decode: throughput / memcpy",
        "bytes/array_u8_4k_decode",
        "bytes/memcpy_4k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "`Vec<u8>` 64 KiB field encode: throughput / memcpy",
        "bytes/vec_u8_64k_encode",
        "bytes/memcpy_64k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "`Vec<u8>` 64 KiB field decode: throughput / memcpy",
        "bytes/vec_u8_64k_decode",
        "bytes/memcpy_64k",
        Ratio::ThroughputAtLeast(0.5),
    ),
    measure(
        "snapshot save with CRC / without CRC",
        "snapshot/save_crc",
        "snapshot/save_without_crc",
        Ratio::TimeAtMost(1.3),
    ),
    measure(
        "KVM state save, 1 vCPU: serialization + CRC / ioctl time",
        "kvm/serialize_crc_1vcpu",
        "kvm/ioctl_save_1vcpu",
        Ratio::TimeAtMost(0.2),
    ),
    measure(
        "KVM state save, 4 vCPUs: serialization + CRC / ioctl time",
        "kvm/serialize_crc_4vcpu",
        "kvm/ioctl_save_4vcpu",
        Ratio::TimeAtMost(0.2),
    ),
    measure(
        "KVM state save, 16 vCPUs: serialization + CRC / ioctl time",
        "kvm/serialize_crc_16vcpu",
        "kvm/ioctl_save_16vcpu",
        Ratio::TimeAtMost(0.2),
    ),
    measure(
        "`Vec<u8>` 4 KiB field decode / `to_vec` (allocate + memcpy + free)",
        "bytes/vec_u8_4k_decode",
        "bytes/to_vec_4k",
        Ratio::Info,
    ),
    measure(
        "`Vec<u8>` 64 KiB field decode / `to_vec` (allocate + memcpy + free)",
        "bytes/vec_u8_64k_decode",
        "bytes/to_vec_64k",
        Ratio::Info,
    ),
    measure(
        "snapshot load with CRC / unchecked_load",
        "snapshot/load_crc",
        "snapshot/unchecked_load",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 1 vCPU: load (CRC + decode) / ioctl time",
        "kvm/load_1vcpu",
        "kvm/ioctl_restore_1vcpu",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 4 vCPUs: load (CRC + decode) / ioctl time",
        "kvm/load_4vcpu",
        "kvm/ioctl_restore_4vcpu",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 16 vCPUs: load (CRC + decode) / ioctl time",
        "kvm/load_16vcpu",
        "kvm/ioctl_restore_16vcpu",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 1 vCPU: checks before any write (`check_restore`) / ioctl time",
        "kvm/check_restore_1vcpu",
        "kvm/ioctl_restore_1vcpu",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 4 vCPUs: checks before any write (`check_restore`) / ioctl time",
        "kvm/check_restore_4vcpu",
        "kvm/ioctl_restore_4vcpu",
        Ratio::Info,
    ),
    measure(
        "KVM state restore, 16 vCPUs: checks before any write (`check_restore`) / ioctl time",
        "kvm/check_restore_16vcpu",
        "kvm/ioctl_restore_16vcpu",
        Ratio::Info,
    ),
    measure(
        "one `crc64` call over the saved file / save without CRC",
        "snapshot/crc64_of_file",
        "snapshot/save_without_crc",
        Ratio::Info,
    ),
    measure(
        "CRC64 1 MiB / memcpy 1 MiB",
        "crc/crc64_1mib",
        "crc/memcpy_1mib",
        Ratio::Info,
    ),
    measure(
        "encode, 100 app versions / 4 app versions",
        "version_map/encode_100",
        "version_map/encode_4",
        Ratio::Info,
    ),
    measure(
        "encode, latest version / memcpy",
        "state/versionize_encode_latest",
        "state/memcpy",
        Ratio::Info,
    ),
    measure(
        "decode, latest version / memcpy",
        "state/versionize_decode_latest",
        "state/memcpy",
        Ratio::Info,
    ),
    measure(
        "bincode encode into a slice / bincode encode into a `Vec`",
        "state/bincode_encode_slice",
        "state/bincode_encode",
        Ratio::Info,
    ),
];

/// The median, in nanoseconds, of benchmark `id` (`group/name`) under `criterion_dir`, or
/// `None` when it has not run or its estimates cannot be read.
#[must_use]
pub fn median_ns(criterion_dir: &Path, id: &str) -> Option<f64> {
    let path = criterion_dir.join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// A duration in nanoseconds with a readable unit.
#[must_use]
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// One markdown row for `measure`.
#[must_use]
pub fn row(criterion_dir: &Path, measure: &Measure) -> String {
    let ours = median_ns(criterion_dir, measure.ours);
    let baseline = median_ns(criterion_dir, measure.baseline);
    let cell = |median: Option<f64>, id: &str| match median {
        Some(ns) => format!("{} (`{id}`)", format_ns(ns)),
        None => format!("— (`{id}`)"),
    };
    let (ratio, target, met) = match (ours, baseline) {
        (Some(ours), Some(baseline)) if ours > 0.0 && baseline > 0.0 => match measure.ratio {
            Ratio::TimeAtMost(max) => {
                let ratio = ours / baseline;
                (
                    format!("{ratio:.3}"),
                    format!("≤ {max}"),
                    yes_no(ratio <= max),
                )
            }
            Ratio::ThroughputAtLeast(min) => {
                let ratio = baseline / ours;
                (
                    format!("{ratio:.3}"),
                    format!("≥ {min}"),
                    yes_no(ratio >= min),
                )
            }
            Ratio::Info => (format!("{:.3}", ours / baseline), "—".into(), "info".into()),
        },
        _ => ("—".into(), "—".into(), "not run".into()),
    };
    format!(
        "| {} | {} | {} | {ratio} | {target} | {met} |",
        measure.name,
        cell(ours, measure.ours),
        cell(baseline, measure.baseline),
    )
}

fn yes_no(met: bool) -> String {
    if met { "yes" } else { "**no**" }.to_owned()
}

/// The whole markdown table: one row per entry of [`MEASURES`]. The `kvm/*` rows say
/// "not run" on hosts without a usable `/dev/kvm`.
#[must_use]
pub fn table(criterion_dir: &Path) -> String {
    let mut out = String::new();
    out.push_str("| measure | ours (median) | baseline (median) | ratio | target | met? |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for measure in MEASURES {
        let _ = writeln!(out, "{}", row(criterion_dir, measure));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_estimate(dir: &Path, id: &str, median: f64) {
        let path = dir.join(id).join("new");
        std::fs::create_dir_all(&path).unwrap();
        let json = format!(r#"{{"median":{{"point_estimate":{median},"standard_error":1.0}}}}"#);
        std::fs::write(path.join("estimates.json"), json).unwrap();
    }

    #[test]
    fn test_report_row_ratios_and_targets() {
        let dir = std::env::temp_dir().join(format!("benchmarks-report-{}", std::process::id()));
        write_estimate(&dir, "state/versionize_encode_latest", 800.0);
        write_estimate(&dir, "state/bincode_encode", 1000.0);
        write_estimate(&dir, "bytes/vec_u8_4k_encode", 400.0);
        write_estimate(&dir, "bytes/memcpy_4k", 100.0);
        let encode = row(&dir, &MEASURES[0]);
        assert!(encode.ends_with("| 0.800 | ≤ 1 | yes |"), "{encode}");
        let bytes = row(&dir, &MEASURES[5]);
        assert!(bytes.ends_with("| 0.250 | ≥ 0.5 | **no** |"), "{bytes}");
        let missing = row(&dir, &MEASURES[1]);
        assert!(missing.ends_with("| — | — | not run |"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_report_format_ns_units() {
        assert_eq!(format_ns(12.34), "12.3 ns");
        assert_eq!(format_ns(12_340.0), "12.34 µs");
        assert_eq!(format_ns(12_340_000.0), "12.34 ms");
    }
}
