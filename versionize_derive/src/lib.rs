//! `#[derive(Versionize)]`: per-field versioning for the `versionize` crate.
//!
//! New code reaches it through `versionize`: `use versionize::prelude::*;` brings the trait
//! and this derive under one name. Code written for versionize_derive 0.1.6 keeps
//! `use versionize_derive::Versionize;` next to `use versionize::{..., Versionize, ...};`.
//! The reference of the `#[version(...)]` attribute (keys, hook signatures, when each hook
//! runs, which placements are refused) is in the crate documentation of `versionize`,
//! sections "The `#[version]` attribute" and "Importing the derive".
//!
//! # Example
//! ```
//! use versionize::prelude::*;
//!
//! #[derive(Clone, Debug, PartialEq, Versionize)]
//! struct Pit {
//!     count: u32,
//!     // Replaced by `mode` in version 2 of `Pit`: written for version 1 only.
//!     #[version(end = 2)]
//!     legacy_mode: u16,
//!     // New in version 2. Writing version 1 first runs `mode_to_legacy` on a copy of the
//!     // value; reading version 1 runs `mode_from_legacy` once the fields are read.
//!     #[version(start = 2, ser_fn = "mode_to_legacy", de_fn = "mode_from_legacy")]
//!     mode: u8,
//!     // New in version 2; reading version 1 gives `Pit::default_gate(1)`.
//!     #[version(start = 2, default_fn = "default_gate")]
//!     gate: bool,
//! }
//!
//! impl Pit {
//!     fn mode_to_legacy(&mut self, _type_version: u16) -> VersionizeResult<()> {
//!         self.legacy_mode = u16::from(self.mode);
//!         Ok(())
//!     }
//!     fn mode_from_legacy(&mut self, _type_version: u16) -> VersionizeResult<()> {
//!         self.mode = u8::try_from(self.legacy_mode)
//!             .map_err(|_| VersionizeError::Semantic("mode above 255".to_owned()))?;
//!         Ok(())
//!     }
//!     fn default_gate(_type_version: u16) -> bool {
//!         true
//!     }
//! }
//!
//! # fn main() -> VersionizeResult<()> {
//! let mut map = VersionMap::new(); // app version 1: Pit v1
//! map.new_version().set_type_version(Pit::type_id(), 2); // app version 2: Pit v2
//! assert_eq!(Pit::version(), 2);
//!
//! let pit = Pit { count: 7, legacy_mode: 0, mode: 4, gate: false };
//! let mut bytes = Vec::new();
//! pit.serialize(&mut bytes, &map, 1)?; // Pit v1: count, legacy_mode
//! assert_eq!(bytes, [7, 0, 0, 0, 4, 0]);
//! let old = Pit::deserialize(&mut bytes.as_slice(), &map, 1)?;
//! assert_eq!(old, Pit { count: 7, legacy_mode: 4, mode: 4, gate: true });
//!
//! let mut bytes = Vec::new();
//! pit.serialize(&mut bytes, &map, 2)?; // Pit v2: count, mode, gate
//! assert_eq!(bytes, [7, 0, 0, 0, 4, 0]);
//! # Ok(())
//! # }
//! ```
//!
//! # What it accepts
//! Named, tuple and unit structs; enums with unit, tuple and struct variants; generic type
//! parameters, which get `T: Versionize + 'static` bounds. Unions and lifetime parameters
//! are refused (use a tagged enum or an owned type, or write the impl by hand).
//!
//! # The generated impl
//! - `Versionize::version()` is the largest `start` or `end` of the fields or variants (at
//!   least 1).
//! - `serialize` maps the app version to the type version through the `VersionMap`. When
//!   some field absent at that version has a `ser_fn`, it clones `self` once, runs those
//!   hooks on the copy in declaration order and writes the present fields from the copy;
//!   otherwise it writes from `self` without cloning (a `ser_fn` makes `Clone` required).
//!   A retired field with a `ser_value_fn` is written as what it returns for the value (or
//!   the copy). Enums write the `u32` little-endian variant index, then the variant's fields.
//! - `deserialize` reads the present fields in declaration order, fills absent ones from
//!   `default_fn` or `Default`, then runs the `de_fn` of every absent field in declaration
//!   order. An enum index unknown at that version is an error.
//! - `describe` records the type for `versionize::schema`: its name (with generic
//!   arguments), its version at the described app version, and its fields (name, type,
//!   `start`, `end`) or variants (index, `start`, `end`, fields).
//! - App version 0 or above the map's latest, and a type mapped above its own `version()`,
//!   are returned errors; errors from fields and hooks say which type and field failed at
//!   which version.
//!
//! Every mistake in the attributes is a compile error on the offending token, all reported
//! at once; see the compile-fail cases in the repository's `tests/tests/ui/`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;

use syn::{parse_macro_input, DeriveInput};

/// Derives `versionize::Versionize`.
///
/// The `#[version(start, end, default_fn, ser_fn, de_fn, ser_value_fn)]` attribute on fields
/// and enum variants is described in the crate documentation of `versionize`, section "The
/// `#[version]` attribute". (No links here: this text is also shown on the page of the
/// re-export in `versionize`, where a link relative to this crate would not resolve.)
#[proc_macro_derive(Versionize, attributes(version))]
pub fn derive_versionize(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input).into()
}

/// Parse, check, expand; on any error, all errors and a stub impl.
fn derive(input: &DeriveInput) -> proc_macro2::TokenStream {
    let mut cx = ctxt::Ctxt::new();
    let model = ast::Input::from_syn(&mut cx, input);
    check::check(&mut cx, &model);
    match cx.check() {
        Ok(()) => expand::expand(&model),
        Err(error) => fallback::expand(input, &error),
    }
}

#[cfg(test)]
mod tests {
    /// The derive's doc comment is also rendered on the page of its re-export in
    /// `versionize`, where a link relative to this crate (`[..](crate)`, `[`Item`]`) points
    /// nowhere: rustdoc does not resolve it there, and does not warn either.
    #[test]
    fn test_derive_docs_have_no_intra_doc_links() {
        let source = include_str!("lib.rs");
        let start = source
            .find("/// Derives `versionize::Versionize`")
            .unwrap_or_default();
        let end = source[start..]
            .find("#[proc_macro_derive")
            .map_or(source.len(), |end| start + end);
        let docs = &source[start..end];
        assert!(!docs.is_empty());
        assert!(!docs.contains("]("), "inline link in: {docs}");
        assert!(!docs.contains("[`"), "intra-doc link in: {docs}");
    }
}
