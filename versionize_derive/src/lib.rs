//! `#[derive(Versionize)]`: per-field versioning for the `versionize` crate.
//!
//! Use it through `versionize`, which re-exports it next to the trait:
//! `use versionize::Versionize;` brings both.
//!
//! # Example
//! ```
//! use versionize::{VersionMap, Versionize, VersionizeError, VersionizeResult};
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
//! # `#[version(...)]` on a struct field
//! | key | value | meaning |
//! |---|---|---|
//! | `start` | integer `1..=65535`, default 1 | first type version that has the field |
//! | `end` | integer `2..=65535`, above `start` | first type version that no longer has it (exclusive) |
//! | `default_fn` | `"name"` of a `fn(u16) -> FieldType` | value of the field when reading a version without it (else `Default::default()`) |
//! | `ser_fn` | `"name"` of a `fn(&mut self, u16) -> VersionizeResult<()>` | runs before writing a version without the field |
//! | `de_fn` | `"name"` of a `fn(&mut self, u16) -> VersionizeResult<()>` | runs after reading a version without the field |
//!
//! A field exists at type version `v` when `start <= v && (no end || v < end)`. A bare name
//! (`"default_x"`) is an associated function of the type (`Self::default_x`); a path with
//! `::` (`"defaults::x"`) is called as written. The `u16` given to every hook is the
//! **type** version being written or read, not the app version.
//!
//! # `#[version(...)]` on an enum variant
//! `start` and `end` as for fields, and `default_fn` naming a
//! `fn(&self, u16) -> VersionizeResult<Self>`, required when the variant does not exist at
//! every version: writing the variant at a version without it writes what `default_fn`
//! returns instead (a chain of replacements that loops is an error). Fields of variants
//! take no `#[version]`.
//!
//! # The generated impl
//! - `Versionize::version()` is the largest `start` or `end` of the fields or variants (at
//!   least 1).
//! - `serialize` maps the app version to the type version through the `VersionMap`. When
//!   some field absent at that version has a `ser_fn`, it clones `self` once, runs those
//!   hooks on the copy in declaration order and writes the present fields from the copy;
//!   otherwise it writes from `self` without cloning (a `ser_fn` makes `Clone` required).
//!   Enums write the `u32` little-endian variant index, then the variant's fields.
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

/// Derives `versionize::Versionize`; see the [crate docs](crate) for the attributes.
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
