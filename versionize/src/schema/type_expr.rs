//! The field types of a schema as layouts: `Vec<a::Regs>`, `[u8; 16]`, `(u32, u64,)`,
//! `Option<String>`, parsed once per schema into a tree whose leaves are built-in scalars or
//! indices of the schema's types.
//!
//! A type expression is looked up whole among the schema's types first (derived types are
//! keys such as `a::Ring<a::RxDesc, 256>`), then read as a built-in layout whose arguments
//! are type expressions again.

use std::collections::BTreeMap;

use super::value::ValueError;
use super::{Schema, TypeKind};

/// Nesting of one type expression deeper than this is refused: no built-in layout needs it,
/// and it keeps the parser's recursion bounded on a hostile schema file.
const MAX_EXPR_DEPTH: u32 = 128;

/// A fixed-width scalar that the built-in impls read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scalar {
    Bool,
    Char,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
}

impl Scalar {
    fn from_name(name: &str) -> Option<Scalar> {
        Some(match name {
            "bool" => Scalar::Bool,
            "char" => Scalar::Char,
            "u8" => Scalar::U8,
            "u16" => Scalar::U16,
            "u32" => Scalar::U32,
            // `usize`/`isize` travel as 64 bits.
            "u64" | "usize" => Scalar::U64,
            "u128" => Scalar::U128,
            "i8" => Scalar::I8,
            "i16" => Scalar::I16,
            "i32" => Scalar::I32,
            "i64" | "isize" => Scalar::I64,
            "i128" => Scalar::I128,
            "f32" => Scalar::F32,
            "f64" => Scalar::F64,
            _ => return None,
        })
    }

    /// The type's name as a schema spells it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Scalar::Bool => "bool",
            Scalar::Char => "char",
            Scalar::U8 => "u8",
            Scalar::U16 => "u16",
            Scalar::U32 => "u32",
            Scalar::U64 => "u64",
            Scalar::U128 => "u128",
            Scalar::I8 => "i8",
            Scalar::I16 => "i16",
            Scalar::I32 => "i32",
            Scalar::I64 => "i64",
            Scalar::I128 => "i128",
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
        }
    }
}

/// The wire layout of one type expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TypeExpr {
    /// A scalar.
    Scalar(Scalar),
    /// `String`: a `u64` byte length, then UTF-8.
    String,
    /// `()` and `PhantomData`: no bytes.
    Unit,
    /// `Vec<T>`, `VecDeque<T>` (named): a `u64` count, then the elements.
    Seq(&'static str, Box<TypeExpr>),
    /// `BTreeSet<T>`, `HashSet<T>` (named): as a sequence.
    Set(&'static str, Box<TypeExpr>),
    /// `BTreeMap<K, V>`, `HashMap<K, V>` (named): a `u64` count, then key and value pairs.
    Map(&'static str, Box<TypeExpr>, Box<TypeExpr>),
    /// `[T; N]`: `N` elements, no count.
    Array(Box<TypeExpr>, u64),
    /// `Option<T>`: a 0/1 tag byte, then the value.
    Option(Box<TypeExpr>),
    /// `Box<T>`, `Arc<T>` (named): the value (one decode level, as the built-in impls
    /// count it).
    Boxed(&'static str, Box<TypeExpr>),
    /// `Wrapping<T>`: the value.
    Wrapping(Box<TypeExpr>),
    /// A tuple: the elements in order.
    Tuple(Vec<TypeExpr>),
    /// `FamStructWrapper<H, E>`: the header, then a `u64` count and the entries.
    Fam(Box<TypeExpr>, Box<TypeExpr>),
    /// A type of the schema, by its index in name order.
    Named(usize),
}

/// A described type whose present fields and variants have been parsed.
#[derive(Debug)]
pub(super) struct CompiledType<'s> {
    pub(super) name: &'s str,
    pub(super) version: u16,
    pub(super) kind: CompiledKind<'s>,
}

#[derive(Debug)]
pub(super) enum CompiledKind<'s> {
    /// The fields written at the type's version, in order.
    Struct(Vec<CompiledField<'s>>),
    /// The variants that exist at the type's version.
    Enum(Vec<CompiledVariant<'s>>),
    /// A hand-written impl: no layout to follow.
    Opaque,
}

#[derive(Debug)]
pub(super) struct CompiledField<'s> {
    pub(super) name: &'s str,
    pub(super) ty: TypeExpr,
}

#[derive(Debug)]
pub(super) struct CompiledVariant<'s> {
    pub(super) name: &'s str,
    pub(super) index: u32,
    pub(super) fields: Vec<CompiledField<'s>>,
}

/// A schema ready to drive decoding and encoding.
#[derive(Debug)]
pub(super) struct Compiled<'s> {
    pub(super) types: Vec<CompiledType<'s>>,
    pub(super) root: TypeExpr,
}

