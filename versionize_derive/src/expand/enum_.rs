//! `Versionize` for enums with unit, tuple and struct variants.
//!
//! Wire format: the variant index (its declaration position) as a little-endian `u32`, then
//! the variant's fields in declaration order.
//!
//! Serialize at type version v: a variant absent at v is replaced by what its `default_fn`
//! returns, and the replacement is written instead (itself replaced if absent too). The
//! replacements run in a loop bounded by the number of replaceable variants, so a cycle is
//! reported as `VariantCycle` instead of recursing forever.
//!
//! Deserialize from type version v: an index that is unknown, or names a variant absent at
//! v, is `UnknownVariant`.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::{
    absent_condition, bounded_generics, call_hook, impl_versionize, in_field, let_type_version,
    present_condition, read_field, schema, write_field,
};
use crate::ast::{Input, Variant};

/// Generates the impl for an enum with `variants`.
pub(super) fn expand(input: &Input<'_>, variants: &[Variant<'_>]) -> TokenStream {
    let generics = bounded_generics(input, &[], false);
    let serialize = serialize_body(input, variants);
    let deserialize = deserialize_body(input, variants);
    let schema_kind = schema::enum_kind(variants);
    impl_versionize(input, &generics, &serialize, &deserialize, &schema_kind)
}

/// The local names bound to a variant's fields: `__field0`, `__field1`...
fn bindings(variant: &Variant<'_>) -> Vec<Ident> {
    (0..variant.fields.len())
        .map(|position| format_ident!("__field{}", position))
        .collect()
}

/// The frame name of a variant's field in errors: `Variant.field`.
fn field_frame(variant: &Variant<'_>, field_name: &str) -> String {
    format!("{}.{}", variant.name, field_name)
}

/// The arm writing `variant` (index, then fields) and ending with `end`.
fn write_arm(input: &Input<'_>, variant: &Variant<'_>, end: &TokenStream) -> TokenStream {
    let ident = variant.ident;
    let bindings = bindings(variant);
    let members = variant.fields.iter().map(|field| &field.member);
    let index = Literal::u32_unsuffixed(variant.index);
    let index_in_field = in_field(input, &variant.name);
    let writes = variant
        .fields
        .iter()
        .zip(&bindings)
        .map(|(field, binding)| {
            let frame = field_frame(variant, &field.name);
            write_field(input, &frame, field, &quote!(#binding))
        });
    quote! {
        Self::#ident { #(#members: #bindings),* } => {
            ::versionize::__private::write_variant_index(__writer, #index) #index_in_field?;
            #(#writes)*
            #end
        }
    }
}

/// The body of `serialize`.
fn serialize_body(input: &Input<'_>, variants: &[Variant<'_>]) -> TokenStream {
    let let_version = let_type_version(input);
    // Variants that can be absent at the target version, with their replacement arm.
    let substitutions: Vec<TokenStream> = variants
        .iter()
        .filter_map(|variant| {
            let absent = absent_condition(variant.presence())?;
            // `check` makes sure every such variant has a `default_fn`.
            let hook = variant.attrs.default_fn.as_ref()?;
            let call = call_hook(
                hook,
                &quote! {
                    fn(&Self, ::core::primitive::u16) -> ::versionize::__private::VersionizeResult<Self>
                },
                &quote!(__current, __version),
            );
            let ident = variant.ident;
            let in_field = in_field(input, &variant.name);
            Some(quote! {
                Self::#ident { .. } if #absent => #call #in_field?,
            })
        })
        .collect();
    if substitutions.is_empty() {
        let end = quote!();
        let arms = variants
            .iter()
            .map(|variant| write_arm(input, variant, &end));
        return quote! {
            #let_version
            match self {
                #(#arms)*
            }
            ::versionize::__private::Ok(())
        };
    }
    let end = quote!(return ::versionize::__private::Ok(()););
    let arms = variants
        .iter()
        .map(|variant| write_arm(input, variant, &end));
    let limit = substitutions.len();
    let type_name = &input.name;
    let names = variants.iter().map(|variant| {
        let ident = variant.ident;
        let name = &variant.name;
        quote!(Self::#ident { .. } => #name)
    });
    quote! {
        #let_version
        let mut __substitute: ::versionize::__private::Option<Self> =
            ::versionize::__private::None;
        let mut __substitutions: ::core::primitive::usize = 0;
        loop {
            let __current: &Self = match &__substitute {
                ::versionize::__private::Some(__value) => __value,
                ::versionize::__private::None => self,
            };
            let __next: Self = match __current {
                #(#substitutions)*
                #(#arms)*
            };
            // Each replaceable variant can be replaced once on the way to a variant that
            // exists at the target version; one more replacement means a cycle.
            if __substitutions == #limit {
                return ::versionize::__private::Err(::versionize::__private::variant_cycle(
                    #type_name,
                    match self {
                        #(#names,)*
                    },
                    __version,
                ));
            }
            __substitutions += 1;
            __substitute = ::versionize::__private::Some(__next);
        }
    }
}

/// The body of `deserialize`.
fn deserialize_body(input: &Input<'_>, variants: &[Variant<'_>]) -> TokenStream {
    let let_version = let_type_version(input);
    let type_name = &input.name;
    let arms = variants.iter().map(|variant| {
        let ident = variant.ident;
        let index = Literal::u32_unsuffixed(variant.index);
        let guard = present_condition(variant.presence()).map(|present| quote!(if #present));
        let members = variant.fields.iter().map(|field| &field.member);
        let reads = variant.fields.iter().map(|field| {
            let frame = field_frame(variant, &field.name);
            read_field(input, &frame, field)
        });
        quote! {
            #index #guard => ::versionize::__private::Ok(Self::#ident { #(#members: #reads),* }),
        }
    });
    quote! {
        #let_version
        let __index = ::versionize::__private::read_variant_index(__reader).map_err(|__error| {
            ::versionize::__private::in_field(
                __error,
                #type_name,
                ::versionize::__private::None,
                __version,
            )
        })?;
        match __index {
            #(#arms)*
            _ => ::versionize::__private::Err(::versionize::__private::unknown_variant(
                #type_name,
                __index,
                __version,
            )),
        }
    }
}
