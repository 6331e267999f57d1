//! `Option` (a 0/1 tag byte, then the value), the transparent wrappers `Box`, `Arc`, `Rc`
//! and `Wrapping`, and the empty types `()` and `PhantomData`.

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::num::Wrapping;
use std::rc::Rc;
use std::sync::Arc;

use crate::limits::{box_bytes, shared_bytes, EncodeScope};
use crate::{DecodeScope, VersionMap, Versionize, VersionizeError, VersionizeResult};

impl<T: Versionize> Versionize for Option<T> {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        match self {
            None => {
                writer.write_all(&[0])?;
                Ok(())
            }
            Some(value) => {
                writer.write_all(&[1])?;
                value.serialize(writer, map, v)
            }
        }
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let mut tag = [0u8; 1];
        reader.read_exact(&mut tag)?;
        match tag[0] {
            0 => Ok(None),
            1 => T::deserialize(reader, map, v).map(Some),
            other => Err(VersionizeError::InvalidOptionTag(other)),
        }
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("Option<{}>", builder.describe::<T>())
    }
}

/// `Box`, `Arc` and `Rc`: the value itself on the wire. Decoding charges the budget what the
/// pointer allocates (the value, and the counters of `Arc`/`Rc`) and counts a level, since a
/// pointer can nest without a derived type in between.
macro_rules! impl_pointer {
    ($($pointer:ident => $bytes:ident),* $(,)?) => {$(
        impl<T: Versionize> Versionize for $pointer<T> {
            #[inline]
            fn serialize<W: Write>(
                &self,
                writer: &mut W,
                map: &VersionMap,
                v: u16,
            ) -> VersionizeResult<()> {
                let _scope = EncodeScope::enter_holding(map.limits(), size_of::<T>())?;
                (**self).serialize(writer, map, v)
            }

            #[inline]
            fn deserialize<R: Read>(
                reader: &mut R,
                map: &VersionMap,
                v: u16,
            ) -> VersionizeResult<Self> {
                let scope = DecodeScope::enter_holding(map.limits(), size_of::<T>())?;
                scope.charge($bytes::<T>())?;
                T::deserialize(reader, map, v).map($pointer::new)
            }

            fn version() -> u16 {
                T::version()
            }

            fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
                format!(concat!(stringify!($pointer), "<{}>"), builder.describe::<T>())
            }
        }
    )*};
}

impl_pointer!(Box => box_bytes, Arc => shared_bytes, Rc => shared_bytes);

impl<T: Versionize> Versionize for Wrapping<T> {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        self.0.serialize(writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        T::deserialize(reader, map, v).map(Wrapping)
    }

    fn version() -> u16 {
        T::version()
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("Wrapping<{}>", builder.describe::<T>())
    }
}

impl Versionize for () {
    #[inline]
    fn serialize<W: Write>(&self, _: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        Ok(())
    }

    #[inline]
    fn deserialize<R: Read>(_: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        Ok(())
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        let _ = builder;
        "()".to_owned()
    }
}

impl<T: ?Sized> Versionize for PhantomData<T> {
    #[inline]
    fn serialize<W: Write>(&self, _: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        Ok(())
    }

    #[inline]
    fn deserialize<R: Read>(_: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        Ok(PhantomData)
    }

    fn version() -> u16 {
        1
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        let _ = builder;
        "PhantomData".to_owned()
    }
}
