//! Fixed-width numbers, `bool` and `char`.
//!
//! Numbers are little endian whatever the host; `usize`/`isize` travel as 64 bits. Slices,
//! vectors and arrays of numbers are copied in bulk: on little-endian hosts their memory is
//! written and read as is (through `bytemuck`'s safe casts), on big-endian hosts through a
//! staging buffer with byte swaps.

use std::io::{Read, Write};

use crate::limits::grow_step;
use crate::{VersionMap, Versionize, VersionizeError, VersionizeResult};

/// Bytes staged per bulk write of a numeric slice on big-endian hosts.
#[cfg(target_endian = "big")]
const CHUNK_BYTES: usize = 4096;

macro_rules! impl_number {
    ($($ty:ty),* $(,)?) => {$(
        impl Versionize for $ty {
            #[inline]
            fn serialize<W: Write>(&self, writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
                writer.write_all(&self.to_le_bytes())?;
                Ok(())
            }

            #[inline]
            fn deserialize<R: Read>(reader: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
                let mut bytes = [0u8; size_of::<$ty>()];
                reader.read_exact(&mut bytes)?;
                Ok(<$ty>::from_le_bytes(bytes))
            }

            fn version() -> u16 {
                1
            }

            fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
                stringify!($ty).to_owned()
            }

            /// On little-endian hosts the slice's memory already is the wire format: one
            /// `write_all` of its bytes.
            #[cfg(target_endian = "little")]
            #[inline]
            fn serialize_slice<W: Write>(items: &[Self], writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
                writer.write_all(bytemuck::cast_slice(items))?;
                Ok(())
            }

            #[cfg(target_endian = "big")]
            #[inline]
            fn serialize_slice<W: Write>(items: &[Self], writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
                const SIZE: usize = size_of::<$ty>();
                let mut buffer = [0u8; CHUNK_BYTES];
                for chunk in items.chunks(CHUNK_BYTES / SIZE) {
                    for (slot, item) in buffer.chunks_exact_mut(SIZE).zip(chunk) {
                        slot.copy_from_slice(&item.to_le_bytes());
                    }
                    writer.write_all(&buffer[..chunk.len() * SIZE])?;
                }
                Ok(())
            }

            #[inline]
            fn deserialize_into_vec<R: Read>(
                reader: &mut R,
                _: &VersionMap,
                _: u16,
                len: usize,
                out: &mut Vec<Self>,
            ) -> VersionizeResult<()> {
                let mut left = len;
                while left > 0 {
                    let count = grow_step::<$ty>(out.len(), left);
                    let start = out.len();
                    // Exactly: `resize` alone would round the capacity up to a power of two.
                    out.reserve_exact(count);
                    out.resize(start + count, <$ty>::default());
                    read_numbers(reader, &mut out[start..])?;
                    left -= count;
                }
                Ok(())
            }

            #[inline]
            fn deserialize_array<R: Read, const N: usize>(reader: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<[Self; N]> {
                let mut array = [<$ty>::default(); N];
                read_numbers(reader, &mut array)?;
                Ok(array)
            }
        }

        impl Number for $ty {
            #[cfg(target_endian = "big")]
            fn swap_from_le(&mut self) {
                *self = <$ty>::from_le_bytes(self.to_ne_bytes());
            }
        }
    )*};
}

/// A plain number whose in-memory bytes are its wire bytes on little-endian hosts.
trait Number: bytemuck::Pod {
    /// Converts a value read as little-endian bytes into host order.
    #[cfg(target_endian = "big")]
    fn swap_from_le(&mut self);
}

/// Fills `items` from the reader: one `read_exact` into their memory, then (big-endian
/// hosts only) a byte swap.
#[inline]
fn read_numbers<T: Number, R: Read>(reader: &mut R, items: &mut [T]) -> VersionizeResult<()> {
    reader.read_exact(bytemuck::cast_slice_mut(items))?;
    #[cfg(target_endian = "big")]
    for item in items.iter_mut() {
        item.swap_from_le();
    }
    Ok(())
}

impl_number!(u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl Versionize for u8 {
    #[inline]
    fn serialize<W: Write>(&self, writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        writer.write_all(&[*self])?;
        Ok(())
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "u8".to_owned()
    }

    #[inline]
    fn serialize_slice<W: Write>(
        items: &[Self],
        writer: &mut W,
        _: &VersionMap,
        _: u16,
    ) -> VersionizeResult<()> {
        writer.write_all(items)?;
        Ok(())
    }

    #[inline]
    fn deserialize_into_vec<R: Read>(
        reader: &mut R,
        _: &VersionMap,
        _: u16,
        len: usize,
        out: &mut Vec<Self>,
    ) -> VersionizeResult<()> {
        // Grow in steps so a truncated input claiming a long (in-budget) length fails
        // before the whole length is allocated. `read_to_end` fills spare capacity without
        // zeroing it first.
        let mut left = len;
        while left > 0 {
            let count = grow_step::<u8>(out.len(), left);
            out.reserve_exact(count);
            let want = u64::try_from(count).unwrap_or(u64::MAX);
            let got = reader.by_ref().take(want).read_to_end(out)?;
            if got < count {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            left -= count;
        }
        Ok(())
    }

    #[inline]
    fn deserialize_array<R: Read, const N: usize>(
        reader: &mut R,
        _: &VersionMap,
        _: u16,
    ) -> VersionizeResult<[Self; N]> {
        let mut array = [0u8; N];
        reader.read_exact(&mut array)?;
        Ok(array)
    }
}

impl Versionize for usize {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        let wide = u64::try_from(*self).map_err(|_| VersionizeError::OutOfRange("usize"))?;
        wide.serialize(writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let wide = u64::deserialize(reader, map, v)?;
        usize::try_from(wide).map_err(|_| VersionizeError::OutOfRange("usize"))
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "usize".to_owned()
    }
}

impl Versionize for isize {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        let wide = i64::try_from(*self).map_err(|_| VersionizeError::OutOfRange("isize"))?;
        wide.serialize(writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let wide = i64::deserialize(reader, map, v)?;
        isize::try_from(wide).map_err(|_| VersionizeError::OutOfRange("isize"))
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "isize".to_owned()
    }
}

impl Versionize for bool {
    #[inline]
    fn serialize<W: Write>(&self, writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        writer.write_all(&[u8::from(*self)])?;
        Ok(())
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte)?;
        match byte[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(VersionizeError::InvalidBool(other)),
        }
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "bool".to_owned()
    }
}

impl Versionize for char {
    #[inline]
    fn serialize<W: Write>(&self, writer: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        let mut buffer = [0u8; 4];
        writer.write_all(self.encode_utf8(&mut buffer).as_bytes())?;
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        let mut buffer = [0u8; 4];
        reader.read_exact(&mut buffer[..1])?;
        let width = match buffer[0] {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return Err(VersionizeError::InvalidUtf8 { what: "char" }),
        };
        reader.read_exact(&mut buffer[1..width])?;
        std::str::from_utf8(&buffer[..width])
            .ok()
            .and_then(|text| text.chars().next())
            .ok_or(VersionizeError::InvalidUtf8 { what: "char" })
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "char".to_owned()
    }
}
