//! `Versionize` for standard library types, one family per file.

mod collections;
mod primitives;
mod strings;
mod tuples;
mod wrappers;

pub(crate) use collections::{read_array, read_into_vec};

#[cfg(feature = "vmm-sys-util")]
mod fam;
