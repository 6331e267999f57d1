//! A decoded value without its Rust type, and its JSON rendering.

use std::fmt::{self, Write as _};
use std::io;

use crate::VersionizeError;

/// A value decoded by [`decode_value`](super::decode_value) from the layout that a
/// [`Schema`](super::Schema) describes, in wire order.
///
/// Integers keep their width (`usize` is [`Value::U64`], `isize` is [`Value::I64`], as on
/// the wire). Sequences of `u8` (`Vec<u8>`, `VecDeque<u8>`, `[u8; N]`) are [`Value::Bytes`].
/// Maps and sets keep their entries in wire order, duplicates included, so that
/// [`encode_value`](super::encode_value) writes the bytes that were read.
///
/// Equality compares floats by their bits, so that a value equals itself even when it
/// holds a NaN, and two values are equal exactly when they encode to the same bytes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value {
    /// `()` and `PhantomData`.
    Unit,
    /// `bool`.
    Bool(bool),
    /// `u8`.
    U8(u8),
    /// `u16`.
    U16(u16),
    /// `u32`.
    U32(u32),
    /// `u64` and `usize`.
    U64(u64),
    /// `u128`.
    U128(u128),
    /// `i8`.
    I8(i8),
    /// `i16`.
    I16(i16),
    /// `i32`.
    I32(i32),
    /// `i64` and `isize`.
    I64(i64),
    /// `i128`.
    I128(i128),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// `char`.
    Char(char),
    /// `String`.
    String(String),
    /// `Vec<u8>`, `VecDeque<u8>` and `[u8; N]`.
    Bytes(Vec<u8>),
    /// Any other `Vec`, `VecDeque` or array.
    Seq(Vec<Value>),
    /// `BTreeSet` and `HashSet`, in wire order.
    Set(Vec<Value>),
    /// `BTreeMap` and `HashMap`, key and value pairs in wire order.
    Map(Vec<(Value, Value)>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// `Option`.
    Option(Option<Box<Value>>),
    /// A struct (or a `FamStructWrapper`, whose fields are `header` and `entries`): the
    /// fields written at its version, in order.
    Struct {
        /// The type's full name, as in the schema.
        type_name: String,
        /// Field names (`"0"`, `"1"`... for tuple fields) and values.
        fields: Vec<(String, Value)>,
    },
    /// An enum variant.
    Enum {
        /// The type's full name, as in the schema.
        type_name: String,
        /// The variant's name.
        variant: String,
        /// Its wire index.
        index: u32,
        /// Its fields, in order.
        fields: Vec<(String, Value)>,
    },
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value as V;
        match (self, other) {
            (V::Unit, V::Unit) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::U8(a), V::U8(b)) => a == b,
            (V::U16(a), V::U16(b)) => a == b,
            (V::U32(a), V::U32(b)) => a == b,
            (V::U64(a), V::U64(b)) => a == b,
            (V::U128(a), V::U128(b)) => a == b,
            (V::I8(a), V::I8(b)) => a == b,
            (V::I16(a), V::I16(b)) => a == b,
            (V::I32(a), V::I32(b)) => a == b,
            (V::I64(a), V::I64(b)) => a == b,
            (V::I128(a), V::I128(b)) => a == b,
            (V::F32(a), V::F32(b)) => a.to_bits() == b.to_bits(),
            (V::F64(a), V::F64(b)) => a.to_bits() == b.to_bits(),
            (V::Char(a), V::Char(b)) => a == b,
            (V::String(a), V::String(b)) => a == b,
            (V::Bytes(a), V::Bytes(b)) => a == b,
            (V::Seq(a), V::Seq(b)) | (V::Set(a), V::Set(b)) | (V::Tuple(a), V::Tuple(b)) => a == b,
            (V::Map(a), V::Map(b)) => a == b,
            (V::Option(a), V::Option(b)) => a == b,
            (
                V::Struct {
                    type_name: a_name,
                    fields: a_fields,
                },
                V::Struct {
                    type_name: b_name,
                    fields: b_fields,
                },
            ) => a_name == b_name && a_fields == b_fields,
            (
                V::Enum {
                    type_name: a_name,
                    variant: a_variant,
                    index: a_index,
                    fields: a_fields,
                },
                V::Enum {
                    type_name: b_name,
                    variant: b_variant,
                    index: b_index,
                    fields: b_fields,
                },
            ) => {
                a_name == b_name
                    && a_variant == b_variant
                    && a_index == b_index
                    && a_fields == b_fields
            }
            _ => false,
        }
    }
}

