//! `#[derive(Versionize)]` describes each type for `versionize::schema`: full path (with
//! generic arguments), type version at the described app version, fields with their types and
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
    assert_eq!(schema.root, "derive_schema::Root");

    let root = &schema.types["derive_schema::Root"];
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
            ("inner", "derive_schema::Inner<u16, 4>", 2, Some(3), true),
            ("kind", "derive_schema::Kind", 1, None, true),
        ]
    );

    let kind = &schema.types["derive_schema::Kind"];
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
    assert!(schema.types.contains_key("derive_schema::Inner<u16, 4>"));

    // At app version 1, `inner` is not written and `On` cannot be.
    let old = export::<Root>(&map, 1).expect("export");
    let TypeKind::Struct { fields } = &old.types["derive_schema::Root"].kind else {
        panic!("struct");
    };
    assert!(!fields[1].present);
    // `inner` is not written at app version 1, so `Inner` is not part of it.
    assert!(!old.types.contains_key("derive_schema::Inner<u16, 4>"));
    let TypeKind::Enum { variants } = &old.types["derive_schema::Kind"].kind else {
        panic!("enum");
    };
    assert!(!variants[1].present);
}

mod net {
    #[derive(versionize::prelude::Versionize)]
    pub(crate) struct Config {
        pub(crate) mtu: u16,
    }

    #[derive(versionize::prelude::Versionize)]
    pub(crate) struct Ring<D, const N: usize> {
        pub(crate) descriptors: [D; N],
    }
}

mod block {
    #[derive(versionize::prelude::Versionize)]
    pub(crate) struct Config {
        pub(crate) read_only: bool,
    }
}

#[derive(versionize::prelude::Versionize)]
struct Devices {
    net: net::Config,
    block: block::Config,
    rx: net::Ring<net::Config, 2>,
}

/// Same-name types of two modules are two entries, keyed by module path; a generic
/// instantiation names its arguments by their full paths.
#[test]
fn test_derive_schema_names_types_by_full_path() {
    let schema = export::<Devices>(&VersionMap::new(), 1).expect("export");
    let names: Vec<&str> = schema.types.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "derive_schema::Devices",
            "derive_schema::block::Config",
            "derive_schema::net::Config",
            "derive_schema::net::Ring<derive_schema::net::Config, 2>",
        ]
    );
    let TypeKind::Struct { fields } = &schema.types["derive_schema::block::Config"].kind else {
        panic!("struct");
    };
    assert_eq!(fields[0].name, "read_only");
}
