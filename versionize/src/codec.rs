//! Free functions that encode and decode through [`Versionize`], in the spirit of bincode's
//! `encode_to_vec` and `decode_from_slice`.
//!
//! They spare callers the fully qualified `Versionize::serialize(&x, ..)` that a type also
//! implementing serde's `Serialize` (or any trait with a `serialize` method) would need, and
//! they check what a bare `deserialize` leaves to the caller: that the slice held exactly one
//! value.

use std::io::{Read, Write};

use crate::{VersionMap, Versionize, VersionizeError, VersionizeResult};

/// Encodes `value` at `app_version` into a new vector.
///
/// # Errors
/// As [`Versionize::serialize`]: an `app_version` outside the map, a user hook's error, or
/// a value nested deeper than the decoder accepts.
///
/// # Example
/// ```
/// use versionize::prelude::*;
/// use versionize::{decode_from_slice, encode_to_vec};
///
/// #[derive(Debug, PartialEq, Versionize)]
/// struct Pit {
///     count: u32,
///     mode: u8,
/// }
///
/// let map = VersionMap::new();
/// let bytes = encode_to_vec(&Pit { count: 7, mode: 3 }, &map, 1).unwrap();
/// assert_eq!(bytes, [7, 0, 0, 0, 3]);
/// let pit: Pit = decode_from_slice(&bytes, &map, 1).unwrap();
/// assert_eq!(pit, Pit { count: 7, mode: 3 });
/// ```
pub fn encode_to_vec<T: Versionize>(
    value: &T,
    version_map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<Vec<u8>> {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, version_map, app_version)?;
    Ok(bytes)
}

/// Encodes `value` at `app_version` into `writer`.
///
/// # Errors
/// As [`encode_to_vec`], plus the writer's errors.
///
/// # Example
/// ```
/// use versionize::{encode_into_writer, VersionMap};
///
/// let mut out = Vec::new();
/// encode_into_writer(&(1u8, 2u16), &mut out, &VersionMap::new(), 1).unwrap();
/// assert_eq!(out, [1, 2, 0]);
/// ```
pub fn encode_into_writer<T: Versionize, W: Write>(
    value: &T,
    mut writer: W,
    version_map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<()> {
    value.serialize(&mut writer, version_map, app_version)
}

/// Decodes one value written at `app_version` that fills `bytes` exactly.
///
/// Unlike bincode's `decode_from_slice`, which returns the value and the bytes it read,
/// this refuses bytes left over: a slice that holds more than one value, or a value of
/// another type, is an error rather than a silently ignored tail. To read a value from the
/// front of a longer input, use [`decode_from_reader`] with `&mut &bytes[..]` and look at
/// what remains.
///
/// # Errors
/// As [`Versionize::deserialize`], plus [`VersionizeError::TrailingBytes`].
///
/// # Example
/// ```
/// use versionize::{decode_from_slice, VersionMap, VersionizeError};
///
/// let map = VersionMap::new();
/// let value: u16 = decode_from_slice(&[1, 2], &map, 1).unwrap();
/// assert_eq!(value, 0x0201);
/// let err = decode_from_slice::<u16>(&[1, 2, 3], &map, 1).unwrap_err();
/// assert!(matches!(err, VersionizeError::TrailingBytes { count: 1 }));
/// ```
pub fn decode_from_slice<T: Versionize>(
    bytes: &[u8],
    version_map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<T> {
    let mut rest = bytes;
    let value = T::deserialize(&mut rest, version_map, app_version)?;
    if !rest.is_empty() {
        return Err(VersionizeError::TrailingBytes {
            count: u64::try_from(rest.len()).unwrap_or(u64::MAX),
        });
    }
    Ok(value)
}

/// Decodes one value written at `app_version` from `reader`, which is left just past it.
///
/// # Errors
/// As [`Versionize::deserialize`].
///
/// # Example
/// ```
/// use versionize::{decode_from_reader, VersionMap};
///
/// let input = [5u8, 0, 9];
/// let mut rest = &input[..];
/// let first: u16 = decode_from_reader(&mut rest, &VersionMap::new(), 1).unwrap();
/// assert_eq!((first, rest), (5, &[9u8][..]));
/// ```
pub fn decode_from_reader<T: Versionize, R: Read>(
    mut reader: R,
    version_map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<T> {
    T::deserialize(&mut reader, version_map, app_version)
}
