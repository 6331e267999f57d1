//! `FamStructWrapper` (vmm-sys-util's flexible-array wrapper, as kvm-bindings uses for
//! `kvm_msrs`, `kvm_cpuid2`, ...) through versionize's `vmm-sys-util` feature: the header,
//! then a `u64` count and the entries; a header whose length disagrees with the entries is
//! an error.

use std::io::{Read, Write};

use kvm_bindings::__IncompleteArrayField;
use versionize::{VersionMap, Versionize, VersionizeError, VersionizeResult};
use vmm_sys_util::fam::{FamStruct, FamStructWrapper};

/// A kvm-bindings-style flexible array struct: a count, a flags word, then the entries.
#[repr(C)]
#[derive(Default)]
struct IrqList {
    count: u32,
    flags: u32,
    entries: __IncompleteArrayField<u64>,
}

impl std::fmt::Debug for IrqList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqList")
            .field("count", &self.count)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

impl PartialEq for IrqList {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.flags == other.flags
    }
}

// SAFETY: `IrqList` is `repr(C)` plain data whose flexible array `entries` holds `count`
// `u64`s; `FamStructWrapper` allocates room for `max_len()` entries behind the header and
// keeps `count` within it, which is what the accessors below rely on.
unsafe impl FamStruct for IrqList {
    type Entry = u64;

    fn len(&self) -> usize {
        self.count as usize
    }

    unsafe fn set_len(&mut self, len: usize) {
        self.count = len as u32;
    }

    fn max_len() -> usize {
        64
    }

    fn as_slice(&self) -> &[u64] {
        // SAFETY: the wrapper allocated `count` (at most `max_len()`) initialized entries
        // right after the header.
        unsafe { self.entries.as_slice(self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u64] {
        let len = self.len();
        // SAFETY: as in `as_slice`; the borrow is unique through `&mut self`.
        unsafe { self.entries.as_mut_slice(len) }
    }
}

/// The header's own encoding: count, then flags (the flexible array follows separately).
impl Versionize for IrqList {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        self.count.serialize(writer, map, v)?;
        self.flags.serialize(writer, map, v)
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        Ok(IrqList {
            count: u32::deserialize(reader, map, v)?,
            flags: u32::deserialize(reader, map, v)?,
            entries: __IncompleteArrayField::new(),
        })
    }

    fn version() -> u16 {
        1
    }
}

type IrqListWrapper = FamStructWrapper<IrqList>;

fn encode(value: &IrqListWrapper) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    bytes
}

#[test]
fn test_fam_struct_wire_format_and_round_trip() {
    let wrapper = IrqListWrapper::from_entries(&[0x1111, 0x2222_3333]).unwrap();
    let bytes = encode(&wrapper);
    let mut expected = Vec::new();
    expected.extend_from_slice(&2u32.to_le_bytes()); // header: count
    expected.extend_from_slice(&0u32.to_le_bytes()); // header: flags
    expected.extend_from_slice(&2u64.to_le_bytes()); // entry count
    expected.extend_from_slice(&0x1111u64.to_le_bytes());
    expected.extend_from_slice(&0x2222_3333u64.to_le_bytes());
    assert_eq!(bytes, expected);

    let back = IrqListWrapper::deserialize(&mut bytes.as_slice(), &VersionMap::new(), 1).unwrap();
    assert_eq!(back.as_slice(), wrapper.as_slice());
    assert_eq!(back.as_fam_struct_ref().count, 2);
}

#[test]
fn test_fam_struct_header_length_must_match_entries() {
    let mut bytes = encode(&IrqListWrapper::from_entries(&[1, 2, 3]).unwrap());
    bytes[0] = 2; // header claims 2 entries, 3 follow
    let err =
        IrqListWrapper::deserialize(&mut bytes.as_slice(), &VersionMap::new(), 1).unwrap_err();
    assert!(
        matches!(
            err,
            VersionizeError::FamLength {
                header: 2,
                entries: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn test_fam_struct_rejects_unrepresentable_headers_and_sizes() {
    // A header field other than the length cannot be rebuilt without unsafe code: refused.
    let mut bytes = encode(&IrqListWrapper::from_entries(&[7]).unwrap());
    bytes[4] = 1; // flags = 1
    let err =
        IrqListWrapper::deserialize(&mut bytes.as_slice(), &VersionMap::new(), 1).unwrap_err();
    assert!(matches!(err, VersionizeError::OutOfRange(_)), "{err}");

    // More entries than the struct's maximum.
    let many: Vec<u64> = (0..65).collect();
    let mut bytes = Vec::new();
    65u32.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    0u32.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    many.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    let err =
        IrqListWrapper::deserialize(&mut bytes.as_slice(), &VersionMap::new(), 1).unwrap_err();
    assert!(matches!(err, VersionizeError::OutOfRange(_)), "{err}");
}
