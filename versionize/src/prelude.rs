//! One import for code that derives `Versionize`: `use versionize::prelude::*;`.
//!
//! It brings the [`Versionize`] trait and, with the `derive` feature (on by default), the
//! `#[derive(Versionize)]` macro under the same name, plus [`VersionMap`],
//! [`VersionizeError`] and [`VersionizeResult`].
//!
//! The derive lives here and not at the crate root on purpose: code written for
//! versionize 0.2 imports the trait from `versionize` and the derive from
//! `versionize_derive` by name, and a derive at the crate root would make those two imports
//! collide (E0252) as soon as any crate in the build enabled it. A glob import never
//! collides, because a name imported by name shadows it. See
//! [Importing the derive](crate#importing-the-derive).

pub use crate::{VersionMap, Versionize, VersionizeError, VersionizeResult};

/// `#[derive(Versionize)]`: see [the attribute reference](crate#the-version-attribute).
#[cfg(feature = "derive")]
pub use versionize_derive::Versionize;