/// Why a value could not be decoded from, or encoded to, the layout a schema describes.
///
/// Paths name the place in the value: `vcpus[1].regs.rip`, `devices.serial[0]`,
/// `events.Exception.0`, `map{"key"}`; the root is `<root>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A field's type (or the root) is neither a type of the schema nor a built-in layout.
    #[error("cannot read the type `{ty}` of {owner}: {reason}")]
    TypeName {
        /// `Type.field`, `Type::Variant.field` or `root`.
        owner: String,
        /// The type expression.
        ty: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schema contradicts itself.
    #[error("inconsistent schema: {0}")]
    Schema(String),
    /// The value reaches a type with a hand-written impl, whose layout the schema does not
    /// describe.
    #[error("{path}: {type_name} has a hand-written Versionize impl whose layout the schema does not describe, so it cannot be decoded without its Rust type")]
    Opaque {
        /// Where.
        path: String,
        /// The type.
        type_name: String,
    },
    /// The input ended inside the value.
    #[error("{path}: state truncated (input ended inside the value)")]
    Truncated {
        /// Where.
        path: String,
    },
    /// Bytes follow the root value.
    #[error("{} after the end of the {root} value (wrong schema for this state, or trailing garbage)", trailing(*count))]
    TrailingBytes {
        /// The root type.
        root: String,
        /// How many bytes follow, counted up to 1 MiB (a count of 1 MiB means at least).
        count: u64,
    },
    /// An enum variant index that does not exist at the version described.
    #[error("{path}: unknown variant index {index} for {type_name} at version {version}")]
    UnknownVariant {
        /// Where.
        path: String,
        /// The enum.
        type_name: String,
        /// The index read, or asked for.
        index: u32,
        /// The enum's type version.
        version: u16,
    },
    /// Malformed or over-limit input, or a failing reader or writer.
    #[error("{path}: {source}")]
    Codec {
        /// Where.
        path: String,
        /// The error of the built-in decoder or encoder.
        #[source]
        source: VersionizeError,
    },
    /// A value given to [`encode_value`](super::encode_value) that does not have the
    /// schema's layout.
    #[error("{path}: expected {expected}, found {found}")]
    Mismatch {
        /// Where.
        path: String,
        /// What the schema describes there.
        expected: String,
        /// What the value holds.
        found: String,
    },
}

/// How [`Value::to_json_with`] renders byte strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonOptions {
    /// Byte strings ([`Value::Bytes`]) longer than this are summarised as
    /// `{"len": N, "crc64": "0x..."}` instead of written out in hex; `None` writes them all.
    pub summarize_bytes_over: Option<usize>,
}

impl JsonOptions {
    /// Every byte written out.
    #[must_use]
    pub fn new() -> Self {
        JsonOptions::default()
    }

    /// Byte strings longer than `len` summarised by length and CRC-64.
    #[must_use]
    pub fn summarize_bytes_over(mut self, len: usize) -> Self {
        self.summarize_bytes_over = Some(len);
        self
    }
}

