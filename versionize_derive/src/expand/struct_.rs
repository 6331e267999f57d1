//! `Versionize` for structs (named, tuple and unit).
//!
//! Wire format: the fields present at the type version, in declaration order, no tags.
//!
//! Serialize at type version v: when some field absent at v has a `ser_fn`, `self` is
//! cloned once, those hooks run on the copy in declaration order, and the present fields are
//! written from the copy; otherwise they are written from `self` directly. A present field
//! with a `ser_value_fn` is written as what that function returns for the value (or copy).
//!
//! Deserialize from type version v: present fields are read in declaration order, absent
//! ones come from their `default_fn` or `Default`; then the `de_fn` of every absent field
//! runs in declaration order on the new value.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Type;

use super::{
    absent_condition, bounded_generics, call_hook, impl_versionize, in_field, let_type_version,
    present_condition, read_field, schema, write_field,
};
use crate::ast::{Field, Input};
use crate::attr::Hook;

/// Generates the impl for a struct with `fields`.
pub(super) fn expand(input: &Input<'_>, fields: &[Field<'_>]) -> TokenStream {
    let ser_fns = hooks(fields, |field| field.attrs.ser_fn.as_ref());
    let needs_default: Vec<&Type> = fields
        .iter()
        .filter(|field| !field.presence().is_always() && field.attrs.default_fn.is_none())
        .map(|field| field.ty)
        .collect();
    let generics = bounded_generics(input, &needs_default, !ser_fns.is_empty());
    let serialize = serialize_body(input, fields, &ser_fns);
    let deserialize = deserialize_body(input, fields);
    let schema_kind = schema::struct_kind(fields);
    impl_versionize(input, &generics, &serialize, &deserialize, &schema_kind)
}

/// A hook of a field that can run (the field is absent at some version), with the
/// condition (`__version` outside the field's versions) under which it runs.
struct ActiveHook<'a> {
    field: &'a Field<'a>,
    hook: &'a Hook,
    absent: TokenStream,
}

/// The hooks picked by `pick` of the fields absent at some version, in declaration order.
/// (`check` refuses a hook on a field present at every version, which would never run.)
fn hooks<'a>(
    fields: &'a [Field<'a>],
    pick: impl Fn(&'a Field<'a>) -> Option<&'a Hook>,
) -> Vec<ActiveHook<'a>> {
    fields
        .iter()
        .filter_map(|field| {
            let hook = pick(field)?;
            let absent = absent_condition(field.presence())?;
            Some(ActiveHook {
                field,
                hook,
                absent,
            })
        })
        .collect()
}

/// Statements calling each `ser_fn` or `de_fn` (a `fn(&mut Self, u16) ->
/// VersionizeResult<()>`) whose field is absent at `__version` on `__object`.
fn call_hooks(input: &Input<'_>, hooks: &[ActiveHook<'_>], object: &TokenStream) -> TokenStream {
    let signature = quote! {
        fn(&mut Self, ::core::primitive::u16) -> ::versionize::__private::VersionizeResult<()>
    };
    let calls = hooks.iter().map(|active| {
        let absent = &active.absent;
        let in_field = in_field(input, &active.field.name);
        let call = call_hook(active.hook, &signature, &quote!(&mut #object, __version));
        quote! {
            if #absent {
                #call #in_field?;
            }
        }
    });
    quote!(#(#calls)*)
}

/// The body of `serialize`.
fn serialize_body(
    input: &Input<'_>,
    fields: &[Field<'_>],
    ser_fns: &[ActiveHook<'_>],
) -> TokenStream {
    let let_version = let_type_version(input);
    let let_this = match ser_fns.first() {
        None => quote!(let __this: &Self = self;),
        Some(first) => {
            // Absence conditions are comparisons or `!range.contains(..)`: no parentheses needed.
            let any_absent = ser_fns.iter().map(|active| &active.absent);
            // Spanned on the first `ser_fn`, so that a type without `Clone` is reported there.
            let copy = quote_spanned! {first.hook.span=>
                <Self as ::versionize::__private::SerFnCopy>::ser_fn_copy
            };
            let run = call_hooks(input, ser_fns, &quote!(__copy));
            quote! {
                let __copy: ::versionize::__private::Option<Self> = if #(#any_absent)||* {
                    let mut __copy: Self = #copy(self);
                    #run
                    ::versionize::__private::Some(__copy)
                } else {
                    ::versionize::__private::None
                };
                let __this: &Self = match &__copy {
                    ::versionize::__private::Some(__copy) => __copy,
                    ::versionize::__private::None => self,
                };
            }
        }
    };
    let writes = fields.iter().map(|field| {
        let member = &field.member;
        let write = match &field.attrs.ser_value_fn {
            None => write_field(input, &field.name, field, &quote!(&__this.#member)),
            Some(hook) => {
                let ty = field.ty;
                let signature = quote! {
                    fn(&Self, ::core::primitive::u16) -> ::versionize::__private::VersionizeResult<#ty>
                };
                let call = call_hook(hook, &signature, &quote!(__this, __version));
                let in_field = in_field(input, &field.name);
                let write = write_field(input, &field.name, field, &quote!(&__value));
                quote! {
                    let __value: #ty = #call #in_field?;
                    #write
                }
            }
        };
        match present_condition(field.presence()) {
            Some(present) => quote!(if #present { #write }),
            None => write,
        }
    });
    quote! {
        #let_version
        #let_this
        #(#writes)*
        ::versionize::__private::Ok(())
    }
}

/// The body of `deserialize`.
fn deserialize_body(input: &Input<'_>, fields: &[Field<'_>]) -> TokenStream {
    let let_version = let_type_version(input);
    let values = fields.iter().map(|field| {
        let member = &field.member;
        let read = read_field(input, &field.name, field);
        let value = match present_condition(field.presence()) {
            None => read,
            Some(present) => {
                let absent = absent_value(field);
                quote!(if #present { #read } else { #absent })
            }
        };
        quote!(#member: #value)
    });
    let de_fns = hooks(fields, |field| field.attrs.de_fn.as_ref());
    let build = if de_fns.is_empty() {
        quote!(::versionize::__private::Ok(Self { #(#values,)* }))
    } else {
        let run = call_hooks(input, &de_fns, &quote!(__object));
        quote! {
            let mut __object = Self { #(#values,)* };
            #run
            ::versionize::__private::Ok(__object)
        }
    };
    quote! {
        #let_version
        #build
    }
}

/// The value of `field` at a version that does not have it.
fn absent_value(field: &Field<'_>) -> TokenStream {
    match &field.attrs.default_fn {
        Some(hook) => {
            let ty = field.ty;
            call_hook(
                hook,
                &quote!(fn(::core::primitive::u16) -> #ty),
                &quote!(__version),
            )
        }
        None => {
            let ty = field.ty;
            quote_spanned! {field.span=>
                <#ty as ::versionize::__private::AbsentFieldDefault>::absent_field_default()
            }
        }
    }
}
