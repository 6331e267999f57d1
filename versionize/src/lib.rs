//! Version-tolerant binary serialization for the state of a running microVM.
//!
//! A VMM saves the state of a paused microVM with one build and restores it with another:
//! newer (upgrade) or older (rollback). Each state type carries its own version; a
//! [`VersionMap`] says which version of each type belongs to each *application* (data)
//! version, so a build can read every layout it knows and write any older one.
//!
//! The wire format is byte-compatible with versionize 0.2 (bincode 1, fixed-width little
//! endian integers, `u64` lengths): see `docs/FORMAT.md` in the repository.
//!
//! Untrusted input is bounded by [`Limits`] carried in the [`VersionMap`]: an allocation
//! budget per top-level decode, caps on string and collection lengths, and a nesting depth.
//!
//! # Example
//! ```
//! use versionize::prelude::*;
//!
//! #[derive(Debug, PartialEq, Versionize)]
//! struct Uart {
//!     line_control: u8,
//!     // Added in version 2 of `Uart`; older data reads the default.
//!     #[version(start = 2, default_fn = "default_fifo")]
//!     fifo: Vec<u8>,
//! }
//!
//! impl Uart {
//!     fn default_fifo(_type_version: u16) -> Vec<u8> {
//!         vec![0x55]
//!     }
//! }
//!
//! # fn main() -> VersionizeResult<()> {
//! // App version 1 had Uart v1; app version 2 has Uart v2.
//! let mut map = VersionMap::new();
//! map.new_version().set_type_version(Uart::type_id(), 2);
//!
//! let uart = Uart { line_control: 3, fifo: vec![1, 2] };
//!
//! // Write for an older build (rollback): the v1 layout has no fifo.
//! let mut old = Vec::new();
//! uart.serialize(&mut old, &map, 1)?;
//! assert_eq!(old, [3]);
//!
//! // Read it back: the missing field takes its default.
//! let back = Uart::deserialize(&mut old.as_slice(), &map, 1)?;
//! assert_eq!(back, Uart { line_control: 3, fifo: vec![0x55] });
//! # Ok(())
//! # }
//! ```
//!
//! The sections below are the reference of `#[derive(Versionize)]`; `docs/VERSIONING.md` in
//! the repository has a recipe for each kind of change.
//!
#![doc = include_str!("derive.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
pub mod crc;
mod error;
mod impls;
pub mod limits;
pub mod prelude;
pub mod schema;
mod version_map;

#[doc(hidden)]
pub mod __private;

use std::any::TypeId;
use std::io::{Read, Write};

pub use crate::codec::{decode_from_reader, decode_from_slice, encode_into_writer, encode_to_vec};
pub use crate::error::{ErrorFrame, ErrorPath, VersionizeError, VersionizeResult};
pub use crate::limits::{DecodeScope, EncodeScope, Limits};
pub use crate::version_map::VersionMap;

/// A type that can be written at any of its versions and read from any of them.
///
/// Implement it with `#[derive(Versionize)]`. `app_version` is the application (data)
/// version; each type maps it to its own version through the [`VersionMap`] and passes the
/// same `app_version` on to its fields.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Versionize`",
    label = "`{Self}` cannot be saved in versioned state",
    note = "derive it with `#[derive(Versionize)]`, or implement `versionize::Versionize` by hand"
)]
pub trait Versionize {
    /// Writes `self` in the layout of the type version that `app_version` maps to.
    ///
    /// # Errors
    /// Writer failures, an `app_version` outside the map, or an error from a user hook.
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        version_map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<()>;

    /// Reads a value written in the layout of the type version that `app_version` maps to.
    ///
    /// # Errors
    /// Reader failures, malformed input, exceeded [`Limits`], an `app_version` outside the
    /// map, or an error from a user hook.
    fn deserialize<R: Read>(
        reader: &mut R,
        version_map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<Self>
    where
        Self: Sized;

    /// The key of this type in a [`VersionMap`].
    fn type_id() -> TypeId
    where
        Self: 'static,
    {
        TypeId::of::<Self>()
    }

    /// The latest version of this type.
    fn version() -> u16;

    /// Describes this type for a [`schema`] export and returns its name.
    ///
    /// `#[derive(Versionize)]` generates it; built-in types name their layout. The default,
    /// for hand-written impls, records the type as opaque under its Rust type name, at its
    /// latest version; a hand-written impl that follows the version map can override it.
    fn describe(builder: &mut schema::SchemaBuilder<'_>) -> String
    where
        Self: Sized,
    {
        builder.opaque(std::any::type_name::<Self>(), Self::version())
    }

    /// Writes a slice of values back to back (no length). Plain numeric types override
    /// this with a bulk copy; the default writes one element after the other.
    ///
    /// # Errors
    /// As [`serialize`](Self::serialize).
    #[inline]
    fn serialize_slice<W: Write>(
        items: &[Self],
        writer: &mut W,
        version_map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<()>
    where
        Self: Sized,
    {
        for item in items {
            item.serialize(writer, version_map, app_version)?;
        }
        Ok(())
    }

    /// Reads `len` values back to back and appends them to `out`. The caller has already
    /// checked `len` against the limits and budget. Plain numeric types override this with a
    /// bulk copy.
    ///
    /// # Errors
    /// As [`deserialize`](Self::deserialize).
    #[inline]
    fn deserialize_into_vec<R: Read>(
        reader: &mut R,
        version_map: &VersionMap,
        app_version: u16,
        len: usize,
        out: &mut Vec<Self>,
    ) -> VersionizeResult<()>
    where
        Self: Sized,
    {
        impls::read_into_vec(reader, version_map, app_version, len, out)
    }

    /// Reads a fixed-size array. Plain numeric types override this to fill the array in
    /// place.
    ///
    /// # Errors
    /// As [`deserialize`](Self::deserialize).
    #[inline]
    fn deserialize_array<R: Read, const N: usize>(
        reader: &mut R,
        version_map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<[Self; N]>
    where
        Self: Sized,
    {
        impls::read_array(reader, version_map, app_version)
    }
}
