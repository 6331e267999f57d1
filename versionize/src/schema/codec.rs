//! Decoding and encoding a [`Value`] by following a schema's layouts, without the Rust
//! types: what the derive and the built-in impls write, read back field by field.

use std::io::{self, Read, Write};

use super::type_expr::{Compiled, CompiledField, CompiledKind, Scalar, TypeExpr};
use super::value::{Value, ValueError};
use super::Schema;
use crate::{DecodeScope, Limits, VersionMap, Versionize, VersionizeError};

/// Trailing bytes are counted up to this many.
pub(super) const TRAILING_COUNT_CAP: u64 = 1 << 20;

/// Bytes a decoded [`Value`] slot takes: what each element of a collection is charged.
const VALUE_SIZE: u64 = size_of::<Value>() as u64;

/// Decodes the state that `reader` holds, written at the schema's app version, into a
/// [`Value`] of the schema's root type, and checks that nothing follows it.
///
/// The schema is the one the writing build exported for that app version (its guard's
/// `vN.json` file), so that decoding needs no Rust type: each struct is read field by field
/// from the fields its schema entry says are written, each enum by the variants that exist
/// at its version, each built-in by its layout. Hooks (`ser_fn`, `de_fn`) do not run: the
/// value is what is on the wire.
///
/// Decoding is bounded as the typed decoders are: the string and collection caps and the
/// nesting depth of `limits` apply (each `Some` counting as one level more than in the
/// typed decoders, since a schema file, unlike a Rust type, may nest options without end),
/// and the budget is charged for what the value holds (each element of a collection takes
/// `size_of::<Value>()` bytes of it, each byte of a byte string or `String` one, each
/// struct its fields), before anything is allocated.
///
/// # Errors
/// - [`ValueError::TypeName`] or [`ValueError::Schema`] for a schema whose layouts cannot
///   be read;
/// - [`ValueError::Opaque`] when the value reaches a type with a hand-written impl;
/// - [`ValueError::Truncated`] when the input ends inside the value,
///   [`ValueError::TrailingBytes`] when bytes follow it;
/// - [`ValueError::UnknownVariant`] and [`ValueError::Codec`] for malformed input, an
///   exceeded limit or a failing reader.
///
/// # Example
/// ```
/// use versionize::prelude::*;
/// use versionize::schema::{decode_value, encode_value, export, Value};
/// use versionize::Limits;
///
/// #[derive(Versionize)]
/// struct Regs {
///     rip: u64,
///     flags: Option<u8>,
/// }
///
/// let map = VersionMap::new();
/// let mut bytes = Vec::new();
/// Regs { rip: 0x1000, flags: None }.serialize(&mut bytes, &map, 1).unwrap();
///
/// // The schema file is all a tool needs: no `Regs` below this line.
/// let schema = export::<Regs>(&map, 1).unwrap();
/// let value = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap();
/// assert_eq!(value.to_json(), serde_json::json!({ "rip": "0x1000", "flags": null }));
///
/// let mut again = Vec::new();
/// encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
/// assert_eq!(again, bytes);
/// ```
pub fn decode_value<R: Read>(
    schema: &Schema,
    reader: &mut R,
    limits: &Limits,
) -> Result<Value, ValueError> {
    let compiled = Compiled::new(schema)?;
    // The outermost scope holds the budget of the whole decode; it takes one level of
    // depth, given back so that nesting is counted as the typed decoders count it.
    let limits = limits.with_max_depth(limits.max_depth().saturating_add(1));
    let map = VersionMap::new().with_limits(limits);
    let value = {
        let _root = DecodeScope::enter(&limits).map_err(|source| ValueError::Codec {
            path: "<root>".to_owned(),
            source,
        })?;
        let mut decoder = Decoder {
            compiled: &compiled,
            reader: &mut *reader,
            map: &map,
            path: Path::default(),
        };
        decoder.value(&compiled.root)?
    };
    let trailing = count_trailing(reader).map_err(|source| ValueError::Codec {
        path: "<root>".to_owned(),
        source: source.into(),
    })?;
    if trailing > 0 {
        return Err(ValueError::TrailingBytes {
            root: schema.root.clone(),
            count: trailing,
        });
    }
    Ok(value)
}

