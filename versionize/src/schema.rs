//! Schemas: what each type looks like on the wire at an app version, exported as JSON, and a
//! checker that compares two builds' exports.
//!
//! `#[derive(Versionize)]` describes each type: its name, its type version at the app version
//! being described, and its fields (name, type, `start`/`end`) or variants (index, fields).
//! Built-in types are named by their layout (`Vec<u64>`, `[u8; 16]`, `Option<String>`).
//! [`export`] walks every type reachable from a root at one app version.
//!
//! [`compare`] reports, by type and field path, every difference between an old export and
//! a new one of the same app version that would make one build misread the other's bytes:
//! a field added, removed, retyped or moved without a version change, a variant removed or
//! renumbered, a type version lowered, or an app version mapped to another type version.
//! [`check_schema_dir`] runs it against committed files, one per released app version, and
//! is meant to be called from a VMM's own tests so that a forgotten version bump fails CI.
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
//!
//! // Later the same build must still produce the released schema.
//! let reread = versionize::schema::Schema::from_json(&json).unwrap();
//! assert!(compare(&reread, &export::<Pit>(&map, 1).unwrap()).is_empty());
//! ```

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{VersionMap, Versionize, VersionizeError, VersionizeResult};

/// The schema of one app version: every type reachable from the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The app (data) version described.
    pub app_version: u16,
    /// The name of the root type.
    pub root: String,
    /// Every derived (or hand-written) type reachable from the root, by name.
    pub types: BTreeMap<String, TypeSchema>,
}

/// One type at one app version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSchema {
    /// The type's name (with generic arguments).
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
    /// The field's type, by name: a built-in layout or a key of [`Schema::types`].
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
    /// [`VersionizeError::InvalidAppVersion`] when the map has no such app version.
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

    /// The finished schema with `root` as its root type.
    #[must_use]
    pub fn into_schema(self, root: String) -> Schema {
        Schema {
            app_version: self.app_version,
            root,
            types: self.types,
        }
    }
}

/// The schema of `app_version` of `map`, from root type `T`.
///
/// # Errors
/// [`VersionizeError::InvalidAppVersion`] when the map has no such app version.
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

    /// Parses a JSON export.
    ///
    /// # Errors
    /// A JSON syntax or shape error, as text.
    pub fn from_json(json: &str) -> Result<Schema, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

/// One difference between two schemas that breaks compatibility.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Where: `Type`, `Type.field`, `Type::Variant` or `Type::Variant.field`.
    pub path: String,
    /// What changed and what to do about it.
    pub message: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn present_fields(fields: &[FieldSchema]) -> Vec<&FieldSchema> {
    fields.iter().filter(|f| f.present).collect()
}

/// Compares the fields present in an old and a new description of the same type version.
fn compare_fields(path: &str, old: &[FieldSchema], new: &[FieldSchema], out: &mut Vec<Difference>) {
    let old_present = present_fields(old);
    let new_present = present_fields(new);
    let old_by_name: BTreeMap<&str, &FieldSchema> =
        old_present.iter().map(|f| (f.name.as_str(), *f)).collect();
    let new_by_name: BTreeMap<&str, &FieldSchema> =
        new_present.iter().map(|f| (f.name.as_str(), *f)).collect();
    for field in &old_present {
        match new_by_name.get(field.name.as_str()) {
            None => out.push(Difference {
                path: format!("{path}.{}", field.name),
                message: format!(
                    "field of type {} removed without a version change (keep it with `end = <new version>` instead)",
                    field.ty
                ),
            }),
            Some(new_field) if new_field.ty != field.ty => out.push(Difference {
                path: format!("{path}.{}", field.name),
                message: format!(
                    "type changed from {} to {} without a version change (add a new field with `start` and retire this one with `end`)",
                    field.ty, new_field.ty
                ),
            }),
            Some(_) => {}
        }
    }
    for field in &new_present {
        if !old_by_name.contains_key(field.name.as_str()) {
            out.push(Difference {
                path: format!("{path}.{}", field.name),
                message: format!(
                    "field of type {} added without a version change (give it `start = <new version>` and map the new version)",
                    field.ty
                ),
            });
        }
    }
    // Same names in a different order: the bytes move.
    let old_order: Vec<&str> = old_present
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| new_by_name.contains_key(n))
        .collect();
    let new_order: Vec<&str> = new_present
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| old_by_name.contains_key(n))
        .collect();
    if old_order != new_order {
        out.push(Difference {
            path: path.to_owned(),
            message: format!(
                "fields reordered from [{}] to [{}] without a version change",
                old_order.join(", "),
                new_order.join(", ")
            ),
        });
    }
}

