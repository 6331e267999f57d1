//! `Versionize` for standard library types, one family per file.

mod collections;
mod primitives;
mod strings;
mod tuples;
mod wrappers;

#[cfg(feature = "vmm-sys-util")]
mod fam;
