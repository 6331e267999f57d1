//! What the derive emits when the input has errors: the errors, plus an impl whose methods
//! only return an error, so that code using the type does not add a second wave of
//! "`Versionize` is not implemented" messages (as thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// The compile errors of `error` followed by a stub `Versionize` impl for `input`.
pub(crate) fn expand(input: &DeriveInput, error: &syn::Error) -> TokenStream {
    let ty = &input.ident;
    let type_name = ty.to_string();
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let error = error.to_compile_error();
    quote! {
        #error

        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #impl_generics ::versionize::Versionize for #ty #ty_generics #where_clause {
            fn serialize<__W: ::versionize::__private::Write>(
                &self,
                _: &mut __W,
                _: &::versionize::__private::VersionMap,
                _: ::core::primitive::u16,
            ) -> ::versionize::__private::VersionizeResult<()> {
                ::versionize::__private::Err(::versionize::__private::derive_failed(#type_name))
            }

            fn deserialize<__R: ::versionize::__private::Read>(
                _: &mut __R,
                _: &::versionize::__private::VersionMap,
                _: ::core::primitive::u16,
            ) -> ::versionize::__private::VersionizeResult<Self> {
                ::versionize::__private::Err(::versionize::__private::derive_failed(#type_name))
            }

            fn version() -> ::core::primitive::u16 {
                1
            }
        }
    }
}
