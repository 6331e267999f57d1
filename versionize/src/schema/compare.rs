//! Comparing two exports of one app version, and declared renames.

use std::collections::BTreeMap;
use std::fmt;

use super::{names, FieldSchema, Schema, TypeKind, VariantSchema};

/// Renames to apply to an old export before comparing it with a new one.
///
/// Names are not on the wire, so renaming or moving a type, or renaming a field or a
/// variant, changes no byte. The checker still compares by name (comparing by position
/// would take two swapped fields of one type for two renames and miss the swap), so a
/// rename is declared: the old export is rewritten with the new names, then compared.
/// Released files keep the old names; the declaration stays as long as they are checked.
///
/// # Example
/// ```
/// use versionize::schema::{compare, export, Renames};
/// use versionize::prelude::*;
///
/// mod before {
///     #[derive(versionize::prelude::Versionize)]
///     pub struct Pit { pub cnt: u16 }
/// }
/// mod after {
///     #[derive(versionize::prelude::Versionize)]
///     pub struct Timer { pub count: u16 }
/// }
///
/// let map = VersionMap::new();
/// let old = export::<before::Pit>(&map, 1).unwrap();
/// let new = export::<after::Timer>(&map, 1).unwrap();
/// assert!(!compare(&old, &new).is_empty());
///
/// let mut renames = Renames::new();
/// renames
///     .rename_type("rust_out::before::Pit", "rust_out::after::Timer")
///     .rename_field("rust_out::after::Timer", "cnt", "count");
/// assert!(compare(&renames.apply(&old), &new).is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renames {
    types: Vec<(String, String, PathKind)>,
    variants: Vec<(String, String, String)>,
    fields: Vec<(String, String, String)>,
}

/// What a type rename names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathKind {
    Type,
    Module,
}

impl Renames {
    /// No renames.
    #[must_use]
    pub fn new() -> Self {
        Renames::default()
    }

    /// The type (or generic type) at full path `old` is now `new`: `"my_vmm::Pit"` to
    /// `"my_vmm::timer::Pit"`. Every whole occurrence of the path is renamed, in generic
    /// arguments too (`my_vmm::Ring` renames `my_vmm::Ring<my_vmm::RxDesc>`).
    pub fn rename_type(&mut self, old: &str, new: &str) -> &mut Self {
        self.types
            .push((old.to_owned(), new.to_owned(), PathKind::Type));
        self
    }

    /// Every type under the module path `old` is now under `new` (a module renamed or
    /// moved): `"my_vmm::net"` to `"my_vmm::devices::net"` renames
    /// `my_vmm::net::Config` and `my_vmm::net::rx::Desc`.
    pub fn rename_module(&mut self, old: &str, new: &str) -> &mut Self {
        self.types
            .push((old.to_owned(), new.to_owned(), PathKind::Module));
        self
    }

    /// The field `old` of the struct `ty` (its new full name, generic arguments included,
    /// or `Type::Variant` for a field of an enum variant) is now `new`.
    pub fn rename_field(&mut self, ty: &str, old: &str, new: &str) -> &mut Self {
        self.fields
            .push((ty.to_owned(), old.to_owned(), new.to_owned()));
        self
    }

    /// The variant `old` of the enum `ty` (its new full name) is now `new`.
    pub fn rename_variant(&mut self, ty: &str, old: &str, new: &str) -> &mut Self {
        self.variants
            .push((ty.to_owned(), old.to_owned(), new.to_owned()));
        self
    }

    /// Whether no rename is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.variants.is_empty() && self.fields.is_empty()
    }

    /// `schema` with the declared renames applied: types and modules first, in the order
    /// declared, then variants, then fields.
    #[must_use]
    pub fn apply(&self, schema: &Schema) -> Schema {
        let mut schema = schema.clone();
        for (old, new, kind) in &self.types {
            let rename = |text: &str| match kind {
                PathKind::Type => names::replace(text, old, new),
                PathKind::Module => names::replace_module(text, old, new),
            };
            schema.root = rename(&schema.root);
            schema.types = std::mem::take(&mut schema.types)
                .into_iter()
                .map(|(name, mut ty)| {
                    ty.name = rename(&ty.name);
                    for field in fields_mut(&mut ty.kind) {
                        field.ty = rename(&field.ty);
                    }
                    (rename(&name), ty)
                })
                .collect();
        }
        for ty in schema.types.values_mut() {
            let type_name = ty.name.clone();
            match &mut ty.kind {
                TypeKind::Struct { fields } => {
                    self.rename_fields(&type_name, fields);
                }
                TypeKind::Enum { variants } => {
                    for variant in variants.iter_mut() {
                        self.rename_variant_of(&type_name, variant);
                        let path = format!("{type_name}::{}", variant.name);
                        self.rename_fields(&path, &mut variant.fields);
                    }
                }
                TypeKind::Opaque => {}
            }
        }
        schema
    }

    fn rename_variant_of(&self, type_name: &str, variant: &mut VariantSchema) {
        for (ty, old, new) in &self.variants {
            if ty == type_name && variant.name == *old {
                variant.name.clone_from(new);
            }
        }
    }

    fn rename_fields(&self, path: &str, fields: &mut [FieldSchema]) {
        for (ty, old, new) in &self.fields {
            if ty != path {
                continue;
            }
            for field in fields.iter_mut().filter(|f| f.name == *old) {
                field.name.clone_from(new);
            }
        }
    }
}

/// Every field of a struct or of the variants of an enum.
fn fields_mut(kind: &mut TypeKind) -> Vec<&mut FieldSchema> {
    match kind {
        TypeKind::Struct { fields } => fields.iter_mut().collect(),
        TypeKind::Enum { variants } => variants
            .iter_mut()
            .flat_map(|v| v.fields.iter_mut())
            .collect(),
        TypeKind::Opaque => Vec::new(),
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
                    "type (v{}) is no longer reachable from the root at this app version \
                     (keep the field that reached it with `end = <new version>`, or declare a \
                     rename)",
                    old_type.version
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
                    "type (v{}) is newly reachable from the root at this app version (reach \
                     it through a field with `start = <new version>`, or declare a rename)",
                    new_type.version
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
