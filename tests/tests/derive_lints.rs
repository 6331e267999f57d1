//! Derived impls are clean under strict lints: `unused_qualifications` (the generated
//! absolute paths repeat what the user imported), `deprecated` (the type and its fields may
//! be deprecated), every rustc warning, and clippy's `all` and `pedantic` groups (as
//! thiserror's `test_lints.rs`).
#![deny(
    warnings,
    unused_qualifications,
    deprecated,
    clippy::all,
    clippy::pedantic
)]
#![allow(
    clippy::unnecessary_wraps,
    reason = "hooks must return VersionizeResult"
)]
#![allow(clippy::trivially_copy_pass_by_ref, reason = "default_fn takes &self")]

use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
#[deprecated = "replaced by something else"]
struct Old {
    #[deprecated = "use `b`"]
    a: u8,
    #[version(start = 2, default_fn = "default_b", ser_fn = "ser_b", de_fn = "de_b")]
    b: u32,
    #[version(end = 2)]
    gone: Option<u64>,
    #[version(start = 2, end = 3, default_fn = "default_brief", ser_fn = "ser_brief")]
    brief: u8,
}

#[allow(deprecated)]
impl Old {
    fn default_b(version: u16) -> u32 {
        u32::from(version)
    }
    fn ser_b(&mut self, _: u16) -> VersionizeResult<()> {
        self.a = 1;
        Ok(())
    }
    fn de_b(&mut self, _: u16) -> VersionizeResult<()> {
        self.b += 1;
        Ok(())
    }
    fn default_brief(_: u16) -> u8 {
        7
    }
    fn ser_brief(&mut self, _: u16) -> VersionizeResult<()> {
        self.b = u32::from(self.brief);
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Mode {
    #[deprecated = "old mode"]
    Legacy,
    Tuple(u8, String),
    #[version(start = 2, default_fn = "downgrade")]
    Named {
        value: Vec<u16>,
    },
}

impl Mode {
    fn downgrade(&self, _: u16) -> VersionizeResult<Self> {
        match self {
            Mode::Named { value } => Ok(Mode::Tuple(0, format!("{value:?}"))),
            other => Ok(other.clone()),
        }
    }
}

#[derive(Debug, PartialEq, Versionize)]
struct Generic<T, const N: usize>([T; N], Mode);

#[derive(Debug, PartialEq, Versionize)]
struct Unit;

#[test]
#[allow(deprecated)]
fn test_derive_lints_clean() -> Result<(), VersionizeError> {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Old::type_id(), 2)
        .set_type_version(Mode::type_id(), 2);
    let old = Old {
        a: 0,
        b: 9,
        gone: None,
        brief: 5,
    };
    let mut bytes = Vec::new();
    old.serialize(&mut bytes, &map, 1)?;
    assert_eq!(bytes, [1, 0]);
    let back = Old::deserialize(&mut bytes.as_slice(), &map, 1)?;
    assert_eq!((back.b, back.brief), (2, 7));

    let generic = Generic([1u8, 2], Mode::Named { value: vec![3] });
    let mut bytes = Vec::new();
    generic.serialize(&mut bytes, &map, 1)?;
    // Named is absent at v1: written as Tuple(0, "[3]").
    assert_eq!(
        bytes,
        [1, 2, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, b'[', b'3', b']']
    );
    let mut bytes = Vec::new();
    Unit.serialize(&mut bytes, &map, 2)?;
    Mode::Legacy.serialize(&mut bytes, &map, 2)?;
    assert_eq!(bytes, [0, 0, 0, 0]);
    Ok(())
}