/// Encodes `value` in the layout the schema describes: the bytes the writing build would
/// write at the schema's app version. A value that [`decode_value`] returned encodes to the
/// bytes it was decoded from, so that a state can be converted without its Rust types.
///
/// The value must have the schema's layout exactly: the same integer widths, the fields
/// each struct writes at its version in order and by name, variants that exist at their
/// enum's version, arrays of their length. Nesting deeper than `limits` allows is refused.
///
/// # Errors
/// [`ValueError::Mismatch`] or [`ValueError::UnknownVariant`] where the value departs
/// from the layout, [`ValueError::Opaque`] for a type with a hand-written impl,
/// [`ValueError::TypeName`] or [`ValueError::Schema`] for a schema whose layouts cannot be
/// read, [`ValueError::Codec`] for a failing writer or too deep a value.
pub fn encode_value<W: Write>(
    schema: &Schema,
    value: &Value,
    writer: &mut W,
    limits: &Limits,
) -> Result<(), ValueError> {
    let compiled = Compiled::new(schema)?;
    let mut encoder = Encoder {
        compiled: &compiled,
        writer,
        map: VersionMap::new(),
        max_depth: limits.max_depth(),
        depth: 0,
        path: Path::default(),
    };
    encoder.value(&compiled.root, value)
}

/// Reads what is left of `reader`, up to [`TRAILING_COUNT_CAP`] bytes, and counts it.
fn count_trailing<R: Read>(reader: &mut R) -> io::Result<u64> {
    io::copy(&mut reader.take(TRAILING_COUNT_CAP), &mut io::sink())
}

/// Where in the value the decoder or encoder is.
#[derive(Default)]
struct Path<'n> {
    segments: Vec<Segment<'n>>,
}