impl<'s> Compiled<'s> {
    /// Parses the root and the field types of every field and variant written at the
    /// schema's app version.
    ///
    /// # Errors
    /// [`ValueError::TypeName`] for a type expression that is neither a type of the schema
    /// nor a built-in layout, [`ValueError::Schema`] for two variants with one index.
    pub(super) fn new(schema: &'s Schema) -> Result<Compiled<'s>, ValueError> {
        let index: BTreeMap<&str, usize> = schema
            .types
            .keys()
            .enumerate()
            .map(|(at, name)| (name.as_str(), at))
            .collect();
        let parser = Parser { index: &index };
        let fields = |owner: &str, fields: &'s [super::FieldSchema]| {
            fields
                .iter()
                .filter(|field| field.present)
                .map(|field| {
                    Ok(CompiledField {
                        name: &field.name,
                        ty: parser
                            .parse(&field.ty, 0)
                            .map_err(|reason| ValueError::TypeName {
                                owner: format!("{owner}.{}", field.name),
                                ty: field.ty.clone(),
                                reason,
                            })?,
                    })
                })
                .collect::<Result<Vec<_>, ValueError>>()
        };
        let mut types = Vec::with_capacity(schema.types.len());
        for (name, ty) in &schema.types {
            let kind = match &ty.kind {
                TypeKind::Struct { fields: list } => CompiledKind::Struct(fields(name, list)?),
                TypeKind::Enum { variants } => {
                    let mut compiled: Vec<CompiledVariant<'s>> = Vec::new();
                    for variant in variants.iter().filter(|variant| variant.present) {
                        if compiled.iter().any(|seen| seen.index == variant.index) {
                            return Err(ValueError::Schema(format!(
                                "{name} has two variants with index {} at version {}",
                                variant.index, ty.version
                            )));
                        }
                        compiled.push(CompiledVariant {
                            name: &variant.name,
                            index: variant.index,
                            fields: fields(&format!("{name}::{}", variant.name), &variant.fields)?,
                        });
                    }
                    CompiledKind::Enum(compiled)
                }
                TypeKind::Opaque => CompiledKind::Opaque,
            };
            types.push(CompiledType {
                name,
                version: ty.version,
                kind,
            });
        }
        let root = parser
            .parse(&schema.root, 0)
            .map_err(|reason| ValueError::TypeName {
                owner: "root".to_owned(),
                ty: schema.root.clone(),
                reason,
            })?;
        Ok(Compiled { types, root })
    }

    /// The name of a type expression, for messages.
    pub(super) fn name_of(&self, ty: &TypeExpr) -> String {
        match ty {
            TypeExpr::Scalar(scalar) => scalar.name().to_owned(),
            TypeExpr::String => "String".to_owned(),
            TypeExpr::Unit => "()".to_owned(),
            TypeExpr::Seq(base, item) | TypeExpr::Set(base, item) | TypeExpr::Boxed(base, item) => {
                format!("{base}<{}>", self.name_of(item))
            }
            TypeExpr::Map(base, key, value) => {
                format!("{base}<{}, {}>", self.name_of(key), self.name_of(value))
            }
            TypeExpr::Array(item, len) => format!("[{}; {len}]", self.name_of(item)),
            TypeExpr::Option(item) => format!("Option<{}>", self.name_of(item)),
            TypeExpr::Wrapping(item) => format!("Wrapping<{}>", self.name_of(item)),
            TypeExpr::Tuple(items) => {
                let names: Vec<String> = items.iter().map(|item| self.name_of(item)).collect();
                format!("({},)", names.join(", "))
            }
            TypeExpr::Fam(header, entry) => format!(
                "FamStructWrapper<{}, {}>",
                self.name_of(header),
                self.name_of(entry)
            ),
            TypeExpr::Named(at) => self
                .types
                .get(*at)
                .map_or_else(String::new, |ty| ty.name.to_owned()),
        }
    }
}

