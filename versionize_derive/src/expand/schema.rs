//! `Versionize::describe`: the type's full name, its version at the app version being described,
//! and its fields (name, type, `start`/`end`) or variants (index, fields), for
//! `versionize::schema`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::GenericParam;

use super::versionize_of;
use crate::ast::{Field, Input, Presence, Variant};

/// The `describe` method of the impl.
pub(super) fn describe_method(input: &Input<'_>, kind: &TokenStream) -> TokenStream {
    let name = type_name(input);
    quote! {
        fn describe(
            __builder: &mut ::versionize::__private::SchemaBuilder<'_>,
        ) -> ::std::string::String {
            let __name: ::std::string::String = #name;
            if ::versionize::__private::SchemaBuilder::begin(__builder, &__name) {
                let __kind = #kind;
                let __version = ::versionize::__private::SchemaBuilder::type_version::<Self>(__builder);
                ::versionize::__private::SchemaBuilder::finish(
                    __builder,
                    ::versionize::__private::schema_type(
                        ::std::string::ToString::to_string(&__name),
                        __version,
                        <Self as ::versionize::Versionize>::version(),
                        __kind,
                    ),
                );
            }
            __name
        }
    }
}

/// The schema name: the type's full path (`module_path!()` of the deriving module, then
/// `::Name`), with each type argument described and each const argument's value, so that
/// every instantiation is its own schema entry and same-name types of different modules
/// never share one: `my_vmm::net::Ring<my_vmm::net::RxDesc, 256>`.
fn type_name(input: &Input<'_>) -> TokenStream {
    let base = &input.name;
    let arguments: Vec<TokenStream> = input
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => {
                let ident = &param.ident;
                Some(quote!(<#ident as ::versionize::Versionize>::describe(__builder)))
            }
            GenericParam::Const(param) => {
                let ident = &param.ident;
                Some(quote!(::std::string::ToString::to_string(&#ident)))
            }
            // Refused by `check`.
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    if arguments.is_empty() {
        return quote!(::std::string::ToString::to_string(::core::concat!(
            ::core::module_path!(),
            "::",
            #base
        )));
    }
    let format = format!("{{}}::{base}<{}>", vec!["{}"; arguments.len()].join(", "));
    quote!(::std::format!(#format, ::core::module_path!(), #(#arguments),*))
}

/// `TypeKind::Struct { fields }` for a struct.
pub(super) fn struct_kind(fields: &[Field<'_>]) -> TokenStream {
    let fields = fields
        .iter()
        .map(|field| field_schema(field, field.presence()));
    quote! {
        ::versionize::__private::schema_struct(::std::vec![#(#fields),*])
    }
}

/// `TypeKind::Enum { variants }` for an enum.
pub(super) fn enum_kind(variants: &[Variant<'_>]) -> TokenStream {
    let always = Presence {
        start: 1,
        end: None,
    };
    let variants = variants.iter().map(|variant| {
        let name = &variant.name;
        let index = Literal::u32_unsuffixed(variant.index);
        let (start, end) = bounds(variant.presence());
        let fields = variant
            .fields
            .iter()
            .map(|field| field_schema(field, always));
        quote! {
            ::versionize::__private::schema_variant(
                #name,
                #index,
                #start,
                #end,
                ::std::vec![#(#fields),*],
            )
        }
    });
    quote! {
        ::versionize::__private::schema_enum(::std::vec![#(#variants),*])
    }
}

/// `FieldSchema::new(name, described type, start, end)`.
fn field_schema(field: &Field<'_>, presence: Presence) -> TokenStream {
    let name = &field.name;
    // The same spanned `<Ty as Versionize>` as in (de)serialize, so that a type without the
    // trait gives one error, not one more for `describe`.
    let versionize = versionize_of(field);
    let (start, end) = bounds(presence);
    quote! {
        ::versionize::__private::schema_field(
            #name,
            #versionize::describe(__builder),
            #start,
            #end,
        )
    }
}

/// `start` and `end` as tokens: `2`, `::core::option::Option::Some(4)` / `None`.
fn bounds(presence: Presence) -> (Literal, TokenStream) {
    let start = Literal::u16_unsuffixed(presence.start);
    let end = match presence.end {
        Some(end) => {
            let end = Literal::u16_unsuffixed(end);
            quote!(::core::option::Option::Some(#end))
        }
        None => quote!(::core::option::Option::None),
    };
    (start, end)
}
