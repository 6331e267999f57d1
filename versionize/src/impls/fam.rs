//! `FamStructWrapper<T>` from vmm-sys-util (feature `vmm-sys-util`): the header `T`, then a
//! `u64` entry count and the entries, as versionize 0.2 wrote it.
//!
//! The header's length field must equal the number of entries that follow. Other header
//! fields cannot be set on a wrapper without unsafe code (which this crate forbids), so the
//! rebuilt wrapper is compared with the decoded header and a difference is an error rather
//! than a silent loss.

use std::io::{Read, Write};

use vmm_sys_util::fam::{FamStruct, FamStructWrapper};

use crate::limits::EncodeScope;
use crate::{DecodeScope, VersionMap, Versionize, VersionizeError, VersionizeResult};

impl<T> Versionize for FamStructWrapper<T>
where
    T: Default + FamStruct + Versionize + PartialEq,
    T::Entry: Versionize,
{
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        // The decoder's scope, mirrored.
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
        self.as_fam_struct_ref().serialize(writer, map, v)?;
        let entries = self.as_slice();
        // The scope the decoder's `Vec<T::Entry>` enters.
        let _entries_scope = EncodeScope::enter_holding(map.limits(), size_of::<T::Entry>())?;
        let len =
            u64::try_from(entries.len()).map_err(|_| VersionizeError::OutOfRange("fam length"))?;
        len.serialize(writer, map, v)?;
        T::Entry::serialize_slice(entries, writer, map, v)
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter_holding(map.limits(), size_of::<T>())?;
        let header = T::deserialize(reader, map, v)?;
        let entries = Vec::<T::Entry>::deserialize(reader, map, v)?;
        // The wrapper copies header and entries into an allocation of its own.
        let entry_bytes = entries.len().saturating_mul(size_of::<T::Entry>());
        let wrapper_bytes = size_of::<T>().saturating_add(entry_bytes);
        scope.charge(u64::try_from(wrapper_bytes).unwrap_or(u64::MAX))?;
        if header.len() != entries.len() {
            return Err(VersionizeError::FamLength {
                header: u64::try_from(header.len()).unwrap_or(u64::MAX),
                entries: u64::try_from(entries.len()).unwrap_or(u64::MAX),
            });
        }
        let wrapper = FamStructWrapper::<T>::from_entries(&entries).map_err(|_| {
            VersionizeError::OutOfRange("fam entry count above the struct's maximum")
        })?;
        if *wrapper.as_fam_struct_ref() != header {
            return Err(VersionizeError::OutOfRange(
                "fam header fields other than the length must be zero",
            ));
        }
        Ok(wrapper)
    }

    fn version() -> u16 {
        1
    }

    /// `FamStructWrapper<Header, Entry>`: both types, so that a schema-driven decoder
    /// knows the layout of the entries that follow the header.
    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        let header = builder.describe::<T>();
        format!(
            "FamStructWrapper<{header}, {}>",
            builder.describe::<T::Entry>()
        )
    }
}
