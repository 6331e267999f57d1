//! Sequences, arrays, maps and sets: a `u64` element count, then the elements (arrays have
//! no count). Decoding checks the count against the limits and charges the budget what the
//! collection will allocate (hash tables and B-tree nodes included) before reserving
//! anything. Hash maps and sets are written sorted by their entries' encoded bytes, so that
//! equal values give equal bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::io::{Read, Write};

use crate::limits::{btree_bytes, grow_step, hash_table_bytes, EncodeScope};
use crate::{DecodeScope, VersionMap, Versionize, VersionizeError, VersionizeResult};

#[inline]
fn write_len<W: Write>(writer: &mut W, len: usize) -> VersionizeResult<()> {
    let len = u64::try_from(len).map_err(|_| VersionizeError::OutOfRange("collection length"))?;
    writer.write_all(&len.to_le_bytes())?;
    Ok(())
}

/// Reads `len` values back to back into `out`, growing it by [`grow_step`] so that its
/// capacity ends at exactly `len` (what the budget was charged) and a truncated input fails
/// having reserved little more than it supplied.
#[inline]
pub(crate) fn read_into_vec<T: Versionize, R: Read>(
    reader: &mut R,
    map: &VersionMap,
    v: u16,
    len: usize,
    out: &mut Vec<T>,
) -> VersionizeResult<()> {
    let mut left = len;
    while left > 0 {
        let count = grow_step::<T>(out.len(), left);
        out.reserve_exact(count);
        for _ in 0..count {
            out.push(T::deserialize(reader, map, v)?);
        }
        left -= count;
    }
    Ok(())
}

/// Reads `N` values into an array. The values are gathered in a vector first (charged to
/// the budget), since an array cannot be built element by element without unsafe code.
#[inline]
pub(crate) fn read_array<T: Versionize, R: Read, const N: usize>(
    reader: &mut R,
    map: &VersionMap,
    v: u16,
) -> VersionizeResult<[T; N]> {
    // Inside the array's own scope (see `[T; N]::deserialize`).
    crate::limits::charge_open(u64::try_from(size_of::<[T; N]>()).unwrap_or(u64::MAX))?;
    let mut items = Vec::with_capacity(N);
    for _ in 0..N {
        items.push(T::deserialize(reader, map, v)?);
    }
    items
        .try_into()
        .map_err(|_| VersionizeError::OutOfRange("array length"))
}

/// Writes a `u64` count, then every entry, sorted by its encoded bytes (key first, then
/// value): a hash table's iteration order differs between equal tables, its encoding must
/// not. Entries are encoded into one buffer, sorted, then written.
fn write_sorted<W: Write, I: IntoIterator>(
    writer: &mut W,
    len: usize,
    entries: I,
    mut write_entry: impl FnMut(&mut Vec<u8>, I::Item) -> VersionizeResult<usize>,
) -> VersionizeResult<()> {
    write_len(writer, len)?;
    let mut buffer = Vec::new();
    // (start, end of key, end) of each entry in `buffer`.
    let mut spans = Vec::with_capacity(len);
    for entry in entries {
        let start = buffer.len();
        let key_len = write_entry(&mut buffer, entry)?;
        spans.push((start, start + key_len, buffer.len()));
    }
    spans.sort_unstable_by(|a, b| {
        let key = |s: &(usize, usize, usize)| &buffer[s.0..s.1];
        let value = |s: &(usize, usize, usize)| &buffer[s.1..s.2];
        key(a).cmp(key(b)).then_with(|| value(a).cmp(value(b)))
    });
    for (start, _, end) in spans {
        writer.write_all(&buffer[start..end])?;
    }
    Ok(())
}

/// Writes `value` into `buffer` and returns how many bytes it took.
#[inline]
fn encode_len<T: Versionize>(
    buffer: &mut Vec<u8>,
    value: &T,
    map: &VersionMap,
    v: u16,
) -> VersionizeResult<usize> {
    let start = buffer.len();
    value.serialize(buffer, map, v)?;
    Ok(buffer.len() - start)
}

/// Reads a `u64` count checked against the limits, charges `bytes(count)` (what the
/// collection will allocate for that many entries) before anything is reserved, then reads
/// that many entries into the collection `new` makes for the count.
#[inline]
fn read_counted<R: Read, E, C: Extend<E>>(
    reader: &mut R,
    map: &VersionMap,
    bytes: impl FnOnce(usize) -> u64,
    new: impl FnOnce(usize) -> C,
    mut read_entry: impl FnMut(&mut R) -> VersionizeResult<E>,
) -> VersionizeResult<C> {
    let scope = DecodeScope::enter_holding(map.limits(), size_of::<E>())?;
    let len = DecodeScope::read_len(reader, map.limits())?;
    // Zero-sized entries allocate nothing but are charged a byte each, so that a huge
    // count of them cannot make the decoder loop for long.
    scope.charge(bytes(len).max(u64::try_from(len).unwrap_or(u64::MAX)))?;
    let mut out = new(len);
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
        write_len(writer, self.len())?;
        T::serialize_slice(self, writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter_holding(map.limits(), size_of::<T>())?;
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
        // The scope a `Vec<T>` enters, which is what the decoder reads.
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
        write_len(writer, self.len())?;
        let (front, back) = self.as_slices();
        T::serialize_slice(front, writer, map, v)?;
        T::serialize_slice(back, writer, map, v)
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        // Converting a vector into a deque reuses its allocation.
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<Self>())?;
        T::serialize_slice(self, writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let _scope = DecodeScope::enter_holding(map.limits(), size_of::<Self>())?;
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<(K, V)>())?;
        write_len(writer, self.len())?;
        for (key, value) in self {
            key.serialize(writer, map, v)?;
            value.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        read_counted(
            reader,
            map,
            btree_bytes::<K, V>,
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
        write_len(writer, self.len())?;
        for item in self {
            item.serialize(writer, map, v)?;
        }
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        read_counted(
            reader,
            map,
            btree_bytes::<T, ()>,
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<(K, V)>())?;
        write_sorted(writer, self.len(), self, |buffer, (key, value)| {
            let key_len = encode_len(buffer, key, map, v)?;
            value.serialize(buffer, map, v)?;
            Ok(key_len)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        // The whole table is reserved at once: growing it would hold the old and the new
        // table at the same time.
        let new = |len| HashMap::with_capacity_and_hasher(len, S::default());
        read_counted(reader, map, hash_table_bytes::<(K, V)>, new, |reader| {
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
        let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
        write_sorted(writer, self.len(), self, |buffer, item| {
            encode_len(buffer, item, map, v)
        })
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let new = |len| HashSet::with_capacity_and_hasher(len, S::default());
        read_counted(reader, map, hash_table_bytes::<T>, new, |reader| {
            T::deserialize(reader, map, v)
        })
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("HashSet<{}>", builder.describe::<T>())
    }
}
