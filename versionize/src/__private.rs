//! Items used by code that `#[derive(Versionize)]` generates. Not a public API: it may
//! change in any release.
//!
//! Generated code names the runtime only through this module (and the `Versionize` trait
//! itself), never `versionize::VersionMap`, `versionize::schema::...` or an error variant
//! directly: the public types can then grow (`#[non_exhaustive]` structs and enums, new
//! fields) while code derived against an older release keeps compiling.

pub use std::any::TypeId;
pub use std::clone::Clone;
pub use std::default::Default;
pub use std::io::{Read, Write};
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{self, Err, Ok};
pub use std::stringify;

pub use crate::schema::{FieldSchema, SchemaBuilder, TypeKind, TypeSchema, VariantSchema};
pub use crate::{VersionMap, VersionizeError, VersionizeResult};

use crate::{DecodeScope, EncodeScope};

/// Adds the frame "`type_name`.`field` at `version`" to an error from a field or hook.
#[cold]
#[must_use]
pub fn in_field(
    error: VersionizeError,
    type_name: &'static str,
    field: Option<&'static str>,
    version: u16,
) -> VersionizeError {
    error.in_field(type_name, field, version)
}

/// The error for an enum variant index that does not exist at the version being read.
#[cold]
#[must_use]
pub fn unknown_variant(type_name: &'static str, index: u32, version: u16) -> VersionizeError {
    VersionizeError::UnknownVariant {
        type_name,
        index,
        version,
    }
}

/// The error for a chain of variant substitutions that loops.
#[cold]
#[must_use]
pub fn variant_cycle(
    type_name: &'static str,
    variant: &'static str,
    version: u16,
) -> VersionizeError {
    VersionizeError::VariantCycle {
        type_name,
        variant,
        version,
    }
}

/// The error of the stub impl that the derive emits next to its compile errors (never
/// returned by a program that compiles).
#[cold]
#[must_use]
pub fn derive_failed(type_name: &'static str) -> VersionizeError {
    VersionizeError::Semantic(format!(
        "the Versionize derive of {type_name} did not compile"
    ))
}

/// `FieldSchema` of a field for `describe`.
#[must_use]
pub fn schema_field(name: &str, ty: String, start: u16, end: Option<u16>) -> FieldSchema {
    FieldSchema::new(name, ty, start, end)
}

/// `VariantSchema` of an enum variant for `describe`.
#[must_use]
pub fn schema_variant(
    name: &str,
    index: u32,
    start: u16,
    end: Option<u16>,
    fields: Vec<FieldSchema>,
) -> VariantSchema {
    VariantSchema::new(name, index, start, end, fields)
}

/// The `TypeKind` of a struct with `fields`.
#[must_use]
pub fn schema_struct(fields: Vec<FieldSchema>) -> TypeKind {
    TypeKind::Struct { fields }
}

/// The `TypeKind` of an enum with `variants`.
#[must_use]
pub fn schema_enum(variants: Vec<VariantSchema>) -> TypeKind {
    TypeKind::Enum { variants }
}

/// The `TypeSchema` that `describe` records for a derived type.
#[must_use]
pub fn schema_type(name: String, version: u16, latest_version: u16, kind: TypeKind) -> TypeSchema {
    TypeSchema {
        name,
        version,
        latest_version,
        kind,
    }
}

/// Enters the decode scope of a derived type: one nesting level whose frame holds a `T`.
#[inline]
pub fn decode_scope<T>(version_map: &VersionMap) -> VersionizeResult<DecodeScope> {
    DecodeScope::enter_holding(version_map.limits(), size_of::<T>())
}

/// Enters the encode scope of a derived type, the mirror of [`decode_scope`].
#[inline]
pub fn encode_scope<T>(version_map: &VersionMap) -> VersionizeResult<EncodeScope> {
    EncodeScope::enter_holding(version_map.limits(), size_of::<T>())
}

/// Maps `app_version` to the version of `T`, checking both the app version and that the
/// mapped version exists for `T` (`1..=latest`).
#[inline]
pub fn type_version<T: 'static>(
    version_map: &VersionMap,
    app_version: u16,
    latest: u16,
    type_name: &'static str,
) -> VersionizeResult<u16> {
    let mapped = version_map.try_type_version(app_version, TypeId::of::<T>())?;
    if mapped == 0 || mapped > latest {
        return Err(VersionizeError::InvalidTypeVersion {
            type_name,
            mapped,
            latest,
        });
    }
    Ok(mapped)
}

/// Writes an enum variant index.
#[inline]
pub fn write_variant_index<W: Write>(writer: &mut W, index: u32) -> VersionizeResult<()> {
    writer.write_all(&index.to_le_bytes())?;
    Ok(())
}

/// Reads an enum variant index.
#[inline]
pub fn read_variant_index<R: Read>(reader: &mut R) -> VersionizeResult<u32> {
    let mut bytes = [0u8; 4];
    reader.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

/// Makes the copy of a value on which the `ser_fn` hooks of a derived struct run. Only the
/// derive calls it, and only when some `ser_fn` runs at the target version.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has a field with `ser_fn`, so it must implement `Clone`",
    label = "`ser_fn` runs on a copy of the value, made with `Clone`",
    note = "derive or implement `Clone` for `{Self}`"
)]
pub trait SerFnCopy: Sized {
    /// A copy of `self` for the `ser_fn` hooks to change.
    fn ser_fn_copy(&self) -> Self;
}

impl<T: Clone> SerFnCopy for T {
    #[inline]
    fn ser_fn_copy(&self) -> Self {
        self.clone()
    }
}

/// The value of a field that the version being read does not have and that names no
/// `default_fn`.
#[diagnostic::on_unimplemented(
    message = "field of type `{Self}` does not exist at every version, so it needs `Default` or a `default_fn`",
    label = "absent at some version, and `{Self}` does not implement `Default`",
    note = "add `default_fn = \"...\"` to its #[version(...)], naming a `fn(u16) -> {Self}`, or implement `Default` for `{Self}`"
)]
pub trait AbsentFieldDefault: Sized {
    /// The value to use.
    fn absent_field_default() -> Self;
}

impl<T: Default> AbsentFieldDefault for T {
    #[inline]
    fn absent_field_default() -> Self {
        T::default()
    }
}
