//! Schemas: what each type looks like on the wire at an app version, exported as JSON, and
//! the guard that keeps released app versions readable.
//!
//! `#[derive(Versionize)]` describes each type: its full path (`my_vmm::net::Config`, with
//! generic arguments: `my_vmm::net::Ring<my_vmm::net::RxDesc>`), its type version at the app
//! version being described, its newest version, and its fields (name, type, `start`/`end`)
//! or variants (index, fields). Built-in types are named by their layout (`Vec<u64>`,
//! `[u8; 16]`, `Option<String>`). [`export`] walks every type reachable from a root at one
//! app version, through the fields and variants written at that version.
//!
//! [`compare`] reports, by type and field path, every difference between an old export and
//! a new one of the same app version that would make one build misread the other's bytes.
//! [`SchemaGuard`] is the whole workflow of a VMM's guard test: it checks the committed file
//! of every app version (`v1.json`, `v2.json`, ...), checks that the newest app version maps
//! every reachable type to its newest version ([`check_latest`]), and writes the file of a
//! new app version when asked to, never one that exists.
//!
//! A schema also describes every byte of the states of its app version, so tools read them
//! without the Rust types: [`decode_value`] turns a state into a [`Value`] by following the
//! schema (the way an Avro reader uses the writer's schema), [`encode_value`] writes a value
//! back to the same bytes, [`Value::to_json`] renders it for `jq` without losing a bit of a
//! 64-bit value, and [`diff_values`] lists field-level differences between two states
//! (`vcpus[1].regs.rip: 0x1000 -> 0x1004`), byte strings summarised by page.
//!
//! # Example
//! ```
//! use versionize::schema::{compare, export};
//! use versionize::prelude::*;
//!
//! #[derive(Versionize)]
//! struct Pit {
//!     count: u32,
//! }
//!
//! let map = VersionMap::new();
//! let released = export::<Pit>(&map, 1).unwrap();
//! let json = released.to_json();
//! assert!(json.contains("\"rust_out::Pit\""));
//!
//! // Later the same build must still produce the released schema.
//! let reread = versionize::schema::Schema::from_json(&json).unwrap();
//! assert!(compare(&reread, &export::<Pit>(&map, 1).unwrap()).is_empty());
//! ```

mod codec;
mod compare;
mod diff;
mod guard;
mod names;
mod type_expr;
mod value;

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{VersionMap, Versionize, VersionizeResult};

pub use self::codec::{decode_value, encode_value};
pub use self::compare::{compare, Difference, Renames};
pub use self::diff::{diff_values, Change, ValueDifference, DIFF_PAGE_SIZE};
pub use self::guard::{check_latest, BehindType, Finding, SchemaCheckError, SchemaGuard};
pub use self::value::{JsonOptions, Value, ValueError};

/// The version of the schema file format that this build writes and reads.
///
/// Format 1 (no `format` field) keyed types by their bare name, so that two types of the
/// same name in different modules shared one entry; format 2 keys them by full path and
/// describes only what is reachable through the fields written at the app version.
pub const SCHEMA_FORMAT: u32 = 2;

/// The schema of one app version: every type reachable from the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The schema file format ([`SCHEMA_FORMAT`]).
    pub format: u32,
    /// The app (data) version described.
    pub app_version: u16,
    /// The name of the root type.
    pub root: String,
    /// Every derived (or hand-written) type reachable from the root through the fields and
    /// variants written at this app version, by full name.
    pub types: BTreeMap<String, TypeSchema>,
}

/// One type at one app version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSchema {
    /// The type's full name (module path, then generic arguments).
    pub name: String,
    /// The type version that the app version maps to.
    pub version: u16,
    /// The type's latest version in this build.
    pub latest_version: u16,
    /// Its shape.
    pub kind: TypeKind,
}

/// The shape of a described type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeKind {
    /// A struct: fields in declaration order.
    Struct {
        /// Every field, present at this version or not.
        fields: Vec<FieldSchema>,
    },
    /// An enum: variants in declaration order.
    Enum {
        /// Every variant, present at this version or not.
        variants: Vec<VariantSchema>,
    },
    /// A hand-written impl whose layout the schema cannot see.
    Opaque,
}

/// A field of a struct or variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// The field name (`"0"`, `"1"`... for tuple fields).
    pub name: String,
    /// The field's type, by name: a built-in layout that may mention keys of
    /// [`Schema::types`], or such a key.
    pub ty: String,
    /// First type version with the field.
    pub start: u16,
    /// First type version without it, if any.
    pub end: Option<u16>,
    /// Whether the field is written at this schema's type version.
    pub present: bool,
}

/// A variant of an enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSchema {
    /// The variant name.
    pub name: String,
    /// Its wire index.
    pub index: u32,
    /// First type version with the variant.
    pub start: u16,
    /// First type version without it, if any.
    pub end: Option<u16>,
    /// Whether the variant can be written at this schema's type version.
    pub present: bool,
    /// Its fields, in order.
    pub fields: Vec<FieldSchema>,
}

fn exists_at(start: u16, end: Option<u16>, version: u16) -> bool {
    start <= version && end.is_none_or(|end| version < end)
}

impl FieldSchema {
    /// A field; `present` is filled in by [`SchemaBuilder::finish`].
    #[must_use]
    pub fn new(name: &str, ty: String, start: u16, end: Option<u16>) -> Self {
        FieldSchema {
            name: name.to_owned(),
            ty,
            start,
            end,
            present: false,
        }
    }
}

