//! Generated code must compile whatever the user has in scope: it names everything by
//! absolute path. Here `Result`, `Ok`, `Err`, `Option`, `Some`, `None`, `Vec`, `Box`,
//! `String`, `Default`, `Clone`, `u16`, `usize` and a module named `versionize` are all
//! shadowed around the derived types, and nothing is imported (as serde's `test_gen.rs`).

mod shadowed {
    #![allow(dead_code, non_camel_case_types)]

    struct Result;
    struct Ok;
    struct Err;
    struct Option;
    struct Some;
    struct None;
    struct Vec;
    struct Box;
    struct String;
    struct Default;
    struct Clone;
    struct TypeId;
    struct Read;
    struct Write;
    struct u16;
    struct usize;
    mod versionize {}

    #[derive(
        ::core::clone::Clone,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
        ::versionize::prelude::Versionize,
    )]
    pub(crate) struct Everything<T> {
        pub(crate) plain: ::core::primitive::u32,
        #[version(
            start = 2,
            default_fn = "default_list",
            ser_fn = "ser_list",
            de_fn = "de_list"
        )]
        pub(crate) list: ::std::vec::Vec<T>,
        #[version(start = 3)]
        pub(crate) boxed: ::std::boxed::Box<::core::primitive::u8>,
        #[version(end = 3)]
        pub(crate) maybe: ::core::option::Option<::std::string::String>,
    }

    impl<T> Everything<T> {
        fn default_list(_: ::core::primitive::u16) -> ::std::vec::Vec<T> {
            ::std::vec::Vec::new()
        }
        fn ser_list(&mut self, _: ::core::primitive::u16) -> ::versionize::VersionizeResult<()> {
            self.plain = 0xEE;
            ::core::result::Result::Ok(())
        }
        fn de_list(&mut self, _: ::core::primitive::u16) -> ::versionize::VersionizeResult<()> {
            self.plain += 1;
            ::core::result::Result::Ok(())
        }
    }

    #[derive(
        ::core::clone::Clone,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
        ::versionize::prelude::Versionize,
    )]
    pub(crate) enum Choice {
        Unit,
        Tuple(::core::primitive::u8, ::std::string::String),
        #[version(start = 2, default_fn = "downgrade")]
        Named {
            value: ::std::vec::Vec<::core::primitive::u16>,
        },
    }

    impl Choice {
        fn downgrade(&self, _: ::core::primitive::u16) -> ::versionize::VersionizeResult<Self> {
            ::core::result::Result::Ok(Choice::Unit)
        }
    }

    #[derive(::core::fmt::Debug, ::core::cmp::PartialEq, ::versionize::prelude::Versionize)]
    pub(crate) struct Tuple(pub(crate) ::core::primitive::u8, pub(crate) Choice);

    #[derive(::core::fmt::Debug, ::core::cmp::PartialEq, ::versionize::prelude::Versionize)]
    pub(crate) struct Unit;

    /// Raw identifiers as field and variant names; errors name them without `r#`.
    #[derive(::core::fmt::Debug, ::core::cmp::PartialEq, ::versionize::prelude::Versionize)]
    pub(crate) struct r#Raw {
        pub(crate) r#type: ::core::primitive::u8,
        #[version(start = 2)]
        pub(crate) r#match: RawKind,
    }

    #[derive(
        ::core::fmt::Debug,
        ::core::default::Default,
        ::core::cmp::PartialEq,
        ::versionize::prelude::Versionize,
    )]
    pub(crate) enum RawKind {
        #[default]
        r#loop,
        r#if(::core::primitive::u8),
    }
}

use shadowed::{Choice, Everything, Raw, RawKind, Tuple, Unit};
use versionize::{prelude::Versionize, VersionMap};

#[test]
fn test_derive_hygiene_shadowed_names() {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Everything::<u8>::type_id(), 2)
        .set_type_version(Choice::type_id(), 2)
        .new_version()
        .set_type_version(Everything::<u8>::type_id(), 3);
    let value = Everything {
        plain: 1,
        list: vec![2u8],
        boxed: Box::new(3),
        maybe: Some("m".to_owned()),
    };
    integration_tests::round_trip(&value, &map, |app_version| match app_version {
        1 => Everything {
            plain: 0xEF,
            list: Vec::new(),
            boxed: Box::new(0),
            maybe: Some("m".to_owned()),
        },
        2 => Everything {
            boxed: Box::new(0),
            ..value.clone()
        },
        _ => Everything {
            maybe: None,
            ..value.clone()
        },
    });
    let tuple = Tuple(5, Choice::Named { value: vec![6] });
    let bytes = integration_tests::to_bytes(&tuple, &map, 1);
    assert_eq!(bytes, [5, 0, 0, 0, 0]);
    let bytes = integration_tests::to_bytes(&Choice::Tuple(1, "t".to_owned()), &map, 3);
    assert_eq!(bytes, [1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, b't']);
    assert!(integration_tests::to_bytes(&Unit, &map, 3).is_empty());
}

#[test]
fn test_derive_hygiene_raw_identifiers() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Raw::type_id(), 2);
    let raw = Raw {
        r#type: 1,
        r#match: RawKind::r#if(2),
    };
    let bytes = integration_tests::round_trip(&raw, &map, |app_version| match app_version {
        1 => Raw {
            r#type: 1,
            r#match: RawKind::r#loop,
        },
        _ => Raw {
            r#type: 1,
            r#match: RawKind::r#if(2),
        },
    });
    assert_eq!(bytes, [vec![1], vec![1, 1, 0, 0, 0, 2]]);
    let error = integration_tests::from_bytes::<Raw>(&[1, 1, 0], &map, 2).unwrap_err();
    let path: Vec<_> = error
        .path()
        .iter()
        .map(|f| (f.type_name, f.field))
        .collect();
    assert_eq!(path, [("Raw", Some("match")), ("RawKind", None)]);
}
