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
        write_len(writer, self.len())?;
        for (key, value) in self {
            key.serialize(writer, map, v)?;
            value.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_collection_len(reader, map.limits(), size_of::<(K, V)>())?;
        let mut out = BTreeMap::new();
        for _ in 0..len {
            let key = K::deserialize(reader, map, v)?;
            let value = V::deserialize(reader, map, v)?;
            out.insert(key, value);
        }
        Ok(out)
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
        write_len(writer, self.len())?;
        for item in self {
            item.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_collection_len(reader, map.limits(), size_of::<T>())?;
        let mut out = BTreeSet::new();
        for _ in 0..len {
            out.insert(T::deserialize(reader, map, v)?);
        }
        Ok(out)
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
        write_len(writer, self.len())?;
        for (key, value) in self {
            key.serialize(writer, map, v)?;
            value.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_collection_len(reader, map.limits(), size_of::<(K, V)>())?;
        let mut out =
            HashMap::with_capacity_and_hasher(initial_capacity::<(K, V)>(len), S::default());
        for _ in 0..len {
            let key = K::deserialize(reader, map, v)?;
            let value = V::deserialize(reader, map, v)?;
            out.insert(key, value);
        }
        Ok(out)
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
        write_len(writer, self.len())?;
        for item in self {
            item.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_collection_len(reader, map.limits(), size_of::<T>())?;
        let mut out = HashSet::with_capacity_and_hasher(initial_capacity::<T>(len), S::default());
        for _ in 0..len {
            out.insert(T::deserialize(reader, map, v)?);
        }
        Ok(out)
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("HashSet<{}>", builder.describe::<T>())
    }
}