impl Value {
    /// The value as JSON, every byte written out (see `docs/FORMAT.md`, "JSON rendering"):
    ///
    /// - integers of up to 32 bits and floats are JSON numbers (NaN and infinities are the
    ///   strings `"NaN"`, `"inf"`, `"-inf"`);
    /// - unsigned integers of 64 and 128 bits (`u64`, `usize`, `u128`) are hex strings
    ///   (`"0x1000"`), signed ones decimal strings (`"-5"`), so that tools that read JSON
    ///   numbers as doubles (`jq`, JavaScript) keep every bit;
    /// - bytes are a lowercase hex string without prefix; `char` and `String` are strings;
    /// - structs are objects (a struct of tuple fields `"0"`, `"1"`... an array, of one
    ///   such field that field's value); enums are `"Variant"` without fields, else
    ///   `{"Variant": fields}` with the fields as for a struct; `None` is `null` and
    ///   `Some(v)` is `v`; sequences, sets and tuples are arrays; maps are arrays of
    ///   `[key, value]` pairs (keys need not be strings).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(&JsonOptions::new())
    }

    /// [`to_json`](Self::to_json), with long byte strings summarised as `options` says.
    #[must_use]
    pub fn to_json_with(&self, options: &JsonOptions) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Unit => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::U8(n) => J::from(*n),
            Value::U16(n) => J::from(*n),
            Value::U32(n) => J::from(*n),
            Value::I8(n) => J::from(*n),
            Value::I16(n) => J::from(*n),
            Value::I32(n) => J::from(*n),
            Value::U64(n) => J::String(format!("{n:#x}")),
            Value::U128(n) => J::String(format!("{n:#x}")),
            Value::I64(n) => J::String(n.to_string()),
            Value::I128(n) => J::String(n.to_string()),
            Value::F32(n) => float_json(f64::from(*n)),
            Value::F64(n) => float_json(*n),
            Value::Char(c) => J::String(c.to_string()),
            Value::String(text) => J::String(text.clone()),
            Value::Bytes(bytes) => match options.summarize_bytes_over {
                Some(limit) if bytes.len() > limit => serde_json::json!({
                    "len": bytes.len(),
                    "crc64": format!("{:#018x}", crate::crc::crc64(bytes)),
                }),
                _ => J::String(hex(bytes)),
            },
            Value::Seq(items) | Value::Set(items) | Value::Tuple(items) => J::Array(
                items
                    .iter()
                    .map(|item| item.to_json_with(options))
                    .collect(),
            ),
            Value::Map(entries) => J::Array(
                entries
                    .iter()
                    .map(|(key, value)| {
                        J::Array(vec![key.to_json_with(options), value.to_json_with(options)])
                    })
                    .collect(),
            ),
            Value::Option(None) => J::Null,
            Value::Option(Some(value)) => value.to_json_with(options),
            Value::Struct { fields, .. } => fields_json(fields, options),
            Value::Enum {
                variant, fields, ..
            } => {
                if fields.is_empty() {
                    J::String(variant.clone())
                } else {
                    let mut object = serde_json::Map::new();
                    object.insert(variant.clone(), fields_json(fields, options));
                    J::Object(object)
                }
            }
        }
    }

    /// Writes [`to_json_with`](Self::to_json_with) as indented JSON and a newline.
    ///
    /// # Errors
    /// The writer's.
    pub fn to_json_writer<W: io::Write>(
        &self,
        mut writer: W,
        options: &JsonOptions,
    ) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut writer, &self.to_json_with(options))
            .map_err(io::Error::from)?;
        writer.write_all(b"\n")
    }

    /// A one-line rendering for messages and differences: integers of two digits or more
    /// in hex as well (`4096 (0x1000)`), strings quoted, composites summarised.
    #[must_use]
    pub fn short(&self) -> String {
        fn number<N: fmt::Display + fmt::LowerHex + PartialOrd + From<u8>>(n: N) -> String {
            if n < N::from(10) {
                n.to_string()
            } else {
                format!("{n} ({n:#x})")
            }
        }
        match self {
            Value::Unit => "()".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::U8(n) => number(*n),
            Value::U16(n) => number(*n),
            Value::U32(n) => number(*n),
            Value::U64(n) => format!("{n:#x}"),
            Value::U128(n) => format!("{n:#x}"),
            Value::I8(n) => n.to_string(),
            Value::I16(n) => n.to_string(),
            Value::I32(n) => n.to_string(),
            Value::I64(n) => n.to_string(),
            Value::I128(n) => n.to_string(),
            Value::F32(n) => n.to_string(),
            Value::F64(n) => n.to_string(),
            Value::Char(c) => format!("{c:?}"),
            Value::String(text) if text.len() <= 40 => format!("{text:?}"),
            Value::String(text) => format!("a string of {} bytes", text.len()),
            Value::Bytes(bytes) if bytes.len() <= 16 => format!("[{}]", hex(bytes)),
            Value::Bytes(bytes) => format!("{} bytes", bytes.len()),
            Value::Seq(items) | Value::Set(items) => format!("{} values", items.len()),
            Value::Tuple(items) => {
                let items: Vec<String> = items.iter().map(Value::short).collect();
                format!("({})", items.join(", "))
            }
            Value::Map(entries) => format!("{} entries", entries.len()),
            Value::Option(None) => "none".to_owned(),
            Value::Option(Some(value)) => format!("some {}", value.short()),
            Value::Struct { type_name, .. } => format!("{type_name} {{...}}"),
            Value::Enum {
                variant, fields, ..
            } if fields.is_empty() => variant.clone(),
            Value::Enum { variant, .. } => format!("{variant}(...)"),
        }
    }

    /// What kind of value this is, for messages: `u64`, `a string`, `struct a::Regs`...
    #[must_use]
    pub fn kind(&self) -> String {
        match self {
            Value::Unit => "()".to_owned(),
            Value::Bool(_) => "bool".to_owned(),
            Value::U8(_) => "u8".to_owned(),
            Value::U16(_) => "u16".to_owned(),
            Value::U32(_) => "u32".to_owned(),
            Value::U64(_) => "u64".to_owned(),
            Value::U128(_) => "u128".to_owned(),
            Value::I8(_) => "i8".to_owned(),
            Value::I16(_) => "i16".to_owned(),
            Value::I32(_) => "i32".to_owned(),
            Value::I64(_) => "i64".to_owned(),
            Value::I128(_) => "i128".to_owned(),
            Value::F32(_) => "f32".to_owned(),
            Value::F64(_) => "f64".to_owned(),
            Value::Char(_) => "char".to_owned(),
            Value::String(_) => "a string".to_owned(),
            Value::Bytes(bytes) => format!("{} bytes", bytes.len()),
            Value::Seq(items) => format!("a sequence of {}", items.len()),
            Value::Set(items) => format!("a set of {}", items.len()),
            Value::Map(entries) => format!("a map of {}", entries.len()),
            Value::Tuple(items) => format!("a tuple of {}", items.len()),
            Value::Option(_) => "an option".to_owned(),
            Value::Struct { type_name, .. } => format!("struct {type_name}"),
            Value::Enum {
                type_name, variant, ..
            } => format!("{type_name}::{variant}"),
        }
    }
}

