//! Rules that span more than one attribute key, one function each. Every rule records its
//! errors in the [`Ctxt`] and lets the others run, so all mistakes are reported together.

use crate::ast::{Data, Field, Input, Presence, Variant};
use crate::attr::{self, Hook, VersionAttrs};
use crate::ctxt::Ctxt;

/// Runs every rule on `input`.
pub(crate) fn check(cx: &mut Ctxt, input: &Input<'_>) {
    no_union(cx, input);
    no_lifetime_parameters(cx, input);
    no_version_on_type(cx, input);
    match &input.data {
        Data::Struct(fields) => {
            for field in fields {
                // The rules on hooks read the field's versions, which mean nothing when
                // `start >= end` (already reported).
                if start_before_end(cx, &field.attrs) {
                    field_hooks_can_run(cx, input, field);
                    no_ser_fn_on_retired_field(cx, field);
                    ser_value_fn_needs_end(cx, field);
                }
            }
        }
        Data::Enum(variants) => {
            not_empty_enum(cx, input, variants);
            for variant in variants {
                if start_before_end(cx, &variant.attrs) {
                    variant_default_fn_can_run(cx, input, variant);
                }
                absent_variant_has_default(cx, variant);
                no_version_on_variant_fields(cx, variant);
            }
        }
        Data::Union(_) => {}
    }
}

/// A union has no single meaning for its bytes, so it cannot be versioned field by field.
fn no_union(cx: &mut Ctxt, input: &Input<'_>) {
    if let Data::Union(union_token) = input.data {
        cx.error(
            union_token,
            "Versionize cannot be derived for a union: the derive cannot know which member is \
             active; use a tagged enum instead, or write the Versionize impl by hand",
        );
    }
}

/// Versioned state is looked up by `TypeId`, which needs `'static` types: a borrowed field
/// could not be produced by `deserialize` anyway.
fn no_lifetime_parameters(cx: &mut Ctxt, input: &Input<'_>) {
    for param in input.generics.lifetimes() {
        cx.error_spanned_by(
            &param.lifetime,
            "Versionize cannot be derived for a type with a lifetime parameter: hold an owned \
             type instead (e.g. `String` for `&str`, `Vec<T>` for `&[T]`), or write the \
             Versionize impl by hand",
        );
    }
}

/// A type's version is computed from its fields or variants; `#[version]` on the type itself
/// has no meaning (the original silently ignored it).
fn no_version_on_type(cx: &mut Ctxt, input: &Input<'_>) {
    attr::reject_version_attrs(
        cx,
        &input.original.attrs,
        "#[version(...)] belongs on fields and enum variants, not on the type: the type's \
         version is the largest `start` or `end` of its fields or variants",
    );
}

/// `end` is exclusive, so a field or variant with `start >= end` would exist at no version.
/// Returns whether the versions are consistent.
fn start_before_end(cx: &mut Ctxt, attrs: &VersionAttrs) -> bool {
    if let (Some(start), Some(end)) = (attrs.start, attrs.end) {
        if start.value >= end.value {
            cx.error(
                end.span,
                format!(
                    "`end` ({}) must be greater than `start` ({}): `end` is the first version \
                     without it",
                    end.value, start.value
                ),
            );
            return false;
        }
    }
    true
}

/// `default_fn`, `ser_fn` and `de_fn` run only at versions where their field is absent. A
/// field present at every version is never absent, so they would never run (the original
/// derive accepted them silently).
fn field_hooks_can_run(cx: &mut Ctxt, input: &Input<'_>, field: &Field<'_>) {
    if !field.presence().is_always() {
        return;
    }
    let hooks = [
        ("default_fn", &field.attrs.default_fn, "read"),
        ("ser_fn", &field.attrs.ser_fn, "written"),
        ("de_fn", &field.attrs.de_fn, "read"),
    ];
    for (key, hook, when) in hooks {
        if let Some(hook) = hook {
            cx.error(
                hook.key_span,
                format!(
                    "`{key}` never runs: it runs when a version without field `{}` is {when}, \
                     but the field exists at every version of `{}` (no `start` above 1, no \
                     `end`); remove it, or give the field the `start` or `end` it lacks",
                    field.name, input.name
                ),
            );
        }
    }
}

