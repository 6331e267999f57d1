//! Field-level differences between two decoded values, byte strings summarised.

use std::fmt;

use super::value::Value;

/// Byte strings are summarised by pages of this size.
pub const DIFF_PAGE_SIZE: u64 = 4096;

/// A sequence of scalars with more differing elements than this is summarised in one line.
const MAX_ELEMENT_LINES: usize = 8;

/// Sets and maps larger than this (product of both sizes) are compared by position, not
/// matched element by element.
const MAX_MATCH_WORK: usize = 1 << 20;

/// One difference between two values, at a field path such as `vcpus[1].regs.rip`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueDifference {
    /// Where: fields joined by `.`, elements by `[index]`, map entries by `[key]`, enum
    /// variants by their name (`event.Exception.0`); `<root>` for the value itself.
    pub path: String,
    /// What changed.
    pub change: Change,
}

/// What changed at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A value changed (rendered as by [`Value::short`]).
    Value {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// Only the new value has it: a field that the old data version does not write, an
    /// appended element, a new map key or set element.
    Added {
        /// The new value.
        new: String,
    },
    /// Only the old value has it.
    Removed {
        /// The old value.
        old: String,
    },
    /// A sequence or byte string changed length (its common part is compared apart).
    Length {
        /// Old element count.
        old: usize,
        /// New element count.
        new: usize,
    },
    /// A byte string (guest memory, a register page) with differing bytes in its common
    /// part.
    Bytes {
        /// Differing bytes.
        differing: u64,
        /// Pages of [`DIFF_PAGE_SIZE`] bytes with at least one differing byte.
        pages: u64,
        /// Offset of the first differing byte.
        first_offset: u64,
    },
    /// A sequence of scalars with many differing elements.
    Elements {
        /// Differing elements of the common part.
        differing: usize,
        /// Index of the first.
        first_index: usize,
        /// Its old value.
        first_old: String,
        /// Its new value.
        first_new: String,
    },
}

impl fmt::Display for ValueDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.change {
            Change::Value { old, new } => write!(f, "{old} -> {new}"),
            Change::Added { new } => write!(f, "absent -> {new}"),
            Change::Removed { old } => write!(f, "{old} -> absent"),
            Change::Length { old, new } => write!(f, "length {old} -> {new}"),
            Change::Bytes {
                differing,
                pages,
                first_offset,
            } => write!(
                f,
                "{differing} byte(s) differ in {pages} page(s) of {DIFF_PAGE_SIZE} bytes, first at offset {first_offset:#x}"
            ),
            Change::Elements {
                differing,
                first_index,
                first_old,
                first_new,
            } => write!(
                f,
                "{differing} values differ, first [{first_index}]: {first_old} -> {first_new}"
            ),
        }
    }
}

/// Every difference between `old` and `new`, in field order: struct fields matched by
/// name (a field only one side has is [`Change::Added`] or [`Change::Removed`], as between
/// two data versions), sequences by position, maps by key, sets by element; byte strings
/// summarised by differing bytes and pages, long runs of differing scalars in one line.
/// Empty when the values are equal.
///
/// # Example
/// ```
/// use versionize::schema::{diff_values, Value};
///
/// let regs = |rip| Value::Struct {
///     type_name: "a::Regs".to_owned(),
///     fields: vec![("rip".to_owned(), Value::U64(rip))],
/// };
/// let differences = diff_values(&regs(0x1000), &regs(0x1004));
/// assert_eq!(differences[0].to_string(), "rip: 0x1000 -> 0x1004");
/// assert!(diff_values(&regs(1), &regs(1)).is_empty());
/// ```
#[must_use]
pub fn diff_values(old: &Value, new: &Value) -> Vec<ValueDifference> {
    let mut differ = Differ {
        path: String::new(),
        out: Vec::new(),
    };
    differ.value(old, new);
    differ.out
}

struct Differ {
    path: String,
    out: Vec<ValueDifference>,
}

impl Differ {
    fn push(&mut self, change: Change) {
        let path = if self.path.is_empty() {
            "<root>".to_owned()
        } else {
            self.path.clone()
        };
        self.out.push(ValueDifference { path, change });
    }

    fn changed(&mut self, old: &Value, new: &Value) {
        self.push(Change::Value {
            old: old.short(),
            new: new.short(),
        });
    }

    /// Runs `diff` with `segment` appended to the path (`.name` or `[index]`).
    fn at(&mut self, segment: &str, diff: impl FnOnce(&mut Self)) {
        let len = self.path.len();
        match segment.strip_prefix('.') {
            Some(name) if len == 0 => self.path.push_str(name),
            _ => self.path.push_str(segment),
        }
        diff(self);
        self.path.truncate(len);
    }

    fn value(&mut self, old: &Value, new: &Value) {
        if old == new {
            return;
        }
        match (old, new) {
            (
                Value::Struct {
                    type_name: old_name,
                    fields: old_fields,
                },
                Value::Struct {
                    type_name: new_name,
                    fields: new_fields,
                },
            ) => {
                if old_name != new_name {
                    self.push(Change::Value {
                        old: old.kind(),
                        new: new.kind(),
                    });
                }
                self.fields(old_fields, new_fields);
            }
            (
                Value::Enum {
                    type_name: old_name,
                    variant: old_variant,
                    fields: old_fields,
                    ..
                },
                Value::Enum {
                    type_name: new_name,
                    variant: new_variant,
                    fields: new_fields,
                    ..
                },
            ) if old_name == new_name && old_variant == new_variant => {
                self.at(&format!(".{old_variant}"), |d| {
                    d.fields(old_fields, new_fields);
                });
            }
            (Value::Option(Some(a)), Value::Option(Some(b))) => self.value(a, b),
            (Value::Bytes(a), Value::Bytes(b)) => self.bytes(a, b),
            (Value::Seq(a), Value::Seq(b)) => self.seq(a, b),
            (Value::Tuple(a), Value::Tuple(b)) if a.len() == b.len() => {
                for (at, (a, b)) in a.iter().zip(b).enumerate() {
                    self.at(&format!("[{at}]"), |d| d.value(a, b));
                }
            }
            (Value::Set(a), Value::Set(b)) => self.set(a, b),
            (Value::Map(a), Value::Map(b)) => self.map(a, b),
            (old, new) => self.changed(old, new),
        }
    }