fn trailing(count: u64) -> String {
    if count >= super::codec::TRAILING_COUNT_CAP {
        format!("at least {count} bytes")
    } else {
        format!("{count} byte(s)")
    }
}

fn float_json(n: f64) -> serde_json::Value {
    if n.is_nan() {
        serde_json::Value::String("NaN".to_owned())
    } else if n.is_infinite() {
        serde_json::Value::String(if n > 0.0 { "inf" } else { "-inf" }.to_owned())
    } else {
        serde_json::Value::from(n)
    }
}

/// A struct's or variant's fields: an object, or for tuple fields an array (one field: its
/// value).
fn fields_json(fields: &[(String, Value)], options: &JsonOptions) -> serde_json::Value {
    let positional = fields
        .iter()
        .enumerate()
        .all(|(at, (name, _))| *name == at.to_string());
    if positional && !fields.is_empty() {
        if let [(_, only)] = fields {
            return only.to_json_with(options);
        }
        return serde_json::Value::Array(
            fields
                .iter()
                .map(|(_, value)| value.to_json_with(options))
                .collect(),
        );
    }
    serde_json::Value::Object(
        fields
            .iter()
            .map(|(name, value)| (name.clone(), value.to_json_with(options)))
            .collect(),
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_value_json_keeps_64_bit_values_exact_as_doubles() {
        let big = 1_796_122_410_083_834_518_u64;
        let json = Value::U64(big).to_json();
        assert_eq!(json, serde_json::json!("0x18ed1bd0d22a5a96"));
        // A tool that reads numbers as doubles would round the number; the string survives.
        #[allow(clippy::cast_precision_loss)]
        let as_double = big as f64;
        assert_ne!(as_double as u64, big);
        let text = json.as_str().unwrap().trim_start_matches("0x");
        assert_eq!(u64::from_str_radix(text, 16).unwrap(), big);
    }

    #[test]
    fn test_value_equality_compares_float_bits() {
        assert_eq!(Value::F64(f64::NAN), Value::F64(f64::NAN));
        assert_ne!(Value::F64(0.0), Value::F64(-0.0));
        assert_ne!(Value::U32(1), Value::U64(1));
    }
}