/// A `ser_fn` runs when writing a version where its field is absent; for a retired field
/// (`end` without `start`) those are the versions from `end` on, where the field is not
/// written. It looks like it computes what older builds receive but cannot: that is
/// `ser_value_fn`.
fn no_ser_fn_on_retired_field(cx: &mut Ctxt, field: &Field<'_>) {
    let presence = field.presence();
    let (Some(hook), Some(end), true) = (&field.attrs.ser_fn, presence.end, presence.start <= 1)
    else {
        return;
    };
    cx.error(
        hook.key_span,
        format!(
            "`ser_fn` on retired field `{name}` runs only when writing versions {end} and later, \
             where `{name}` is not written, so it cannot set the value that versions before \
             {end} receive; to compute that value, use `ser_value_fn = \"...\"` naming a \
             `fn(&self, u16) -> VersionizeResult<T>` (T the field's type)",
            name = field.name
        ),
    );
}

/// `ser_value_fn` replaces the in-memory value of a retired field at the versions that still
/// write it. On a field without `end` it would also replace it at the latest version, so
/// the bytes would not be the state.
fn ser_value_fn_needs_end(cx: &mut Ctxt, field: &Field<'_>) {
    if let (Some(hook), None) = (&field.attrs.ser_value_fn, field.presence().end) {
        cx.error(
            hook.key_span,
            format!(
                "`ser_value_fn` computes the value written for a retired field at the versions \
                 that still have it, but field `{}` has no `end`, so it is written at the \
                 latest version from its value in memory; give it `end = N`, or, to fill an \
                 older field when writing older versions, use `ser_fn`",
                field.name
            ),
        );
    }
}

/// A variant's `default_fn` runs when writing a version without the variant; a variant
/// present at every version is never replaced.
fn variant_default_fn_can_run(cx: &mut Ctxt, input: &Input<'_>, variant: &Variant<'_>) {
    let Some(hook): Option<&Hook> = variant.attrs.default_fn.as_ref() else {
        return;
    };
    if variant.presence().is_always() {
        cx.error(
            hook.key_span,
            format!(
                "`default_fn` never runs: it replaces variant `{}` when writing a version \
                 without it, but the variant exists at every version of `{}` (no `start` \
                 above 1, no `end`); remove it, or give the variant the `start` or `end` it \
                 lacks",
                variant.name, input.name
            ),
        );
    }
}

/// Writing a variant at a version where it does not exist needs a substitute.
fn absent_variant_has_default(cx: &mut Ctxt, variant: &Variant<'_>) {
    let presence: Presence = variant.presence();
    if !presence.is_always() && !variant.attrs.default_fn_written {
        cx.error(
            variant.ident.span(),
            format!(
                "variant `{}` does not exist at every version of the enum, so it needs \
                 `#[version(default_fn = \"...\")]` naming a `fn(&self, u16) -> \
                 VersionizeResult<Self>` that returns the value to write instead",
                variant.name
            ),
        );
    }
}

/// Variant fields are written whenever their variant is; versioning them on their own would
/// need a layout per variant and version, which the format does not have.
fn no_version_on_variant_fields(cx: &mut Ctxt, variant: &Variant<'_>) {
    for field in &variant.original.fields {
        attr::reject_version_attrs(
            cx,
            &field.attrs,
            "#[version(...)] is not supported on a field of an enum variant: version the \
             variant itself, or move the fields into a struct that derives Versionize",
        );
    }
}

/// An enum without variants has no value to write and none to read.
fn not_empty_enum(cx: &mut Ctxt, input: &Input<'_>, variants: &[Variant<'_>]) {
    if variants.is_empty() {
        cx.error(
            input.ident.span(),
            "Versionize cannot be derived for an enum with no variants: it has no value to \
             write and none to read",
        );
    }
}

#[cfg(test)]
mod tests {
    use syn::{parse_quote, DeriveInput};

    use super::*;

