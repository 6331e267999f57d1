//! Parsing of `#[version(...)]` attributes.
//!
//! Each attribute is read key by key; every problem (unknown or duplicate key, bad value) is
//! recorded in the [`Ctxt`] with the span of the offending token and parsing goes on, so a
//! user sees all mistakes of an input at once.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitInt, LitStr, Meta, MetaNameValue, Token, UnOp};

use crate::ctxt::Ctxt;

/// The name of the attribute this derive reads.
const ATTR: &str = "version";

/// Where a `#[version(...)]` attribute sits; decides which keys it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// On a field of a struct.
    Field,
    /// On a variant of an enum.
    Variant,
}

impl Position {
    /// The keys accepted here, as listed in error messages.
    fn expected_keys(self) -> &'static str {
        match self {
            Position::Field => "`start`, `end`, `default_fn`, `ser_fn`, `de_fn` or `ser_value_fn`",
            Position::Variant => "`start`, `end` or `default_fn`",
        }
    }
}

/// A `start` or `end` value with the span of its literal.
#[derive(Clone, Copy)]
pub(crate) struct VersionNumber {
    /// The version.
    pub(crate) value: u16,
    /// The span of the literal.
    pub(crate) span: Span,
}

/// A `default_fn`, `ser_fn`, `de_fn` or `ser_value_fn` value: the function it names.
#[derive(Clone)]
pub(crate) struct Hook {
    /// The path parsed from the string literal; its tokens carry the literal's span, so a
    /// function that does not exist is reported on the literal.
    pub(crate) path: syn::Path,
    /// The span of the string literal.
    pub(crate) span: Span,
    /// The span of the key (`default_fn`...), which errors about the hook's placement and
    /// the expected signature point at.
    pub(crate) key_span: Span,
}

/// Everything the `#[version(...)]` attributes of one field or variant say.
#[derive(Default)]
pub(crate) struct VersionAttrs {
    /// First type version in which the field or variant exists.
    pub(crate) start: Option<VersionNumber>,
    /// First type version in which it no longer exists.
    pub(crate) end: Option<VersionNumber>,
    /// Supplies the value when it is absent.
    pub(crate) default_fn: Option<Hook>,
    /// Whether a `default_fn` key was written, even with a value in error (so that checks
    /// do not also report it missing).
    pub(crate) default_fn_written: bool,
    /// Runs before writing a version in which the field is absent.
    pub(crate) ser_fn: Option<Hook>,
    /// Runs after reading a version in which the field is absent.
    pub(crate) de_fn: Option<Hook>,
    /// Computes the value written for a field with an `end` at the versions that still
    /// have it (what builds older than `end` receive).
    pub(crate) ser_value_fn: Option<Hook>,
}

/// Whether `attr` is a `#[version...]` attribute.
pub(crate) fn is_version_attr(attr: &Attribute) -> bool {
    attr.path().is_ident(ATTR)
}

/// Reads every `#[version(...)]` among `attrs` as if they were one list.
pub(crate) fn parse_version_attrs(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    position: Position,
) -> VersionAttrs {
    let mut out = VersionAttrs::default();
    // Keys met so far, valid or not, so that a second occurrence is always a duplicate.
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|attr| is_version_attr(attr)) {
        let list = match &attr.meta {
            Meta::List(list) => list,
            Meta::Path(_) | Meta::NameValue(_) => {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "expected `#[version(key = value, ...)]` with keys among {}",
                        position.expected_keys()
                    ),
                );
                continue;
            }
        };
        let items = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(items) => items,
            Err(error) => {
                cx.syn_error(error);
                continue;
            }
        };
        for item in items {
            parse_item(cx, &mut out, &mut seen, &item, position);
        }
    }
    out
}

