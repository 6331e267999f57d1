//! `String`: a `u64` byte length, then UTF-8 bytes.

use std::io::{Read, Write};

use crate::limits::EncodeScope;
use crate::{DecodeScope, VersionMap, Versionize, VersionizeError, VersionizeResult};

impl Versionize for String {
    #[inline]
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        let _scope = EncodeScope::enter_holding(map.limits(), 0)?;
        let len =
            u64::try_from(self.len()).map_err(|_| VersionizeError::OutOfRange("String length"))?;
        len.serialize(writer, map, v)?;
        writer.write_all(self.as_bytes())?;
        Ok(())
    }

    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let scope = DecodeScope::enter(map.limits())?;
        let len = scope.read_string_len(reader, map.limits())?;
        let mut bytes = Vec::new();
        u8::deserialize_into_vec(reader, map, v, len, &mut bytes)?;
        String::from_utf8(bytes).map_err(|_| VersionizeError::InvalidUtf8 { what: "String" })
    }

    fn version() -> u16 {
        1
    }

    fn describe(_: &mut crate::schema::SchemaBuilder<'_>) -> String {
        "String".to_owned()
    }
}
