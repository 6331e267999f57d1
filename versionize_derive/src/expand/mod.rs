//! Code generation: the `Versionize` impl of a checked input.
//!
//! Generated code names everything by absolute path (`::versionize::...`, `::core::...`) and
//! its locals start with `__`, so it compiles with nothing imported and whatever the user
//! shadows (`Result`, `Ok`, `Option`, `Vec`, `Box`...). It reaches the runtime only through
//! `::versionize::__private` and the `::versionize::Versionize` trait, so the runtime's public
//! types can grow without breaking derived code. Calls that need a trait of a field's type
//! are spanned on that field, so a missing impl underlines the field; every hook is called
//! through a fn pointer of its expected signature, spanned on its key and literal, so a
//! function with another signature is reported there with the signature it must have.

mod enum_;
mod schema;
mod struct_;

use proc_macro2::{Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::{parse_quote, Generics, Type, WherePredicate};

use crate::ast::{Data, Field, Input, Presence};
use crate::attr::Hook;

/// Generates the impl for a checked input.
pub(crate) fn expand(input: &Input<'_>) -> TokenStream {
    match &input.data {
        Data::Struct(fields) => struct_::expand(input, fields),
        Data::Enum(variants) => enum_::expand(input, variants),
        // Refused by `check`; nothing to generate.
        Data::Union(_) => TokenStream::new(),
    }
}

/// The type's name with call-site resolution, so that lints such as `deprecated` on the
/// type do not fire on the generated impl header (as thiserror does).
fn call_site_ident(ident: &Ident) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(ident.span().resolved_at(Span::call_site()));
    ident
}

/// The `impl Versionize` block around the generated method bodies.
///
/// Inside the bodies, `__writer`, `__reader`, `__version_map` and `__app_version` are the
/// method arguments; `schema_kind` is the `TypeKind` expression that `describe` records.
fn impl_versionize(
    input: &Input<'_>,
    generics: &Generics,
    serialize: &TokenStream,
    deserialize: &TokenStream,
    schema_kind: &TokenStream,
) -> TokenStream {
    let ty = call_site_ident(input.ident);
    let describe = schema::describe_method(input, schema_kind);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let version = Literal::u16_unsuffixed(input.version());
    quote! {
        #[automatically_derived]
        // Absolute paths may repeat what the user imported, and the impl must read fields
        // the user marked deprecated.
        #[allow(unused_qualifications, deprecated)]
        impl #impl_generics ::versionize::Versionize for #ty #ty_generics #where_clause {
            fn serialize<__W: ::versionize::__private::Write>(
                &self,
                __writer: &mut __W,
                __version_map: &::versionize::__private::VersionMap,
                __app_version: ::core::primitive::u16,
            ) -> ::versionize::__private::VersionizeResult<()> {
                // Held to the end: counts nesting depth and stack as the decoder will.
                let __scope = ::versionize::__private::encode_scope::<Self>(__version_map)?;
                #serialize
            }

            fn deserialize<__R: ::versionize::__private::Read>(
                __reader: &mut __R,
                __version_map: &::versionize::__private::VersionMap,
                __app_version: ::core::primitive::u16,
            ) -> ::versionize::__private::VersionizeResult<Self> {
                // Held to the end: counts nesting depth and stack, shares the budget.
                let __scope = ::versionize::__private::decode_scope::<Self>(__version_map)?;
                #deserialize
            }

            #[inline]
            fn version() -> ::core::primitive::u16 {
                #version
            }

            #describe
        }
    }
}

/// `let __version = <type version that __app_version maps to>?;`
fn let_type_version(input: &Input<'_>) -> TokenStream {
    let type_name = &input.name;
    quote! {
        let __version = ::versionize::__private::type_version::<Self>(
            __version_map,
            __app_version,
            <Self as ::versionize::Versionize>::version(),
            #type_name,
        )?;
    }
}

