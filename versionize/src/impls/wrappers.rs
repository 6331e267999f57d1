//! `Option` (a 0/1 tag byte, then the value), the transparent wrappers `Box`, `Arc` and
//! `Wrapping`, and the empty types `()` and `PhantomData`.

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::num::Wrapping;
use std::sync::Arc;

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

impl<T: Versionize> Versionize for Box<T> {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        (**self).serialize(writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        // A box can nest without a derived type in between; count it as a level.
        let _scope = DecodeScope::enter(map.limits())?;
        T::deserialize(reader, map, v).map(Box::new)
    }

    fn version() -> u16 {
        T::version()
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("Box<{}>", builder.describe::<T>())
    }
}

impl<T: Versionize> Versionize for Arc<T> {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        (**self).serialize(writer, map, v)
    }

    #[inline]
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let _scope = DecodeScope::enter(map.limits())?;
        T::deserialize(reader, map, v).map(Arc::new)
    }

    fn version() -> u16 {
        T::version()
    }

    fn describe(builder: &mut crate::schema::SchemaBuilder<'_>) -> String {
        format!("Arc<{}>", builder.describe::<T>())
    }
}

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
