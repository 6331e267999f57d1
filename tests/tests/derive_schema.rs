//! `#[derive(Versionize)]` describes each type for `versionize::schema`: name (with generic
//! arguments), type version at the described app version, fields with their types and
//! `start`/`end`, variants with their indexes.

use versionize::schema::{export, TypeKind};
use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Inner<T, const N: usize> {
    values: Vec<T>,
    bytes: [u8; N],
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Kind {
    Off,
    #[version(start = 2, default_fn = "off")]
    On(u8, Box<Kind>),
}

impl Kind {
    fn off(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Kind::Off)
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Root {
    id: u32,
    #[version(start = 2, end = 3, default_fn = "no_inner")]
    inner: Inner<u16, 4>,
    kind: Kind,
}

impl Root {
    fn no_inner(_: u16) -> Inner<u16, 4> {
        Inner {
            values: Vec::new(),
            bytes: [0; 4],
        }
    }
}

#[test]
fn test_derive_schema_describes_fields_and_variants() {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Root::type_id(), 2)
        .set_type_version(Kind::type_id(), 2);
    let schema = export::<Root>(&map, 2).expect("export");
    assert_eq!(schema.root, "Root");

    let root = &schema.types["Root"];
    assert_eq!((root.version, root.latest_version), (2, 3));
    let TypeKind::Struct { fields } = &root.kind else {
        panic!("Root is a struct: {root:?}");
    };
    let fields: Vec<_> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str(), f.start, f.end, f.present))
        .collect();
    assert_eq!(
        fields,
        [
            ("id", "u32", 1, None, true),
            ("inner", "Inner<u16, 4>", 2, Some(3), true),
            ("kind", "Kind", 1, None, true),
        ]
    );

    let kind = &schema.types["Kind"];
    let TypeKind::Enum { variants } = &kind.kind else {
        panic!("Kind is an enum: {kind:?}");
    };
    assert_eq!(variants.len(), 2);
    assert_eq!(
        (
            variants[1].name.as_str(),
            variants[1].index,
            variants[1].start,
            variants[1].present
        ),
        ("On", 1, 2, true)
    );
    let on_fields: Vec<_> = variants[1]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str()))
        .collect();
    assert_eq!(on_fields[0], ("0", "u8"));
    assert!(schema.types.contains_key("Inner<u16, 4>"));

    // At app version 1, `inner` is not written and `On` cannot be.
    let old = export::<Root>(&map, 1).expect("export");
    let TypeKind::Struct { fields } = &old.types["Root"].kind else {
        panic!("struct");
    };
    assert!(!fields[1].present);
    let TypeKind::Enum { variants } = &old.types["Kind"].kind else {
        panic!("enum");
    };
    assert!(!variants[1].present);
}