impl VariantSchema {
    /// A variant; `present` is filled in by [`SchemaBuilder::finish`].
    #[must_use]
    pub fn new(
        name: &str,
        index: u32,
        start: u16,
        end: Option<u16>,
        fields: Vec<FieldSchema>,
    ) -> Self {
        VariantSchema {
            name: name.to_owned(),
            index,
            start,
            end,
            present: false,
            fields,
        }
    }
}

impl TypeSchema {
    /// The types of the fields written at this type version, in order.
    fn present_field_types(&self) -> Vec<&str> {
        match &self.kind {
            TypeKind::Struct { fields } => fields
                .iter()
                .filter(|f| f.present)
                .map(|f| f.ty.as_str())
                .collect(),
            TypeKind::Enum { variants } => variants
                .iter()
                .filter(|v| v.present)
                .flat_map(|v| v.fields.iter().map(|f| f.ty.as_str()))
                .collect(),
            TypeKind::Opaque => Vec::new(),
        }
    }
}

/// Collects type descriptions while walking a type graph at one app version.
#[derive(Debug)]
pub struct SchemaBuilder<'a> {
    map: &'a VersionMap,
    app_version: u16,
    types: BTreeMap<String, TypeSchema>,
    started: BTreeSet<String>,
}

impl<'a> SchemaBuilder<'a> {
    /// A builder for `app_version` of `map`.
    ///
    /// # Errors
    /// [`VersionizeError::InvalidAppVersion`](crate::VersionizeError::InvalidAppVersion)
    /// when the map has no such app version.
    pub fn new(map: &'a VersionMap, app_version: u16) -> VersionizeResult<Self> {
        map.try_type_version(app_version, TypeId::of::<()>())?;
        Ok(SchemaBuilder {
            map,
            app_version,
            types: BTreeMap::new(),
            started: BTreeSet::new(),
        })
    }

    /// The app version being described.
    #[must_use]
    pub fn app_version(&self) -> u16 {
        self.app_version
    }

    /// Describes `T`, registering it (and what it reaches) if needed; returns its name.
    pub fn describe<T: Versionize>(&mut self) -> String {
        T::describe(self)
    }

    /// The version `T` has at the app version being described.
    #[must_use]
    pub fn type_version<T: 'static>(&self) -> u16 {
        self.map
            .get_type_version(self.app_version, TypeId::of::<T>())
    }

    /// Marks `name` as being described. Returns `false` when it already is (a recursive or
    /// repeated type), in which case the caller only returns the name.
    pub fn begin(&mut self, name: &str) -> bool {
        self.started.insert(name.to_owned())
    }

    /// Records a described type, computing which fields and variants are present.
    pub fn finish(&mut self, mut schema: TypeSchema) {
        let version = schema.version;
        match &mut schema.kind {
            TypeKind::Struct { fields } => {
                for field in fields {
                    field.present = exists_at(field.start, field.end, version);
                }
            }
            TypeKind::Enum { variants } => {
                for variant in variants {
                    variant.present = exists_at(variant.start, variant.end, version);
                    for field in &mut variant.fields {
                        field.present = variant.present;
                    }
                }
            }
            TypeKind::Opaque => {}
        }
        self.types.insert(schema.name.clone(), schema);
    }

    /// Records a type with a hand-written impl whose layout is not described.
    pub fn opaque(&mut self, name: &str, version: u16) -> String {
        if self.begin(name) {
            self.finish(TypeSchema {
                name: name.to_owned(),
                version,
                latest_version: version,
                kind: TypeKind::Opaque,
            });
        }
        name.to_owned()
    }

    /// The finished schema with `root` as its root type: the described types that the
    /// root reaches through fields and variants written at this app version. A type met
    /// only through a field that this app version does not write (`start` above its type
    /// version, or retired by `end`) is not on its wire, so it is not part of its schema.
    #[must_use]
    pub fn into_schema(self, root: String) -> Schema {
        let mut reachable = BTreeSet::new();
        let mut queue: Vec<&str> = names::mentioned(&root, &self.types);
        while let Some(name) = queue.pop() {
            if !reachable.insert(name.to_owned()) {
                continue;
            }
            if let Some(schema) = self.types.get(name) {
                for ty in schema.present_field_types() {
                    queue.extend(names::mentioned(ty, &self.types));
                }
            }
        }
        let mut types = self.types;
        types.retain(|name, _| reachable.contains(name));
        Schema {
            format: SCHEMA_FORMAT,
            app_version: self.app_version,
            root,
            types,
        }
    }
}

/// The schema of `app_version` of `map`, from root type `T`.
///
/// # Errors
/// [`VersionizeError::InvalidAppVersion`](crate::VersionizeError::InvalidAppVersion) when
/// the map has no such app version.
pub fn export<T: Versionize + 'static>(
    map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<Schema> {
    let mut builder = SchemaBuilder::new(map, app_version)?;
    let root = builder.describe::<T>();
    Ok(builder.into_schema(root))
}

impl Schema {
    /// Pretty JSON, with a trailing newline, stable across runs (types sorted by name).
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing these plain structs to a string cannot fail.
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        json
    }

    /// Parses a JSON export of schema format [`SCHEMA_FORMAT`].
    ///
    /// # Errors
    /// A JSON syntax or shape error, or another schema format, as text.
    pub fn from_json(json: &str) -> Result<Schema, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        match value.get("format") {
            Some(format) if format.as_u64() != Some(u64::from(SCHEMA_FORMAT)) => {
                return Err(format!(
                    "schema format {format}, this build reads format {SCHEMA_FORMAT}"
                ));
            }
            None if value.get("root").is_some() && value.get("types").is_some() => {
                return Err(format!(
                    "schema format 1 (types keyed by bare names), this build reads format \
                     {SCHEMA_FORMAT}: export the app version again with this build"
                ));
            }
            _ => {}
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}