    fn fields(&mut self, old: &[(String, Value)], new: &[(String, Value)]) {
        for (name, old_value) in old {
            match new.iter().find(|(new_name, _)| new_name == name) {
                Some((_, new_value)) => {
                    self.at(&format!(".{name}"), |d| d.value(old_value, new_value))
                }
                None => self.at(&format!(".{name}"), |d| {
                    d.push(Change::Removed {
                        old: old_value.short(),
                    });
                }),
            }
        }
        for (name, new_value) in new {
            if !old.iter().any(|(old_name, _)| old_name == name) {
                self.at(&format!(".{name}"), |d| {
                    d.push(Change::Added {
                        new: new_value.short(),
                    });
                });
            }
        }
    }

    fn bytes(&mut self, old: &[u8], new: &[u8]) {
        if old.len() <= 16 && new.len() <= 16 {
            self.changed(&Value::Bytes(old.to_vec()), &Value::Bytes(new.to_vec()));
            return;
        }
        if old.len() != new.len() {
            self.push(Change::Length {
                old: old.len(),
                new: new.len(),
            });
        }
        let mut differing = 0u64;
        let mut pages = 0u64;
        let mut first_offset = None;
        let mut last_page = None;
        for (offset, (a, b)) in (0u64..).zip(old.iter().zip(new)) {
            if a != b {
                differing += 1;
                first_offset.get_or_insert(offset);
                let page = offset / DIFF_PAGE_SIZE;
                if last_page != Some(page) {
                    pages += 1;
                    last_page = Some(page);
                }
            }
        }
        if let Some(first_offset) = first_offset {
            self.push(Change::Bytes {
                differing,
                pages,
                first_offset,
            });
        }
    }

    fn seq(&mut self, old: &[Value], new: &[Value]) {
        if old.len() != new.len() {
            self.push(Change::Length {
                old: old.len(),
                new: new.len(),
            });
        }
        let scalars = old.iter().chain(new).all(is_scalar);
        let differing: Vec<usize> = old
            .iter()
            .zip(new)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(at, _)| at)
            .collect();
        if scalars && differing.len() > MAX_ELEMENT_LINES {
            let first = differing[0];
            self.push(Change::Elements {
                differing: differing.len(),
                first_index: first,
                first_old: old[first].short(),
                first_new: new[first].short(),
            });
        } else {
            for at in differing {
                self.at(&format!("[{at}]"), |d| d.value(&old[at], &new[at]));
            }
        }
        let common = old.len().min(new.len());
        let extra = old.len().max(new.len()) - common;
        if extra > 0 && extra <= MAX_ELEMENT_LINES {
            for (at, item) in old.iter().enumerate().skip(common) {
                self.at(&format!("[{at}]"), |d| {
                    d.push(Change::Removed { old: item.short() });
                });
            }
            for (at, item) in new.iter().enumerate().skip(common) {
                self.at(&format!("[{at}]"), |d| {
                    d.push(Change::Added { new: item.short() });
                });
            }
        }
    }

    fn set(&mut self, old: &[Value], new: &[Value]) {
        if old.len().saturating_mul(new.len()) > MAX_MATCH_WORK {
            return self.seq(old, new);
        }
        let mut unmatched: Vec<Option<&Value>> = new.iter().map(Some).collect();
        for item in old {
            match unmatched.iter_mut().find(|slot| **slot == Some(item)) {
                Some(slot) => *slot = None,
                None => self.at(&format!("[{}]", item.short()), |d| {
                    d.push(Change::Removed { old: item.short() });
                }),
            }
        }
        for item in unmatched.into_iter().flatten() {
            self.at(&format!("[{}]", item.short()), |d| {
                d.push(Change::Added { new: item.short() });
            });
        }
    }

    fn map(&mut self, old: &[(Value, Value)], new: &[(Value, Value)]) {
        if old.len().saturating_mul(new.len()) > MAX_MATCH_WORK {
            let keys = |entries: &[(Value, Value)]| -> Vec<Value> {
                entries
                    .iter()
                    .map(|(k, v)| Value::Tuple(vec![k.clone(), v.clone()]))
                    .collect()
            };
            return self.seq(&keys(old), &keys(new));
        }
        for (key, old_value) in old {
            let segment = format!("[{}]", key.short());
            match new.iter().find(|(new_key, _)| new_key == key) {
                Some((_, new_value)) => self.at(&segment, |d| d.value(old_value, new_value)),
                None => self.at(&segment, |d| {
                    d.push(Change::Removed {
                        old: old_value.short(),
                    });
                }),
            }
        }
        for (key, new_value) in new {
            if !old.iter().any(|(old_key, _)| old_key == key) {
                self.at(&format!("[{}]", key.short()), |d| {
                    d.push(Change::Added {
                        new: new_value.short(),
                    });
                });
            }
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(
        value,
        Value::Seq(_)
            | Value::Set(_)
            | Value::Map(_)
            | Value::Tuple(_)
            | Value::Struct { .. }
            | Value::Enum { .. }
            | Value::Option(Some(_))
            | Value::Bytes(_)
            | Value::String(_)
    )
}