/// Reads one `key = value` of a `#[version(...)]` list into `out`.
fn parse_item(
    cx: &mut Ctxt,
    out: &mut VersionAttrs,
    seen: &mut Vec<String>,
    item: &Meta,
    position: Position,
) {
    let key = item.path();
    let Some(name) = key.get_ident().map(ToString::to_string) else {
        cx.error_spanned_by(
            key,
            format!(
                "unknown key in #[version(...)]; expected {}",
                position.expected_keys()
            ),
        );
        return;
    };
    let known = matches!(
        name.as_str(),
        "start" | "end" | "default_fn" | "ser_fn" | "de_fn" | "ser_value_fn"
    );
    if !known {
        cx.error_spanned_by(
            key,
            format!(
                "unknown key `{name}` in #[version(...)]; expected {}",
                position.expected_keys()
            ),
        );
        return;
    }
    if position == Position::Variant && matches!(name.as_str(), "ser_fn" | "de_fn" | "ser_value_fn")
    {
        cx.error_spanned_by(
            key,
            format!(
                "`{name}` is not supported on an enum variant: a variant that does not exist \
                 at the target version is replaced through its `default_fn`"
            ),
        );
        return;
    }
    let Meta::NameValue(MetaNameValue { value, .. }) = item else {
        let example = if name == "start" || name == "end" {
            format!("`{name} = 2`")
        } else {
            format!("`{name} = \"function_name\"`")
        };
        cx.error_spanned_by(item, format!("expected {example}"));
        return;
    };
    if seen.contains(&name) {
        cx.error_spanned_by(key, format!("duplicate key `{name}` in #[version(...)]"));
        return;
    }
    if name == "default_fn" {
        out.default_fn_written = true;
    }
    seen.push(name.clone());
    match name.as_str() {
        "start" => out.start = parse_version_number(cx, &name, value),
        "end" => out.end = parse_version_number(cx, &name, value),
        "default_fn" => out.default_fn = parse_hook(cx, key, &name, value),
        "ser_fn" => out.ser_fn = parse_hook(cx, key, &name, value),
        "de_fn" => out.de_fn = parse_hook(cx, key, &name, value),
        _ => out.ser_value_fn = parse_hook(cx, key, &name, value),
    }
}

/// Looks through the invisible groups that `macro_rules!` wraps around fragments.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => ungroup(&group.expr),
        Expr::Paren(paren) => ungroup(&paren.expr),
        other => other,
    }
}

/// Reads the value of `start` or `end`: an integer literal in `1..=65535`.
fn parse_version_number(cx: &mut Ctxt, key: &str, value: &Expr) -> Option<VersionNumber> {
    match ungroup(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => version_from_literal(cx, key, int),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            cx.error_spanned_by(value, negative_message(key));
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("`{key}` must be an integer literal, e.g. `{key} = 2`"),
            );
            None
        }
    }
}

/// Checks an integer literal given as a version.
fn version_from_literal(cx: &mut Ctxt, key: &str, int: &LitInt) -> Option<VersionNumber> {
    if !matches!(int.suffix(), "" | "u16") {
        cx.error(
            int.span(),
            format!("`{key}` must be an unsuffixed integer literal (or `u16`)"),
        );
        return None;
    }
    // syn reads `-1` as one (negative) literal.
    if int.base10_digits().starts_with('-') {
        cx.error(int.span(), negative_message(key));
        return None;
    }
    let value = match int.base10_parse::<u64>() {
        Ok(0) => {
            cx.error(
                int.span(),
                format!("`{key}` must be at least 1: versions are numbered from 1"),
            );
            return None;
        }
        Ok(value) => u16::try_from(value).ok(),
        Err(_) => None,
    };
    let Some(value) = value else {
        cx.error(
            int.span(),
            format!("`{key}` must be at most 65535: versions are `u16`"),
        );
        return None;
    };
    Some(VersionNumber {
        value,
        span: int.span(),
    })
}

/// The error for a negative `start` or `end`.
fn negative_message(key: &str) -> String {
    format!("`{key}` must not be negative: versions are numbered from 1 to 65535")
}

/// Reads the value of a hook key: a string literal naming a function.
fn parse_hook(cx: &mut Ctxt, key_path: &syn::Path, key: &str, value: &Expr) -> Option<Hook> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = ungroup(value)
    else {
        cx.error_spanned_by(
            value,
            format!(
                "`{key}` must be a string literal naming a function, e.g. `{key} = \"my_{key}\"`"
            ),
        );
        return None;
    };
    hook_from_literal(cx, key, lit).map(|(path, span)| Hook {
        path,
        span,
        key_span: key_path.span(),
    })
}