fn compare_variants(
    path: &str,
    old: &[VariantSchema],
    new: &[VariantSchema],
    out: &mut Vec<Difference>,
) {
    let new_by_name: BTreeMap<&str, &VariantSchema> =
        new.iter().map(|v| (v.name.as_str(), v)).collect();
    let old_by_name: BTreeMap<&str, &VariantSchema> =
        old.iter().map(|v| (v.name.as_str(), v)).collect();
    for variant in old {
        let variant_path = format!("{path}::{}", variant.name);
        match new_by_name.get(variant.name.as_str()) {
            None => out.push(Difference {
                path: variant_path,
                message: format!(
                    "variant {} removed (keep it with `end = <new version>` and a `default_fn`)",
                    variant.index
                ),
            }),
            Some(new_variant) => {
                if new_variant.index != variant.index {
                    out.push(Difference {
                        path: variant_path.clone(),
                        message: format!(
                            "variant index changed from {} to {} (variants must keep their position)",
                            variant.index, new_variant.index
                        ),
                    });
                }
                if variant.present && !new_variant.present {
                    out.push(Difference {
                        path: variant_path.clone(),
                        message: "variant no longer exists at this version".to_owned(),
                    });
                }
                if variant.present && new_variant.present {
                    compare_fields(&variant_path, &variant.fields, &new_variant.fields, out);
                }
            }
        }
    }
    for variant in new {
        if variant.present
            && !old_by_name
                .get(variant.name.as_str())
                .is_some_and(|v| v.present)
        {
            out.push(Difference {
                path: format!("{path}::{}", variant.name),
                message: "variant added without a version change (give it `start = <new version>` and a `default_fn`)"
                    .to_owned(),
            });
        }
    }
}

/// Everything that differs between `old` and `new` exports of the same app version in a
/// way that makes one build misread the other's bytes, checked in both directions.
///
/// An empty result means every byte written by one build at this app version reads the
/// same in the other.
#[must_use]
pub fn compare(old: &Schema, new: &Schema) -> Vec<Difference> {
    let mut out = Vec::new();
    if old.app_version != new.app_version {
        out.push(Difference {
            path: String::new(),
            message: format!(
                "comparing app version {} with app version {}",
                old.app_version, new.app_version
            ),
        });
    }
    if old.root != new.root {
        out.push(Difference {
            path: old.root.clone(),
            message: format!("root type changed from {} to {}", old.root, new.root),
        });
    }
    for (name, old_type) in &old.types {
        let Some(new_type) = new.types.get(name) else {
            out.push(Difference {
                path: name.clone(),
                message: format!(
                    "type (v{}) is no longer part of app version {}",
                    old_type.version, old.app_version
                ),
            });
            continue;
        };
        if new_type.latest_version < old_type.latest_version {
            out.push(Difference {
                path: name.clone(),
                message: format!(
                    "latest type version lowered from {} to {}",
                    old_type.latest_version, new_type.latest_version
                ),
            });
        }
        if new_type.version != old_type.version {
            out.push(Difference {
                path: name.clone(),
                message: format!(
                    "app version {} now maps to type version {} instead of {} (released app versions must keep their mapping)",
                    old.app_version, new_type.version, old_type.version
                ),
            });
            continue;
        }
        match (&old_type.kind, &new_type.kind) {
            (TypeKind::Struct { fields: old_fields }, TypeKind::Struct { fields: new_fields }) => {
                compare_fields(name, old_fields, new_fields, &mut out);
            }
            (
                TypeKind::Enum {
                    variants: old_variants,
                },
                TypeKind::Enum {
                    variants: new_variants,
                },
            ) => {
                compare_variants(name, old_variants, new_variants, &mut out);
            }
            (TypeKind::Opaque, TypeKind::Opaque) => {}
            (old_kind, new_kind) => out.push(Difference {
                path: name.clone(),
                message: format!(
                    "changed from {} to {}",
                    kind_name(old_kind),
                    kind_name(new_kind)
                ),
            }),
        }
    }
    for (name, new_type) in &new.types {
        if !old.types.contains_key(name) {
            out.push(Difference {
                path: name.clone(),
                message: format!(
                    "type (v{}) is newly part of app version {}",
                    new_type.version, new.app_version
                ),
            });
        }
    }
    out
}