/// `.map_err(..)` adding the frame "`type_name`.`frame` at `__version`" to an error.
fn in_field(input: &Input<'_>, frame: &str) -> TokenStream {
    let type_name = &input.name;
    quote! {
        .map_err(|__error| ::versionize::__private::in_field(
            __error,
            #type_name,
            ::versionize::__private::Some(#frame),
            __version,
        ))
    }
}

/// `<FieldTy as Versionize>`, spanned on the field so that a type without the trait is
/// reported there.
fn versionize_of(field: &Field<'_>) -> TokenStream {
    let ty = field.ty;
    quote_spanned!(field.span=> <#ty as ::versionize::Versionize>)
}

/// A statement writing `value` (a `&FieldTy`) at `__app_version`.
fn write_field(
    input: &Input<'_>,
    frame: &str,
    field: &Field<'_>,
    value: &TokenStream,
) -> TokenStream {
    let versionize = versionize_of(field);
    let in_field = in_field(input, frame);
    quote! {
        #versionize::serialize(#value, __writer, __version_map, __app_version) #in_field?;
    }
}

/// An expression reading a field at `__app_version`.
fn read_field(input: &Input<'_>, frame: &str, field: &Field<'_>) -> TokenStream {
    let versionize = versionize_of(field);
    let in_field = in_field(input, frame);
    quote! {
        #versionize::deserialize(__reader, __version_map, __app_version) #in_field?
    }
}

/// The path to call for a hook: a bare name is an associated function of `Self`
/// (as in the original derive); a path with `::` is used as written.
fn hook_path(hook: &Hook) -> TokenStream {
    let path = &hook.path;
    if path.leading_colon.is_none() && path.segments.len() == 1 {
        quote_spanned!(hook.span=> Self::#path)
    } else {
        path.to_token_stream()
    }
}

/// A call of `hook` with `args`, through a fn pointer of type `signature` so that a function
/// with another signature is a type error naming the expected one: "expected fn pointer
/// `fn(u16) -> _`", on the hook's literal, "expected due to this" on its key.
fn call_hook(hook: &Hook, signature: &TokenStream, args: &TokenStream) -> TokenStream {
    let path = hook_path(hook);
    let signature = respan(signature.clone(), hook.key_span);
    quote! {
        {
            let __hook: #signature = #path;
            __hook(#args)
        }
    }
}

/// `tokens` shown at `span` (name resolution unchanged), so that a type error in a
/// generated type points at one place instead of a range across the input.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(group.span().located_at(span));
                token = TokenTree::Group(new);
            } else {
                token.set_span(token.span().located_at(span));
            }
            token
        })
        .collect()
}