/// Parses the function path out of a hook's string literal.
fn hook_from_literal(cx: &mut Ctxt, key: &str, lit: &LitStr) -> Option<(syn::Path, Span)> {
    match lit.parse::<syn::Path>() {
        Ok(path) => Some((path, lit.span())),
        Err(_) => {
            cx.error(
                lit.span(),
                format!(
                    "`{key}` must name a function, e.g. `{key} = \"my_{key}\"`, but {} is not \
                     a function name or path",
                    quote::ToTokens::to_token_stream(lit)
                ),
            );
            None
        }
    }
}

/// Reports every `#[version]` attribute among `attrs`, which sit where none is allowed.
pub(crate) fn reject_version_attrs(cx: &mut Ctxt, attrs: &[Attribute], message: &str) {
    for attr in attrs.iter().filter(|attr| is_version_attr(attr)) {
        cx.error_spanned_by(attr, message);
    }
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;
    use syn::parse_quote;

    use super::*;

    fn parse(attrs: &[Attribute], position: Position) -> (VersionAttrs, Vec<String>) {
        let mut cx = Ctxt::new();
        let parsed = parse_version_attrs(&mut cx, attrs, position);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        };
        (parsed, errors)
    }

    #[test]
    fn test_attr_reads_every_key() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[doc = "not ours"]),
            parse_quote!(#[version(start = 2, end = 5u16, default_fn = "d")]),
            parse_quote!(#[version(ser_fn = "s", de_fn = "helpers::de", ser_value_fn = "v")]),
        ];
        let (parsed, errors) = parse(&attrs, Position::Field);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed.start.map(|v| v.value), Some(2));
        assert_eq!(parsed.end.map(|v| v.value), Some(5));
        assert!(parsed.default_fn_written);
        let path = |hook: Option<Hook>| hook.map(|h| h.path.to_token_stream().to_string());
        assert_eq!(path(parsed.default_fn), Some("d".to_owned()));
        assert_eq!(path(parsed.ser_fn), Some("s".to_owned()));
        assert_eq!(path(parsed.de_fn), Some("helpers :: de".to_owned()));
        assert_eq!(path(parsed.ser_value_fn), Some("v".to_owned()));
    }

    #[test]
    fn test_attr_reports_every_mistake_in_order() {
        let attrs: Vec<Attribute> = vec![parse_quote!(
            #[version(start = 0, bogus = 1, end = 70000, end = 3, default_fn = 4, ser_fn = "a b")]
        )];
        let (parsed, errors) = parse(&attrs, Position::Field);
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].contains("at least 1"));
        assert!(errors[1].contains("unknown key `bogus`"));
        assert!(errors[2].contains("at most 65535"));
        // A key written twice is a duplicate even when its first value was in error.
        assert!(errors[3].contains("duplicate key `end`"));
        assert!(errors[4].contains("must be a string literal"));
        assert!(errors[5].contains("must name a function"));
        assert!(parsed.start.is_none() && parsed.end.is_none());
    }

    #[test]
    fn test_attr_variant_refuses_field_hooks() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[version(start = 2, ser_fn = "s", de_fn = "d", ser_value_fn = "v")]),
        ];
        let (_, errors) = parse(&attrs, Position::Variant);
        assert_eq!(errors.len(), 3);
        assert!(errors
            .iter()
            .all(|e| e.contains("not supported on an enum variant")));
    }

    #[test]
    fn test_attr_negative_and_non_literal_versions() {
        let attrs: Vec<Attribute> = vec![parse_quote!(#[version(start = -3, end = N)])];
        let (parsed, errors) = parse(&attrs, Position::Field);
        assert!(parsed.start.is_none() && parsed.end.is_none());
        assert!(errors[0].contains("must not be negative"));
        assert!(errors[1].contains("must be an integer literal"));
    }
}