fn kind_name(kind: &TypeKind) -> &'static str {
    match kind {
        TypeKind::Struct { .. } => "a struct",
        TypeKind::Enum { .. } => "an enum",
        TypeKind::Opaque => "a hand-written impl",
    }
}

/// Why committed schema files and the current build disagree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaCheckError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a schema export.
    #[error("{}: not a schema export: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The directory holds no schema file.
    #[error("{}: no schema files (v<N>.json); write them with write_schema_dir", dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// A released app version is missing from the version map.
    #[error("{}: app version {app_version} was released but the version map stops at {latest}", path.display())]
    MissingAppVersion {
        /// The file of that app version.
        path: PathBuf,
        /// Its app version.
        app_version: u16,
        /// The map's latest app version.
        latest: u16,
    },
    /// The current build no longer matches released schemas.
    #[error("{}", format_mismatch(.0))]
    Mismatch(Vec<(PathBuf, Vec<Difference>)>),
    /// Export failed.
    #[error(transparent)]
    Versionize(#[from] VersionizeError),
}

fn format_mismatch(files: &[(PathBuf, Vec<Difference>)]) -> String {
    let mut text =
        String::from("the current build no longer reads released snapshots the same way:");
    for (path, differences) in files {
        text.push_str(&format!("\n  {}:", path.display()));
        for difference in differences {
            text.push_str(&format!("\n    - {difference}"));
        }
    }
    text
}

fn schema_files(dir: &Path) -> Result<Vec<(u16, PathBuf)>, SchemaCheckError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SchemaCheckError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SchemaCheckError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if let Ok(app_version) = number.parse::<u16>() {
            files.push((app_version, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Checks the current build against the committed schema files in `dir` (`v1.json`,
/// `v2.json`, ...: one per released app version, written by [`write_schema_dir`]).
///
/// # Errors
/// [`SchemaCheckError::Mismatch`] with a readable diff per file when the current build
/// would read or write any released app version differently; I/O and parse errors.
pub fn check_schema_dir<T: Versionize + 'static>(
    map: &VersionMap,
    dir: impl AsRef<Path>,
) -> Result<(), SchemaCheckError> {
    let dir = dir.as_ref();
    let files = schema_files(dir)?;
    if files.is_empty() {
        return Err(SchemaCheckError::Empty {
            dir: dir.to_owned(),
        });
    }
    let mut mismatches = Vec::new();
    for (app_version, path) in files {
        if app_version == 0 || app_version > map.latest_version() {
            return Err(SchemaCheckError::MissingAppVersion {
                path,
                app_version,
                latest: map.latest_version(),
            });
        }
        let json = std::fs::read_to_string(&path).map_err(|source| SchemaCheckError::Io {
            path: path.clone(),
            source,
        })?;
        let old = Schema::from_json(&json).map_err(|message| SchemaCheckError::Parse {
            path: path.clone(),
            message,
        })?;
        let new = export::<T>(map, app_version)?;
        let differences = compare(&old, &new);
        if !differences.is_empty() {
            mismatches.push((path, differences));
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(SchemaCheckError::Mismatch(mismatches))
    }
}

/// Writes `v<N>.json` for every app version of `map` into `dir`, from root `T`.
///
/// Run it once per release, and commit the files: [`check_schema_dir`] then guards them.
///
/// # Errors
/// I/O errors.
pub fn write_schema_dir<T: Versionize + 'static>(
    map: &VersionMap,
    dir: impl AsRef<Path>,
) -> Result<(), SchemaCheckError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| SchemaCheckError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for app_version in 1..=map.latest_version() {
        let path = dir.join(format!("v{app_version}.json"));
        let json = export::<T>(map, app_version)?.to_json();
        std::fs::write(&path, json).map_err(|source| SchemaCheckError::Io { path, source })?;
    }
    Ok(())
}