#[derive(Clone, Copy)]
enum Segment<'n> {
    Field(&'n str),
    Index(u64),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("<root>");
        }
        for (at, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if at == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

fn usize_of(n: u64, what: &'static str) -> Result<usize, VersionizeError> {
    usize::try_from(n).map_err(|_| VersionizeError::OutOfRange(what))
}

struct Decoder<'c, 's, R> {
    compiled: &'c Compiled<'s>,
    reader: &'c mut R,
    map: &'c VersionMap,
    path: Path<'s>,
}

impl<'s, R: Read> Decoder<'_, 's, R> {
    fn error(&self, source: VersionizeError) -> ValueError {
        let path = self.path.to_string();
        // The limits in use count the root scope as one more level: report the caller's.
        let source = match source {
            VersionizeError::DepthLimit { limit } => VersionizeError::DepthLimit {
                limit: limit.saturating_sub(1),
            },
            other => other,
        };
        if source.io_kind() == Some(io::ErrorKind::UnexpectedEof) {
            ValueError::Truncated { path }
        } else {
            ValueError::Codec { path, source }
        }
    }

    fn enter(&self) -> Result<DecodeScope, ValueError> {
        DecodeScope::enter(self.map.limits()).map_err(|e| self.error(e))
    }

    fn read<T: Versionize>(&mut self) -> Result<T, ValueError> {
        T::deserialize(self.reader, self.map, 1).map_err(|e| self.error(e))
    }

    /// Reads a value of type `ty`.
    ///
    /// Each `Some` is one nesting level (the typed decoders do not count `Option`, whose
    /// nesting the Rust type bounds; here the schema, which may be hostile, sets it), so
    /// that the depth of every decoded value, and of the recursion of everything that
    /// walks it (rendering, comparing, dropping), stays within the limit. Chains of
    /// `Option` and `Wrapping` are followed in a loop.
    fn value(&mut self, mut ty: &TypeExpr) -> Result<Value, ValueError> {
        let mut somes = Vec::new();
        let mut value = loop {
            match ty {
                TypeExpr::Option(item) => match self.read::<u8>()? {
                    0 => break Value::Option(None),
                    1 => {
                        somes.push(self.enter()?);
                        ty = item;
                    }
                    tag => return Err(self.error(VersionizeError::InvalidOptionTag(tag))),
                },
                TypeExpr::Wrapping(item) => ty = item,
                other => break self.nested_value(other)?,
            }
        };
        for _ in somes.drain(..) {
            value = Value::Option(Some(Box::new(value)));
        }
        Ok(value)
    }

    /// Reads a value whose type is neither `Option` nor `Wrapping`.
    ///
    /// Each kind has its own function: the frames of this recursion stay small (in debug
    /// builds a function's frame holds the locals of all its arms), so that the nesting the
    /// limits allow fits the stack of a thread.
    fn nested_value(&mut self, ty: &TypeExpr) -> Result<Value, ValueError> {
        match ty {
            TypeExpr::Scalar(scalar) => self.scalar(*scalar),
            TypeExpr::String => self.read().map(Value::String),
            TypeExpr::Unit => Ok(Value::Unit),
            TypeExpr::Seq(_, item) => self.seq(item),
            TypeExpr::Set(_, item) => self.counted(item).map(Value::Set),
            TypeExpr::Array(item, len) => self.array(item, *len),
            TypeExpr::Map(_, key, value) => self.map(key, value),
            TypeExpr::Option(_) | TypeExpr::Wrapping(_) => self.value(ty),
            TypeExpr::Boxed(_, item) => self.boxed(item),
            TypeExpr::Tuple(items) => self.tuple(items),
            TypeExpr::Fam(header, entry) => self.fam(ty, header, entry),
            TypeExpr::Named(at) => self.named(*at),
        }
    }

    /// `Vec<T>`, `VecDeque<T>`: bytes for `u8`, else a sequence.
    fn seq(&mut self, item: &TypeExpr) -> Result<Value, ValueError> {
        if *item == TypeExpr::Scalar(Scalar::U8) {
            return self.read().map(Value::Bytes);
        }
        self.counted(item).map(Value::Seq)
    }

    /// A `u64` count checked and charged, then that many elements.
    fn counted(&mut self, item: &TypeExpr) -> Result<Vec<Value>, ValueError> {
        let scope = self.enter()?;
        let len = scope
            .read_collection_len(self.reader, self.map.limits(), size_of::<Value>())
            .map_err(|e| self.error(e))?;
        self.items(item, len)
    }

    fn array(&mut self, item: &TypeExpr, len: u64) -> Result<Value, ValueError> {
        let scope = self.enter()?;
        if *item == TypeExpr::Scalar(Scalar::U8) {
            scope.charge(len).map_err(|e| self.error(e))?;
            let len = usize_of(len, "array length").map_err(|e| self.error(e))?;
            let mut bytes = Vec::new();
            u8::deserialize_into_vec(self.reader, self.map, 1, len, &mut bytes)
                .map_err(|e| self.error(e))?;
            return Ok(Value::Bytes(bytes));
        }
        scope
            .charge(len.saturating_mul(VALUE_SIZE))
            .map_err(|e| self.error(e))?;
        let len = usize_of(len, "array length").map_err(|e| self.error(e))?;
        self.items(item, len).map(Value::Seq)
    }

    fn map(&mut self, key: &TypeExpr, value: &TypeExpr) -> Result<Value, ValueError> {
        let scope = self.enter()?;
        let len = scope
            .read_collection_len(self.reader, self.map.limits(), 2 * size_of::<Value>())
            .map_err(|e| self.error(e))?;
        let mut entries = Vec::with_capacity(initial_capacity(len));
        for at in 0..len {
            self.path.segments.push(Segment::Index(at as u64));
            self.path.segments.push(Segment::Field("key"));
            let k = self.value(key)?;
            self.path.segments.pop();
            self.path.segments.push(Segment::Field("value"));
            let v = self.value(value)?;
            self.path.segments.pop();
            self.path.segments.pop();
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn boxed(&mut self, item: &TypeExpr) -> Result<Value, ValueError> {
        let _scope = self.enter()?;
        self.value(item)
    }

    fn tuple(&mut self, items: &[TypeExpr]) -> Result<Value, ValueError> {
        let scope = self.enter()?;
        let count = items.len() as u64;
        scope
            .charge(count.saturating_mul(VALUE_SIZE))
            .map_err(|e| self.error(e))?;
        let mut values = Vec::with_capacity(items.len());
        for (at, item) in items.iter().enumerate() {
            self.path.segments.push(Segment::Index(at as u64));
            values.push(self.value(item)?);
            self.path.segments.pop();
        }
        Ok(Value::Tuple(values))
    }

    fn fam(
        &mut self,
        ty: &TypeExpr,
        header: &TypeExpr,
        entry: &TypeExpr,
    ) -> Result<Value, ValueError> {
        // One level, so that a header that is itself a wrapper cannot recurse without bound.
        let _scope = self.enter()?;
        self.path.segments.push(Segment::Field("header"));
        let header = self.value(header)?;
        self.path.segments.pop();
        self.path.segments.push(Segment::Field("entries"));
        let entries = self.seq(entry)?;
        self.path.segments.pop();
        Ok(Value::Struct {
            type_name: self.compiled.name_of(ty),
            fields: vec![
                ("header".to_owned(), header),
                ("entries".to_owned(), entries),
            ],
        })
    }

    fn items(&mut self, item: &TypeExpr, len: usize) -> Result<Vec<Value>, ValueError> {
        let mut items = Vec::with_capacity(initial_capacity(len));
        for at in 0..len {
            self.path.segments.push(Segment::Index(at as u64));
            items.push(self.value(item)?);
            self.path.segments.pop();
        }
        Ok(items)
    }

    fn scalar(&mut self, scalar: Scalar) -> Result<Value, ValueError> {
        Ok(match scalar {
            Scalar::Bool => Value::Bool(self.read()?),
            Scalar::Char => Value::Char(self.read()?),
            Scalar::U8 => Value::U8(self.read()?),
            Scalar::U16 => Value::U16(self.read()?),
            Scalar::U32 => Value::U32(self.read()?),
            Scalar::U64 => Value::U64(self.read()?),
            Scalar::U128 => Value::U128(self.read()?),
            Scalar::I8 => Value::I8(self.read()?),
            Scalar::I16 => Value::I16(self.read()?),
            Scalar::I32 => Value::I32(self.read()?),
            Scalar::I64 => Value::I64(self.read()?),
            Scalar::I128 => Value::I128(self.read()?),
            Scalar::F32 => Value::F32(self.read()?),
            Scalar::F64 => Value::F64(self.read()?),
        })
    }

    fn named(&mut self, at: usize) -> Result<Value, ValueError> {
        let compiled = self.compiled;
        let Some(ty) = compiled.types.get(at) else {
            return Err(ValueError::Schema(format!("no type at index {at}")));
        };
        let scope = self.enter()?;
        match &ty.kind {
            CompiledKind::Opaque => Err(ValueError::Opaque {
                path: self.path.to_string(),
                type_name: ty.name.to_owned(),
            }),
            CompiledKind::Struct(fields) => {
                scope
                    .charge(fields_cost(ty.name, fields))
                    .map_err(|e| self.error(e))?;
                Ok(Value::Struct {
                    type_name: ty.name.to_owned(),
                    fields: self.fields(fields)?,
                })
            }
            CompiledKind::Enum(variants) => {
                let index = self.read::<u32>()?;
                let Some(variant) = variants.iter().find(|variant| variant.index == index) else {
                    return Err(ValueError::UnknownVariant {
                        path: self.path.to_string(),
                        type_name: ty.name.to_owned(),
                        index,
                        version: ty.version,
                    });
                };
                scope
                    .charge(fields_cost(ty.name, &variant.fields) + variant.name.len() as u64)
                    .map_err(|e| self.error(e))?;
                self.path.segments.push(Segment::Field(variant.name));
                let fields = self.fields(&variant.fields)?;
                self.path.segments.pop();
                Ok(Value::Enum {
                    type_name: ty.name.to_owned(),
                    variant: variant.name.to_owned(),
                    index,
                    fields,
                })
            }
        }
    }

    fn fields(&mut self, fields: &[CompiledField<'s>]) -> Result<Vec<(String, Value)>, ValueError> {
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            self.path.segments.push(Segment::Field(field.name));
            let value = self.value(&field.ty)?;
            self.path.segments.pop();
            values.push((field.name.to_owned(), value));
        }
        Ok(values)
    }
}

/// The bytes a struct's or variant's value holds besides its fields' own values.
fn fields_cost(type_name: &str, fields: &[CompiledField<'_>]) -> u64 {
    let slots = fields.len() as u64 * size_of::<(String, Value)>() as u64;
    let names: usize = fields.iter().map(|field| field.name.len()).sum();
    slots + names as u64 + type_name.len() as u64
}

/// Elements reserved up front for a collection whose length came from the input: a
/// truncated input claiming a large (in-budget) length fails before it is all allocated.
fn initial_capacity(len: usize) -> usize {
    len.min(4096)
}

struct Encoder<'c, 's, W> {
    compiled: &'c Compiled<'s>,
    writer: &'c mut W,
    map: VersionMap,
    max_depth: u32,
    depth: u32,
    path: Path<'c>,
}

impl<'c, W: Write> Encoder<'c, '_, W> {
    fn mismatch(&self, expected: String, found: &Value) -> ValueError {
        ValueError::Mismatch {
            path: self.path.to_string(),
            expected,
            found: found.kind(),
        }
    }

    fn write<T: Versionize>(&mut self, value: &T) -> Result<(), ValueError> {
        value
            .serialize(self.writer, &self.map, 1)
            .map_err(|source| ValueError::Codec {
                path: self.path.to_string(),
                source,
            })
    }

    fn write_len(&mut self, len: usize) -> Result<(), ValueError> {
        self.write(&(len as u64))
    }

    /// Enters one nesting level; the caller restores `depth`.
    fn deeper(&mut self) -> Result<(), ValueError> {
        if self.depth >= self.max_depth {
            return Err(ValueError::Codec {
                path: self.path.to_string(),
                source: VersionizeError::DepthLimit {
                    limit: self.max_depth,
                },
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// One level of nesting, counted where the decoder counts one.
    fn nested(
        &mut self,
        encode: impl FnOnce(&mut Self) -> Result<(), ValueError>,
    ) -> Result<(), ValueError> {
        self.deeper()?;
        let result = encode(self);
        self.depth -= 1;
        result
    }

    fn at(
        &mut self,
        segment: Segment<'c>,
        encode: impl FnOnce(&mut Self) -> Result<(), ValueError>,
    ) -> Result<(), ValueError> {
        self.path.segments.push(segment);
        let result = encode(self);
        self.path.segments.pop();
        result
    }

    /// Writes `value` as type `ty`; `Option` and `Wrapping` chains in a loop, as the
    /// decoder reads them.
    fn value(&mut self, mut ty: &TypeExpr, mut value: &Value) -> Result<(), ValueError> {
        let depth = self.depth;
        let result = loop {
            match (ty, value) {
                (TypeExpr::Option(_), Value::Option(None)) => break self.write(&0u8),
                (TypeExpr::Option(item), Value::Option(Some(inner))) => {
                    // One level per `Some`, as the decoder counts them.
                    if let Err(error) = self.deeper() {
                        break Err(error);
                    }
                    if let Err(error) = self.write(&1u8) {
                        break Err(error);
                    }
                    ty = item;
                    value = inner;
                }
                (TypeExpr::Wrapping(item), _) => ty = item,
                _ => break self.nested_value(ty, value),
            }
        };
        self.depth = depth;
        result
    }

    /// Writes a value whose type is neither `Option` nor `Wrapping` (or does not match),
    /// each kind in its own function to keep the frames of the recursion small.
    fn nested_value(&mut self, ty: &TypeExpr, value: &Value) -> Result<(), ValueError> {
        let u8_items = |item: &TypeExpr| *item == TypeExpr::Scalar(Scalar::U8);
        match (ty, value) {
            (TypeExpr::Scalar(scalar), value) => self.scalar(*scalar, value),
            (TypeExpr::String, Value::String(text)) => self.nested(|e| e.write(text)),
            (TypeExpr::Unit, Value::Unit) => Ok(()),
            (TypeExpr::Seq(_, item), Value::Bytes(bytes)) if u8_items(item) => {
                self.nested(|e| e.write(bytes))
            }
            (TypeExpr::Array(item, len), Value::Bytes(bytes)) if u8_items(item) => {
                self.byte_array(ty, *len, bytes, value)
            }
            (TypeExpr::Seq(_, item), Value::Seq(items))
            | (TypeExpr::Set(_, item), Value::Set(items)) => self.counted(item, items),
            (TypeExpr::Array(item, len), Value::Seq(items)) => {
                self.array(ty, item, *len, items, value)
            }
            (TypeExpr::Map(_, key, value_ty), Value::Map(entries)) => {
                self.map(key, value_ty, entries)
            }
            (TypeExpr::Boxed(_, item), value) => self.nested(|e| e.value(item, value)),
            (TypeExpr::Tuple(types), Value::Tuple(items)) if types.len() == items.len() => {
                self.tuple(types, items)
            }
            (TypeExpr::Fam(header, entry), Value::Struct { .. }) => {
                self.fam(ty, header, entry, value)
            }
            (TypeExpr::Named(at), value) => self.nested(|e| e.named(*at, value)),
            (ty, value) => Err(self.mismatch(self.compiled.name_of(ty), value)),
        }
    }

    fn byte_array(
        &mut self,
        ty: &TypeExpr,
        len: u64,
        bytes: &[u8],
        value: &Value,
    ) -> Result<(), ValueError> {
        if bytes.len() as u64 != len {
            return Err(self.mismatch(self.compiled.name_of(ty), value));
        }
        self.nested(|e| {
            e.writer
                .write_all(bytes)
                .map_err(|source| ValueError::Codec {
                    path: e.path.to_string(),
                    source: source.into(),
                })
        })
    }

    fn counted(&mut self, item: &TypeExpr, items: &[Value]) -> Result<(), ValueError> {
        self.nested(|e| {
            e.write_len(items.len())?;
            e.items(item, items)
        })
    }

    fn array(
        &mut self,
        ty: &TypeExpr,
        item: &TypeExpr,
        len: u64,
        items: &[Value],
        value: &Value,
    ) -> Result<(), ValueError> {
        if items.len() as u64 != len {
            return Err(self.mismatch(self.compiled.name_of(ty), value));
        }
        self.nested(|e| e.items(item, items))
    }

    fn map(
        &mut self,
        key: &TypeExpr,
        value_ty: &TypeExpr,
        entries: &[(Value, Value)],
    ) -> Result<(), ValueError> {
        self.nested(|e| {
            e.write_len(entries.len())?;
            for (at, (k, v)) in entries.iter().enumerate() {
                e.at(Segment::Index(at as u64), |e| {
                    e.at(Segment::Field("key"), |e| e.value(key, k))?;
                    e.at(Segment::Field("value"), |e| e.value(value_ty, v))
                })?;
            }
            Ok(())
        })
    }

    fn tuple(&mut self, types: &[TypeExpr], items: &[Value]) -> Result<(), ValueError> {
        self.nested(|e| {
            for (at, (ty, item)) in types.iter().zip(items).enumerate() {
                e.at(Segment::Index(at as u64), |e| e.value(ty, item))?;
            }
            Ok(())
        })
    }

    fn fam(
        &mut self,
        ty: &TypeExpr,
        header: &TypeExpr,
        entry: &TypeExpr,
        value: &Value,
    ) -> Result<(), ValueError> {
        let name = self.compiled.name_of(ty);
        let expected = || format!("{name} with fields header, entries");
        let Value::Struct { type_name, fields } = value else {
            return Err(self.mismatch(expected(), value));
        };
        let [(header_name, header_value), (entries_name, entries)] = fields.as_slice() else {
            return Err(self.mismatch(expected(), value));
        };
        if *type_name != name || header_name != "header" || entries_name != "entries" {
            return Err(self.mismatch(expected(), value));
        }
        self.nested(|e| {
            e.at(Segment::Field("header"), |e| e.value(header, header_value))?;
            e.at(Segment::Field("entries"), |e| {
                e.value(&TypeExpr::Seq("Vec", Box::new(entry.clone())), entries)
            })
        })
    }

    fn items(&mut self, item: &TypeExpr, items: &[Value]) -> Result<(), ValueError> {
        for (at, value) in items.iter().enumerate() {
            self.at(Segment::Index(at as u64), |e| e.value(item, value))?;
        }
        Ok(())
    }

    fn scalar(&mut self, scalar: Scalar, value: &Value) -> Result<(), ValueError> {
        match (scalar, value) {
            (Scalar::Bool, Value::Bool(v)) => self.write(v),
            (Scalar::Char, Value::Char(v)) => self.write(v),
            (Scalar::U8, Value::U8(v)) => self.write(v),
            (Scalar::U16, Value::U16(v)) => self.write(v),
            (Scalar::U32, Value::U32(v)) => self.write(v),
            (Scalar::U64, Value::U64(v)) => self.write(v),
            (Scalar::U128, Value::U128(v)) => self.write(v),
            (Scalar::I8, Value::I8(v)) => self.write(v),
            (Scalar::I16, Value::I16(v)) => self.write(v),
            (Scalar::I32, Value::I32(v)) => self.write(v),
            (Scalar::I64, Value::I64(v)) => self.write(v),
            (Scalar::I128, Value::I128(v)) => self.write(v),
            (Scalar::F32, Value::F32(v)) => self.write(v),
            (Scalar::F64, Value::F64(v)) => self.write(v),
            (scalar, value) => Err(self.mismatch(scalar.name().to_owned(), value)),
        }
    }

    fn named(&mut self, at: usize, value: &Value) -> Result<(), ValueError> {
        let compiled = self.compiled;
        let Some(ty) = compiled.types.get(at) else {
            return Err(ValueError::Schema(format!("no type at index {at}")));
        };
        match (&ty.kind, value) {
            (CompiledKind::Opaque, _) => Err(ValueError::Opaque {
                path: self.path.to_string(),
                type_name: ty.name.to_owned(),
            }),
            (
                CompiledKind::Struct(fields),
                Value::Struct {
                    type_name,
                    fields: values,
                },
            ) if type_name == ty.name => self.fields(ty.name, fields, values, value),
            (
                CompiledKind::Enum(variants),
                Value::Enum {
                    type_name,
                    variant,
                    index,
                    fields: values,
                },
            ) if type_name == ty.name => {
                let Some(schema_variant) = variants.iter().find(|v| v.index == *index) else {
                    return Err(ValueError::UnknownVariant {
                        path: self.path.to_string(),
                        type_name: ty.name.to_owned(),
                        index: *index,
                        version: ty.version,
                    });
                };
                if schema_variant.name != variant {
                    return Err(self.mismatch(
                        format!("{}::{} at index {index}", ty.name, schema_variant.name),
                        value,
                    ));
                }
                self.write(index)?;
                let owner = format!("{}::{}", ty.name, schema_variant.name);
                self.at(Segment::Field(schema_variant.name), |e| {
                    e.fields(&owner, &schema_variant.fields, values, value)
                })
            }
            (CompiledKind::Struct(_), _) => {
                Err(self.mismatch(format!("struct {}", ty.name), value))
            }
            (CompiledKind::Enum(_), _) => Err(self.mismatch(format!("enum {}", ty.name), value)),
        }
    }

    fn fields(
        &mut self,
        owner: &str,
        fields: &'c [CompiledField<'_>],
        values: &[(String, Value)],
        whole: &Value,
    ) -> Result<(), ValueError> {
        let same_names = fields.len() == values.len()
            && fields
                .iter()
                .zip(values)
                .all(|(field, (name, _))| field.name == name);
        if !same_names {
            let names: Vec<&str> = fields.iter().map(|field| field.name).collect();
            let found: Vec<&str> = values.iter().map(|(name, _)| name.as_str()).collect();
            return Err(ValueError::Mismatch {
                path: self.path.to_string(),
                expected: format!("{owner} with fields [{}]", names.join(", ")),
                found: format!("{} with fields [{}]", whole.kind(), found.join(", ")),
            });
        }
        for (field, (_, value)) in fields.iter().zip(values) {
            self.at(Segment::Field(field.name), |e| e.value(&field.ty, value))?;
        }
        Ok(())
    }
}
