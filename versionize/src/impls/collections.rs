//! Sequences, arrays, maps and sets: a `u64` element count, then the elements (arrays have
//! no count). Decoding checks the count against the limits and charges the budget before
//! reserving anything.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::io::{Read, Write};

use crate::limits::initial_capacity;
use crate::{DecodeScope, VersionMap, Versionize, VersionizeError, VersionizeResult};

#[inline]
fn write_len<W: Write>(writer: &mut W, len: usize) -> VersionizeResult<()> {
    let len = u64::try_from(len).map_err(|_| VersionizeError::OutOfRange("collection length"))?;
    writer.write_all(&len.to_le_bytes())?;
    Ok(())
}

/// Writes a `u64` count, then every entry with `write_entry`.
#[inline]
fn write_counted<W: Write, I: IntoIterator>(
    writer: &mut W,
    len: usize,
    entries: I,
    mut write_entry: impl FnMut(&mut W, I::Item) -> VersionizeResult<()>,
) -> VersionizeResult<()> {
    write_len(writer, len)?;
    for entry in entries {
        write_entry(writer, entry)?;
    }
    Ok(())
}

/// Reads a `u64` count, checked against the limits with each entry charged
/// `size_of::<E>()` before anything is reserved, then that many entries into the collection
/// `new` makes from a capacity hint.
#[inline]
fn read_counted<R: Read, E, C: Extend<E>>(
    reader: &mut R,
    map: &VersionMap,
    new: impl FnOnce(usize) -> C,
    mut read_entry: impl FnMut(&mut R) -> VersionizeResult<E>,
) -> VersionizeResult<C> {
    let scope = DecodeScope::enter(map.limits())?;
    let len = scope.read_collection_len(reader, map.limits(), size_of::<E>())?;
    let mut out = new(initial_capacity::<E>(len));
    for _ in 0..len {
        out.extend(Some(read_entry(reader)?));
    }
    Ok(out)
}

impl<T: Versionize> Versionize for Vec<T> {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_len(writer, self.len())?;
        T::serialize_slice(self, writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_collection_len(reader, map.limits(), size_of::<T>())?;
        let mut items = Vec::new();
        T::deserialize_into_vec(reader, map, v, len, &mut items)?;
        Ok(items)
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("Vec<{}>", builder.describe::<T>())
    }
}

impl<T: Versionize> Versionize for VecDeque<T> {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_len(writer, self.len())?;
        let (front, back) = self.as_slices();
        T::serialize_slice(front, writer, map, v)?;
        T::serialize_slice(back, writer, map, v)
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        Vec::<T>::deserialize(reader, map, v).map(VecDeque::from)
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("VecDeque<{}>", builder.describe::<T>())
    }
}

impl<T: Versionize, const N: usize> Versionize for [T; N] {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        T::serialize_slice(self, writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        T::deserialize_array::<R, N>(reader, map, v)
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("[{}; {N}]", builder.describe::<T>())
    }
}

impl<K: Versionize + Ord, V: Versionize> Versionize for BTreeMap<K, V> {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_counted(writer, self.len(), self, |writer, (key, value)| {
            key.serialize(writer, map, v)?;
            value.serialize(writer, map, v)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        read_counted(
            reader,
            map,
            |_| BTreeMap::new(),
            |reader| {
                Ok((
                    K::deserialize(reader, map, v)?,
                    V::deserialize(reader, map, v)?,
                ))
            },
        )
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        let key = builder.describe::<K>();
        format!("BTreeMap<{key}, {}>", builder.describe::<V>())
    }
}

impl<T: Versionize + Ord> Versionize for BTreeSet<T> {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_counted(writer, self.len(), self, |writer, item| {
            item.serialize(writer, map, v)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        read_counted(
            reader,
            map,
            |_| BTreeSet::new(),
            |reader| T::deserialize(reader, map, v),
        )
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("BTreeSet<{}>", builder.describe::<T>())
    }
}

impl<K, V, S> Versionize for HashMap<K, V, S>
where
    K: Versionize + Eq + Hash,
    V: Versionize,
    S: BuildHasher + Default,
{
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_counted(writer, self.len(), self, |writer, (key, value)| {
            key.serialize(writer, map, v)?;
            value.serialize(writer, map, v)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let new = |capacity| HashMap::with_capacity_and_hasher(capacity, S::default());
        read_counted(reader, map, new, |reader| {
            Ok((
                K::deserialize(reader, map, v)?,
                V::deserialize(reader, map, v)?,
            ))
        })
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        let key = builder.describe::<K>();
        format!("HashMap<{key}, {}>", builder.describe::<V>())
    }
}

impl<T, S> Versionize for HashSet<T, S>
where
    T: Versionize + Eq + Hash,
    S: BuildHasher + Default,
{
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        write_counted(writer, self.len(), self, |writer, item| {
            item.serialize(writer, map, v)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let new = |capacity| HashSet::with_capacity_and_hasher(capacity, S::default());
        read_counted(reader, map, new, |reader| T::deserialize(reader, map, v))
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("HashSet<{}>", builder.describe::<T>())
    }
}