struct Parser<'i> {
    index: &'i BTreeMap<&'i str, usize>,
}

impl Parser<'_> {
    /// Parses one type expression; the error is the reason, without the expression.
    fn parse(&self, text: &str, depth: u32) -> Result<TypeExpr, String> {
        if depth >= MAX_EXPR_DEPTH {
            return Err(format!("nested deeper than {MAX_EXPR_DEPTH} levels"));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err("empty type".to_owned());
        }
        if let Some(&at) = self.index.get(text) {
            return Ok(TypeExpr::Named(at));
        }
        let inner = |open: char, close: char| {
            text.strip_prefix(open)
                .and_then(|rest| rest.strip_suffix(close))
        };
        if let Some(inside) = inner('(', ')') {
            let mut parts = split_top_level(inside, ',')?;
            // `(A,)` and `(A, B,)` as the built-in impls write them; `(A, B)` also reads.
            if parts.last().is_some_and(|part| part.trim().is_empty()) {
                parts.pop();
            }
            if parts.is_empty() {
                return Ok(TypeExpr::Unit);
            }
            let items = parts
                .iter()
                .map(|part| self.parse(part, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(TypeExpr::Tuple(items));
        }
        if let Some(inside) = inner('[', ']') {
            let parts = split_top_level(inside, ';')?;
            let [item, len] = parts.as_slice() else {
                return Err(format!("`{text}` is not an array `[T; N]`"));
            };
            let len: u64 = len
                .trim()
                .parse()
                .map_err(|_| format!("array length `{}` is not a number", len.trim()))?;
            return Ok(TypeExpr::Array(Box::new(self.parse(item, depth + 1)?), len));
        }
        let (base, arguments) = match text.find('<') {
            Some(open) => {
                let Some(inside) = text[open + 1..].strip_suffix('>') else {
                    return Err(format!("`{text}` does not end its generic arguments"));
                };
                (&text[..open], split_top_level(inside, ',')?)
            }
            None => (text, Vec::new()),
        };
        let mut parsed = Vec::with_capacity(arguments.len());
        let built_in = |arity: usize| -> Result<(), String> {
            if arguments.len() == arity {
                Ok(())
            } else {
                Err(format!(
                    "{base} takes {arity} type argument(s), `{text}` gives {}",
                    arguments.len()
                ))
            }
        };
        let arity = match base {
            "String" | "()" | "PhantomData" => 0,
            "Vec" | "VecDeque" | "BTreeSet" | "HashSet" | "Option" | "Box" | "Arc" | "Rc"
            | "Wrapping" => 1,
            "BTreeMap" | "HashMap" => 2,
            "FamStructWrapper" if arguments.len() == 1 => {
                return Err(
                    "FamStructWrapper<H> does not name its entry type (schemas of this build \
                     write FamStructWrapper<H, E>): export the schema again with this build"
                        .to_owned(),
                );
            }
            "FamStructWrapper" => 2,
            scalar => match Scalar::from_name(scalar) {
                Some(scalar) if arguments.is_empty() => return Ok(TypeExpr::Scalar(scalar)),
                _ => {
                    return Err(format!(
                        "`{text}` is neither a type of the schema nor a built-in layout"
                    ))
                }
            },
        };
        built_in(arity)?;
        for argument in &arguments {
            parsed.push(self.parse(argument, depth + 1)?);
        }
        let mut parsed = parsed.into_iter().map(Box::new);
        let mut next = || {
            parsed
                .next()
                .ok_or_else(|| format!("`{text}` lacks an argument"))
        };
        Ok(match base {
            "String" => TypeExpr::String,
            "Vec" => TypeExpr::Seq("Vec", next()?),
            "VecDeque" => TypeExpr::Seq("VecDeque", next()?),
            "BTreeSet" => TypeExpr::Set("BTreeSet", next()?),
            "HashSet" => TypeExpr::Set("HashSet", next()?),
            "Option" => TypeExpr::Option(next()?),
            "Box" => TypeExpr::Boxed("Box", next()?),
            "Arc" => TypeExpr::Boxed("Arc", next()?),
            "Rc" => TypeExpr::Boxed("Rc", next()?),
            "Wrapping" => TypeExpr::Wrapping(next()?),
            "BTreeMap" => TypeExpr::Map("BTreeMap", next()?, next()?),
            "HashMap" => TypeExpr::Map("HashMap", next()?, next()?),
            "FamStructWrapper" => TypeExpr::Fam(next()?, next()?),
            _ => TypeExpr::Unit,
        })
    }
}

/// `text` split at each `separator` outside brackets; `->` does not close a bracket.
fn split_top_level(text: &str, separator: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth: u32 = 0;
    let mut start = 0;
    let mut previous = ' ';
    for (at, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' if previous == '-' => {}
            '>' | ')' | ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced `{c}` in `{text}`"))?;
            }
            c if c == separator && depth == 0 => {
                parts.push(&text[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
        previous = c;
    }
    if depth != 0 {
        return Err(format!("unbalanced brackets in `{text}`"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, names: &[&str]) -> Result<TypeExpr, String> {
        let index: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(at, name)| (*name, at))
            .collect();
        Parser { index: &index }.parse(text, 0)
    }

    fn boxed(ty: TypeExpr) -> Box<TypeExpr> {
        Box::new(ty)
    }

    #[test]
    fn test_type_expr_built_in_layouts() {
        use TypeExpr::{Array, Map, Named, Option, Scalar as S, Seq, Set, Tuple, Unit};
        let names = ["a::Regs", "a::Ring<a::Regs, 4>"];
        assert_eq!(
            parse("Vec<a::Regs>", &names),
            Ok(Seq("Vec", boxed(Named(0))))
        );
        assert_eq!(
            parse("[u8; 16]", &names),
            Ok(Array(boxed(S(Scalar::U8)), 16))
        );
        assert_eq!(
            parse("(u32, u64,)", &names),
            Ok(Tuple(vec![S(Scalar::U32), S(Scalar::U64)]))
        );
        assert_eq!(
            parse("(u32, u64)", &names),
            Ok(Tuple(vec![S(Scalar::U32), S(Scalar::U64)]))
        );
        assert_eq!(parse("()", &names), Ok(Unit));
        assert_eq!(parse("PhantomData", &names), Ok(Unit));
        assert_eq!(
            parse("Option<a::Ring<a::Regs, 4>>", &names),
            Ok(Option(boxed(Named(1))))
        );
        assert_eq!(
            parse("HashMap<String, [a::Regs; 2]>", &names),
            Ok(Map(
                "HashMap",
                boxed(TypeExpr::String),
                boxed(Array(boxed(Named(0)), 2))
            ))
        );
        assert_eq!(
            parse("BTreeSet<(usize, isize,)>", &names),
            Ok(Set(
                "BTreeSet",
                boxed(Tuple(vec![S(Scalar::U64), S(Scalar::I64)]))
            ))
        );
        assert_eq!(
            parse("FamStructWrapper<a::Regs, u64>", &names),
            Ok(TypeExpr::Fam(boxed(Named(0)), boxed(S(Scalar::U64))))
        );
    }

    #[test]
    fn test_type_expr_unknown_or_malformed_names_are_errors() {
        for bad in [
            "",
            "a::Missing",
            "Vec<u8",
            "Vec<u8>>",
            "[u8]",
            "[u8; x]",
            "[u8; -1]",
            "Vec<u8, u8>",
            "HashMap<u8>",
            "u8<u8>",
            "(u8, ]",
            "Vec<>",
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad:?} parsed");
        }
        let old_fam = parse("FamStructWrapper<u32>", &[]).unwrap_err();
        assert!(old_fam.contains("entry type"), "{old_fam}");
    }

    #[test]
    fn test_type_expr_deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}u8{}", "Vec<".repeat(100_000), ">".repeat(100_000));
        let error = parse(&deep, &[]).unwrap_err();
        assert!(error.contains("nested deeper"), "{error}");
    }
}
