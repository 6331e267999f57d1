//! `FamStructWrapper<H>` in a schema: named with its entry type, `FamStructWrapper<H, E>`,
//! so that a schema-driven decoder reads the entries without the Rust types.

use std::io::{Read, Write};

use kvm_bindings::__IncompleteArrayField;
use versionize::schema::{
    decode_value, encode_value, export, FieldSchema, SchemaBuilder, TypeKind, TypeSchema,
};
use versionize::{Limits, VersionMap, Versionize, VersionizeResult};
use vmm_sys_util::fam::{FamStruct, FamStructWrapper};

/// A flexible array struct: a count, a flags word, then `u64` entries.
#[repr(C)]
#[derive(Default)]
struct IrqList {
    count: u32,
    flags: u32,
    entries: __IncompleteArrayField<u64>,
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
        16
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

/// The header's own encoding (count, flags), described field by field so that the schema
/// can decode it: a hand-written impl that follows its layout overrides `describe`.
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

    fn describe(builder: &mut SchemaBuilder<'_>) -> String {
        let name = "schema_decode::IrqList";
        if builder.begin(name) {
            let fields = vec![
                FieldSchema::new("count", builder.describe::<u32>(), 1, None),
                FieldSchema::new("flags", builder.describe::<u32>(), 1, None),
            ];
            builder.finish(TypeSchema {
                name: name.to_owned(),
                version: 1,
                latest_version: 1,
                kind: TypeKind::Struct { fields },
            });
        }
        name.to_owned()
    }
}

type IrqListWrapper = FamStructWrapper<IrqList>;

#[test]
fn test_schema_decode_fam_struct_wrapper_names_its_entry_type() {
    let map = VersionMap::new();
    let schema = export::<IrqListWrapper>(&map, 1).unwrap();
    assert_eq!(schema.root, "FamStructWrapper<schema_decode::IrqList, u64>");

    let wrapper = IrqListWrapper::from_entries(&[0x1111, u64::MAX]).unwrap();
    let mut bytes = Vec::new();
    wrapper.serialize(&mut bytes, &map, 1).unwrap();
    let value = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap();
    assert_eq!(
        value.to_json(),
        serde_json::json!({
            "header": {"count": 2, "flags": 0},
            "entries": ["0x1111", "0xffffffffffffffff"],
        })
    );
    let mut again = Vec::new();
    encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
    assert_eq!(again, bytes);
}
