//! The typed model of a derive input: fields and variants with their parsed
//! `#[version(...)]` attributes, keeping the spans that error messages point at.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data as SynData, DeriveInput, Fields, Generics, Ident, Index, Member, Type};

use crate::attr::{self, Position, VersionAttrs};
use crate::ctxt::Ctxt;

/// A derive input.
pub(crate) struct Input<'a> {
    /// The whole input, for checks that look at the type's own attributes and generics.
    pub(crate) original: &'a DeriveInput,
    /// The type's name.
    pub(crate) ident: &'a Ident,
    /// The type's name as written in errors (`r#` prefix removed).
    pub(crate) name: String,
    /// The type's generics, as written.
    pub(crate) generics: &'a Generics,
    /// What kind of type it is.
    pub(crate) data: Data<'a>,
}

/// The shape of a derive input.
pub(crate) enum Data<'a> {
    /// A struct (named, tuple or unit) and its fields.
    Struct(Vec<Field<'a>>),
    /// An enum and its variants.
    Enum(Vec<Variant<'a>>),
    /// A union, which cannot be versioned; the span is the `union` keyword.
    Union(Span),
}

/// A field of a struct or of an enum variant.
pub(crate) struct Field<'a> {
    /// How the field is accessed: `self.name` or `self.0`.
    pub(crate) member: Member,
    /// The field's type.
    pub(crate) ty: &'a Type,
    /// The field's name as written in errors: `name`, or its position for tuple fields.
    pub(crate) name: String,
    /// What errors about the field underline: its type.
    pub(crate) span: Span,
    /// Its `#[version(...)]` attributes; always empty for variant fields.
    pub(crate) attrs: VersionAttrs,
}

/// A variant of an enum.
pub(crate) struct Variant<'a> {
    /// The variant as written, for checks on its fields' attributes.
    pub(crate) original: &'a syn::Variant,
    /// The variant's name.
    pub(crate) ident: &'a Ident,
    /// The variant's name as written in errors.
    pub(crate) name: String,
    /// The declaration position, which is the index on the wire.
    pub(crate) index: u32,
    /// The variant's fields (none for a unit variant).
    pub(crate) fields: Vec<Field<'a>>,
    /// Its `#[version(...)]` attributes.
    pub(crate) attrs: VersionAttrs,
}

/// The type versions in which a field or variant exists: `start <= v && v < end`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Presence {
    /// First version in which it exists.
    pub(crate) start: u16,
    /// First version in which it no longer exists, if any.
    pub(crate) end: Option<u16>,
}

impl Presence {
    /// The presence described by `attrs`: `start` defaults to 1, no `end` means forever.
    pub(crate) fn of(attrs: &VersionAttrs) -> Self {
        Presence {
            start: attrs.start.map_or(1, |start| start.value),
            end: attrs.end.map(|end| end.value),
        }
    }

    /// Whether it exists at every version.
    pub(crate) fn is_always(self) -> bool {
        self.start <= 1 && self.end.is_none()
    }

    /// The largest version number it mentions (its contribution to the type version).
    pub(crate) fn max_version(self) -> u16 {
        self.start.max(self.end.unwrap_or(1))
    }
}

impl<'a> Input<'a> {
    /// Builds the model, recording attribute errors in `cx`.
    pub(crate) fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput) -> Self {
        let data = match &input.data {
            SynData::Struct(data) => Data::Struct(fields_from_syn(cx, &data.fields, true)),
            SynData::Enum(data) => {
                let mut variants = Vec::with_capacity(data.variants.len());
                for (position, variant) in data.variants.iter().enumerate() {
                    let Ok(index) = u32::try_from(position) else {
                        cx.error(
                            variant.ident.span(),
                            "an enum with more than u32::MAX variants cannot be versioned",
                        );
                        break;
                    };
                    variants.push(Variant {
                        original: variant,
                        ident: &variant.ident,
                        name: variant.ident.unraw().to_string(),
                        index,
                        fields: fields_from_syn(cx, &variant.fields, false),
                        attrs: attr::parse_version_attrs(cx, &variant.attrs, Position::Variant),
                    });
                }
                Data::Enum(variants)
            }
            SynData::Union(data) => Data::Union(data.union_token.span),
        };
        Input {
            original: input,
            ident: &input.ident,
            name: input.ident.unraw().to_string(),
            generics: &input.generics,
            data,
        }
    }

    /// The type's latest version: the largest `start` or `end` of its fields or variants,
    /// at least 1.
    pub(crate) fn version(&self) -> u16 {
        let presences: Vec<Presence> = match &self.data {
            Data::Struct(fields) => fields.iter().map(|f| Presence::of(&f.attrs)).collect(),
            Data::Enum(variants) => variants.iter().map(|v| Presence::of(&v.attrs)).collect(),
            Data::Union(_) => Vec::new(),
        };
        presences
            .into_iter()
            .map(Presence::max_version)
            .fold(1, u16::max)
    }
}

impl Field<'_> {
    /// The versions in which the field exists.
    pub(crate) fn presence(&self) -> Presence {
        Presence::of(&self.attrs)
    }
}

impl Variant<'_> {
    /// The versions in which the variant exists.
    pub(crate) fn presence(&self) -> Presence {
        Presence::of(&self.attrs)
    }
}

/// Builds the fields; `versioned` says whether they may carry `#[version]` (struct fields)
/// or not (variant fields, whose attributes are left to `check`).
fn fields_from_syn<'a>(cx: &mut Ctxt, fields: &'a Fields, versioned: bool) -> Vec<Field<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(position, field)| {
            let (member, name) = match &field.ident {
                Some(ident) => (Member::Named(ident.clone()), ident.unraw().to_string()),
                None => (
                    Member::Unnamed(Index {
                        index: u32::try_from(position).unwrap_or(u32::MAX),
                        span: field.ty.span(),
                    }),
                    position.to_string(),
                ),
            };
            let attrs = if versioned {
                attr::parse_version_attrs(cx, &field.attrs, Position::Field)
            } else {
                VersionAttrs::default()
            };
            Field {
                member,
                ty: &field.ty,
                name,
                span: field.ty.span(),
                attrs,
            }
        })
        .collect()
}