/// `__version` lies in the versions of `presence`; `None` when that holds at every version.
fn present_condition(presence: Presence) -> Option<TokenStream> {
    let start = Literal::u16_unsuffixed(presence.start);
    match (
        presence.start > 1,
        presence.end.map(Literal::u16_unsuffixed),
    ) {
        (false, None) => None,
        (true, None) => Some(quote!(__version >= #start)),
        (false, Some(end)) => Some(quote!(__version < #end)),
        (true, Some(end)) => Some(quote!((#start..#end).contains(&__version))),
    }
}

/// `__version` lies outside the versions of `presence`; `None` when it never does.
fn absent_condition(presence: Presence) -> Option<TokenStream> {
    let start = Literal::u16_unsuffixed(presence.start);
    match (
        presence.start > 1,
        presence.end.map(Literal::u16_unsuffixed),
    ) {
        (false, None) => None,
        (true, None) => Some(quote!(__version < #start)),
        (false, Some(end)) => Some(quote!(__version >= #end)),
        (true, Some(end)) => Some(quote!(!(#start..#end).contains(&__version))),
    }
}

/// The input's generics with the bounds the generated code needs: `Versionize + 'static`
/// on every type parameter, `Default` on absent field types that mention a parameter and
/// have no `default_fn`, and `Clone` on the type itself when `needs_clone`.
fn bounded_generics(input: &Input<'_>, needs_default: &[&Type], needs_clone: bool) -> Generics {
    let mut generics = input.generics.clone();
    let params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
    if params.is_empty() {
        return generics;
    }
    let mut predicates: Vec<WherePredicate> = params
        .iter()
        .map(|param| parse_quote!(#param: ::versionize::Versionize + 'static))
        .collect();
    for ty in needs_default {
        if mentions_any(ty.to_token_stream(), &params) {
            predicates.push(parse_quote!(#ty: ::core::default::Default));
        }
    }
    if needs_clone {
        let ident = input.ident;
        let (_, ty_generics, _) = input.generics.split_for_impl();
        predicates.push(parse_quote!(#ident #ty_generics: ::core::clone::Clone));
    }
    generics.make_where_clause().predicates.extend(predicates);
    generics
}

/// Whether `tokens` contain one of `idents` anywhere.
fn mentions_any(tokens: TokenStream, idents: &[Ident]) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => idents.contains(&ident),
        TokenTree::Group(group) => mentions_any(group.stream(), idents),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use syn::{parse_quote, DeriveInput};

    use crate::ast::Input;
    use crate::ctxt::Ctxt;

    fn expand(input: &DeriveInput) -> String {
        let mut cx = Ctxt::new();
        let model = Input::from_syn(&mut cx, input);
        assert!(cx.check().is_ok());
        super::expand(&model).to_string()
    }

    #[test]
    fn test_expand_copies_only_for_ser_fn() {
        let plain: DeriveInput = parse_quote! {
            struct S { #[version(start = 2, de_fn = "d")] a: u8, #[version(end = 2, ser_value_fn = "v")] b: u8 }
        };
        // No `ser_fn`: no copy, no `Clone`; `ser_value_fn` reads `self`.
        let code = expand(&plain);
        assert!(!code.contains("SerFnCopy"), "{code}");
        assert!(code.contains("let __hook : fn (& mut Self"), "{code}");
        assert!(
            code.contains("__hook (& mut __object , __version)"),
            "{code}"
        );
        assert!(code.contains("__hook (__this , __version)"), "{code}");

        let hooked: DeriveInput = parse_quote! {
            struct S { #[version(start = 3, ser_fn = "s")] a: u8 }
        };
        let code = expand(&hooked);
        assert!(code.contains("SerFnCopy"), "{code}");
        assert!(code.contains("if __version < 3"), "{code}");
    }

    #[test]
    fn test_expand_hooks_called_through_typed_fn_pointers() {
        let input: DeriveInput = parse_quote! {
            struct S {
                #[version(start = 2, default_fn = "d", ser_fn = "s", de_fn = "e")]
                a: Vec<u8>,
                #[version(end = 2, ser_value_fn = "v")]
                b: u16,
            }
        };
        let code = expand(&input);
        for signature in [
            "let __hook : fn (:: core :: primitive :: u16) -> Vec < u8 > = Self :: d ;",
            "let __hook : fn (& mut Self , :: core :: primitive :: u16) -> :: versionize :: \
             __private :: VersionizeResult < () > = Self :: s ;",
            "let __hook : fn (& mut Self , :: core :: primitive :: u16) -> :: versionize :: \
             __private :: VersionizeResult < () > = Self :: e ;",
            "let __hook : fn (& Self , :: core :: primitive :: u16) -> :: versionize :: \
             __private :: VersionizeResult < u16 > = Self :: v ;",
        ] {
            assert!(code.contains(signature), "{signature}\n{code}");
        }
        let input: DeriveInput = parse_quote! {
            enum E { A, #[version(start = 2, default_fn = "f")] B }
        };
        let code = expand(&input);
        let signature = "let __hook : fn (& Self , :: core :: primitive :: u16) -> :: versionize \
                         :: __private :: VersionizeResult < Self > = Self :: f ;";
        assert!(code.contains(signature), "{code}");
    }

    /// Every `::versionize::X` path of generated code.
    fn runtime_paths(code: &str) -> Vec<String> {
        code.match_indices(":: versionize :: ")
            .map(|(at, prefix)| {
                let rest = &code[at + prefix.len()..];
                rest.split(' ').next().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn test_expand_reaches_runtime_only_through_private() {
        let inputs: [DeriveInput; 3] = [
            parse_quote! {
                struct S<T> {
                    a: T,
                    #[version(start = 2, default_fn = "d", ser_fn = "s", de_fn = "e")]
                    b: u8,
                    #[version(end = 2, ser_value_fn = "v")]
                    c: u8,
                }
            },
            parse_quote! {
                enum E { A(u8), #[version(start = 2, default_fn = "f")] B { x: u16 } }
            },
            parse_quote!(
                struct Unit;
            ),
        ];
        for input in &inputs {
            let code = expand(input);
            let paths = runtime_paths(&code);
            assert!(!paths.is_empty(), "{code}");
            for path in paths {
                assert!(
                    path == "__private" || path == "Versionize",
                    "generated code names `::versionize::{path}`: {code}"
                );
            }
        }
        // The stub emitted next to compile errors too.
        let input: DeriveInput = parse_quote!(
            struct S {
                #[version(start = 0)]
                a: u8,
            }
        );
        let error = syn::Error::new(proc_macro2::Span::call_site(), "e");
        let code = crate::fallback::expand(&input, &error).to_string();
        for path in runtime_paths(&code) {
            assert!(
                path == "__private" || path == "Versionize",
                "{path}: {code}"
            );
        }
    }

    #[test]
    fn test_expand_presence_conditions() {
        use crate::ast::Presence;
        let cond = |start, end| {
            let presence = Presence { start, end };
            (
                super::present_condition(presence).map(|t| t.to_string()),
                super::absent_condition(presence).map(|t| t.to_string()),
            )
        };
        assert_eq!(cond(1, None), (None, None));
        assert_eq!(
            cond(2, None),
            (Some("__version >= 2".into()), Some("__version < 2".into()))
        );
        assert_eq!(
            cond(1, Some(4)),
            (Some("__version < 4".into()), Some("__version >= 4".into()))
        );
        assert_eq!(
            cond(2, Some(4)),
            (
                Some("(2 .. 4) . contains (& __version)".into()),
                Some("! (2 .. 4) . contains (& __version)".into())
            )
        );
    }

    #[test]
    fn test_expand_generic_bounds() {
        let input: DeriveInput = parse_quote! {
            struct S<T: Copy, U> where U: Send { a: T, #[version(start = 2)] b: Vec<U>, #[version(start = 2)] c: u8 }
        };
        let code = expand(&input);
        assert!(
            code.contains("T : :: versionize :: Versionize + 'static"),
            "{code}"
        );
        assert!(
            code.contains("Vec < U > : :: core :: default :: Default"),
            "{code}"
        );
        // A field type without parameters gets no bound: a missing `Default` there is
        // reported on the field instead.
        assert!(
            !code.contains("u8 : :: core :: default :: Default"),
            "{code}"
        );
    }
}
