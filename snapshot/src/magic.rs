//! The magic number at the start of every snapshot: an architecture base in the upper 48
//! bits and the format version in the lower 16.

use crate::{Result, SnapshotError};

/// Mask selecting the architecture part of a magic number.
pub const BASE_MAGIC_ID_MASK: u64 = !0xFFFF;

/// Base magic of x86_64 snapshots.
pub const MAGIC_X86_64: u64 = 0x0710_1984_8664_0000;
/// Base magic of aarch64 snapshots.
pub const MAGIC_AARCH64: u64 = 0x0710_1984_AAAA_0000;
/// Base magic of powerpc64 snapshots.
pub const MAGIC_POWERPC64: u64 = 0x0710_1984_CC64_0000;
/// Base magic of riscv64 snapshots.
pub const MAGIC_RISCV64: u64 = 0x0710_1984_C564_0000;

/// The architectures with a snapshot magic, by base magic.
pub const ARCHES: [(u64, &str); 4] = [
    (MAGIC_X86_64, "x86_64"),
    (MAGIC_AARCH64, "aarch64"),
    (MAGIC_POWERPC64, "powerpc64"),
    (MAGIC_RISCV64, "riscv64"),
];

/// Base magic of the architecture this crate is built for.
#[cfg(target_arch = "x86_64")]
pub const BASE_MAGIC_ID: u64 = MAGIC_X86_64;
/// Base magic of the architecture this crate is built for.
#[cfg(target_arch = "aarch64")]
pub const BASE_MAGIC_ID: u64 = MAGIC_AARCH64;
/// Base magic of the architecture this crate is built for.
#[cfg(target_arch = "powerpc64")]
pub const BASE_MAGIC_ID: u64 = MAGIC_POWERPC64;
/// Base magic of the architecture this crate is built for.
#[cfg(target_arch = "riscv64")]
pub const BASE_MAGIC_ID: u64 = MAGIC_RISCV64;

/// The name of the architecture whose base magic `magic` carries, if any.
#[must_use]
pub fn arch_of_magic(magic: u64) -> Option<&'static str> {
    let base = magic & BASE_MAGIC_ID_MASK;
    ARCHES
        .iter()
        .find(|(arch_base, _)| *arch_base == base)
        .map(|(_, name)| *name)
}

/// The name of this build's architecture.
#[must_use]
pub fn host_arch() -> &'static str {
    arch_of_magic(BASE_MAGIC_ID).unwrap_or("unknown")
}

/// The format version carried by `magic`.
///
/// # Errors
/// [`SnapshotError::InvalidMagic`] when `magic` is not this architecture's.
pub fn get_format_version(magic: u64) -> Result<u16> {
    if magic & BASE_MAGIC_ID_MASK != BASE_MAGIC_ID {
        return Err(SnapshotError::InvalidMagic {
            found: magic,
            found_arch: arch_of_magic(magic),
            expected: BASE_MAGIC_ID,
            expected_arch: host_arch(),
        });
    }
    // The mask keeps 16 bits, so the conversion cannot fail.
    Ok(u16::try_from(magic & !BASE_MAGIC_ID_MASK).unwrap_or(u16::MAX))
}

/// This architecture's magic for `format_version`.
#[must_use]
pub fn build_magic_id(format_version: u16) -> u64 {
    BASE_MAGIC_ID | u64::from(format_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_magic_format_version_round_trip() {
        assert_eq!(get_format_version(build_magic_id(1)).ok(), Some(1));
        assert_eq!(
            get_format_version(build_magic_id(0xBEEF)).ok(),
            Some(0xBEEF)
        );
    }

    #[test]
    fn test_magic_flipped_bit_is_rejected() {
        let good = build_magic_id(1);
        let bad = good | (1 << 63);
        match get_format_version(bad) {
            Err(SnapshotError::InvalidMagic {
                found,
                found_arch: None,
                expected,
                ..
            }) => {
                assert_eq!(found, bad);
                assert_eq!(expected, BASE_MAGIC_ID);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn test_magic_other_arch_is_named() {
        for (base, name) in ARCHES {
            if base == BASE_MAGIC_ID {
                continue;
            }
            match get_format_version(base | 1) {
                Err(err @ SnapshotError::InvalidMagic { .. }) => {
                    let SnapshotError::InvalidMagic { found_arch, .. } = &err else {
                        unreachable!()
                    };
                    assert_eq!(*found_arch, Some(name));
                    assert!(err.to_string().contains(name), "{err}");
                    assert!(err.to_string().contains(host_arch()), "{err}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