    /// The messages of every error found in `input`, in order.
    fn errors(input: &DeriveInput) -> Vec<String> {
        let mut cx = Ctxt::new();
        let model = Input::from_syn(&mut cx, input);
        check(&mut cx, &model);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn test_check_accepts_valid_inputs() {
        let inputs: [DeriveInput; 4] = [
            parse_quote!(
                struct Unit;
            ),
            parse_quote!(
                struct Tuple<T, const N: usize>(T, #[version(start = 2, end = 3)] [u8; N]);
            ),
            parse_quote!(
                enum E {
                    A,
                    #[version(start = 2, default_fn = "f")]
                    B {
                        x: u8,
                    },
                }
            ),
            parse_quote!(
                struct S {
                    #[version(end = 65535, de_fn = "g")]
                    x: u8,
                }
            ),
        ];
        for input in &inputs {
            assert!(errors(input).is_empty(), "{:?}", errors(input));
        }
    }

    #[test]
    fn test_check_reports_every_rule_at_once() {
        let input: DeriveInput = parse_quote! {
            #[version(start = 2)]
            enum E<'a, T> {
                #[version(start = 3, end = 2, default_fn = "f")]
                A(&'a T),
                #[version(start = 2)]
                B { #[version(end = 2)] x: u8 },
            }
        };
        let errors = errors(&input);
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("lifetime parameter"));
        assert!(errors[1].contains("not on the type"));
        assert!(errors[2].contains("must be greater than `start`"));
        assert!(errors[3].contains("variant `B` does not exist at every version"));
        assert!(errors[4].contains("field of an enum variant"));
    }

    #[test]
    fn test_check_refuses_hooks_that_never_run_or_never_reach_the_bytes() {
        let input: DeriveInput = parse_quote! {
            struct S {
                #[version(default_fn = "a", ser_fn = "b", de_fn = "c")]
                always: u8,
                #[version(start = 1, ser_value_fn = "d")]
                also_always: u8,
                #[version(start = 2, ser_value_fn = "e")]
                added: u8,
                #[version(end = 3, ser_fn = "f")]
                retired: u8,
            }
        };
        let found = errors(&input);
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found[0].starts_with("`default_fn` never runs"), "{found:?}");
        assert!(found[1].starts_with("`ser_fn` never runs"), "{found:?}");
        assert!(found[2].starts_with("`de_fn` never runs"), "{found:?}");
        assert!(
            found[3].contains("field `also_always` has no `end`"),
            "{found:?}"
        );
        assert!(found[4].contains("field `added` has no `end`"), "{found:?}");
        assert!(
            found[5].contains("`ser_fn` on retired field `retired`"),
            "{found:?}"
        );

        let input: DeriveInput = parse_quote! {
            enum E { #[version(default_fn = "f")] A, #[version(start = 1, default_fn = "g")] B }
        };
        let found = errors(&input);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .all(|e| e.starts_with("`default_fn` never runs")));
    }

    #[test]
    fn test_check_accepts_every_hook_that_can_run() {
        let input: DeriveInput = parse_quote! {
            struct S {
                #[version(start = 2, default_fn = "a", ser_fn = "b", de_fn = "c")]
                added: u8,
                #[version(end = 3, default_fn = "a", de_fn = "c", ser_value_fn = "d")]
                retired: u8,
                #[version(start = 2, end = 3, default_fn = "a", ser_fn = "b", de_fn = "c", ser_value_fn = "d")]
                window: u8,
            }
        };
        assert!(errors(&input).is_empty(), "{:?}", errors(&input));
    }

    #[test]
    fn test_check_refuses_union_and_empty_enum() {
        let union: DeriveInput = parse_quote!(union U { a: u8, b: u16 });
        assert!(errors(&union)[0].contains("tagged enum"));
        let empty: DeriveInput = parse_quote!(
            enum Never {}
        );
        assert!(errors(&empty)[0].contains("no variants"));
    }

    #[test]
    fn test_check_invalid_default_fn_is_not_also_missing() {
        let input: DeriveInput = parse_quote! {
            enum E { A, #[version(start = 2, default_fn = "")] B }
        };
        let errors = errors(&input);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("must name a function"));
    }

    #[test]
    fn test_input_version_is_largest_start_or_end() {
        let mut cx = Ctxt::new();
        let input: DeriveInput = parse_quote! {
            struct S { a: u8, #[version(start = 3)] b: u8, #[version(start = 2, end = 5)] c: u8 }
        };
        assert_eq!(Input::from_syn(&mut cx, &input).version(), 5);
        let input: DeriveInput = parse_quote!(
            struct Plain {
                a: u8,
            }
        );
        assert_eq!(Input::from_syn(&mut cx, &input).version(), 1);
        assert!(cx.check().is_ok());
    }
}
