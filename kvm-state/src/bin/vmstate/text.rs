//! The text dump, rendered while the state is serialized: [`TextSink`] takes serde_json's
//! compact output as it is written and prints indented `key: value` lines, holding only the
//! array of numbers being read (a byte per byte of a byte array) and the current token.

use std::io::{self, Write};

use crate::render::scalar;

/// Arrays of numbers up to this long print on one line.
const INLINE_NUMBERS: usize = 8;
/// Hex strings longer than this print as a hex dump.
const INLINE_HEX_CHARS: usize = 64;
/// Bytes of a hex dump row.
const ROW_BYTES: usize = 16;

/// The numbers of an array, as compact as their values allow.
enum Numbers {
    /// Every value so far fits a byte.
    Bytes(Vec<u8>),
    /// Every value so far is a `u64`.
    Words(Vec<u64>),
    /// Some value is not a `u64` (negative, fractional): the JSON texts.
    Texts(Vec<String>),
}

impl Numbers {
    fn push(&mut self, text: &str) {
        let value: Option<u64> = text.parse().ok();
        match (&mut *self, value) {
            (Numbers::Bytes(bytes), Some(v)) if v <= 0xff => bytes.push(v as u8),
            (Numbers::Bytes(bytes), Some(v)) => {
                let mut words: Vec<u64> = bytes.iter().map(|&b| u64::from(b)).collect();
                words.push(v);
                *self = Numbers::Words(words);
            }
            (Numbers::Words(words), Some(v)) => words.push(v),
            (Numbers::Texts(texts), _) => texts.push(text.to_owned()),
            (_, None) => {
                let mut texts = self.texts();
                texts.push(text.to_owned());
                *self = Numbers::Texts(texts);
            }
        }
    }

    fn texts(&self) -> Vec<String> {
        match self {
            Numbers::Bytes(v) => v.iter().map(u8::to_string).collect(),
            Numbers::Words(v) => v.iter().map(u64::to_string).collect(),
            Numbers::Texts(v) => v.clone(),
        }
    }
}

/// What an open array has held so far.
enum ArrayMode {
    /// Nothing yet.
    Empty,
    /// Numbers only.
    Numbers(Numbers),
    /// Something else: each element is printed as `key[index]`.
    Entries,
}

enum Frame {
    Object {
        /// `key` and depth of the line that opens it; `None` for the top level.
        header: Option<(String, usize)>,
        header_printed: bool,
        /// Depth of its members.
        depth: usize,
        /// The key whose value comes next.
        key: Option<String>,
    },
    Array {
        key: String,
        depth: usize,
        index: usize,
        mode: ArrayMode,
    },
}

/// A token of compact JSON.
enum Token {
    ObjectStart,
    ObjectEnd,
    ArrayStart,
    ArrayEnd,
    /// A string, a number or a literal, as its JSON text.
    Scalar(Vec<u8>),
}

/// Renders compact JSON written into it as indented text on `out`.
pub(crate) struct TextSink<'a> {
    out: &'a mut dyn Write,
    frames: Vec<Frame>,
    /// The string, number or literal being read.
    partial: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// The last string read where a key may be (before a `:`).
    last_string: Option<Vec<u8>>,
}

impl<'a> TextSink<'a> {
    pub(crate) fn new(out: &'a mut dyn Write) -> Self {
        TextSink {
            out,
            frames: Vec::new(),
            partial: Vec::new(),
            in_string: false,
            escaped: false,
            last_string: None,
        }
    }

    /// Ends the input: a scalar at the top level is printed.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.end_scalar()?;
        if let Some(text) = self.last_string.take() {
            self.token(Token::Scalar(text))?;
        }
        Ok(())
    }

    fn byte(&mut self, byte: u8) -> io::Result<()> {
        if self.in_string {
            self.partial.push(byte);
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
                // A key if a `:` follows; held until the next byte says.
                self.last_string = Some(std::mem::take(&mut self.partial));
            }
            return Ok(());
        }
        match byte {
            b'"' => {
                self.flush_string()?;
                self.in_string = true;
                self.partial.push(byte);
            }
            b':' => {
                if let (Some(key), Some(Frame::Object { key: slot, .. })) =
                    (self.last_string.take(), self.frames.last_mut())
                {
                    *slot = Some(serde_json::from_slice(&key).unwrap_or_default());
                }
            }
            b'{' | b'}' | b'[' | b']' | b',' => {
                self.end_scalar()?;
                self.flush_string()?;
                match byte {
                    b'{' => self.token(Token::ObjectStart)?,
                    b'}' => self.token(Token::ObjectEnd)?,
                    b'[' => self.token(Token::ArrayStart)?,
                    b']' => self.token(Token::ArrayEnd)?,
                    _ => {}
                }
            }
            b' ' | b'\n' | b'\t' | b'\r' => self.end_scalar()?,
            _ => self.partial.push(byte),
        }
        Ok(())
    }

    /// A string that turned out to be a value, not a key.
    fn flush_string(&mut self) -> io::Result<()> {
        match self.last_string.take() {
            Some(text) => self.token(Token::Scalar(text)),
            None => Ok(()),
        }
    }

    /// A number or literal ends at a delimiter.
    fn end_scalar(&mut self) -> io::Result<()> {
        if self.partial.is_empty() || self.in_string {
            return Ok(());
        }
        let text = std::mem::take(&mut self.partial);
        self.token(Token::Scalar(text))
    }

    /// The key and depth of the next value's line, from the innermost frame.
    fn next_entry(&mut self) -> Option<(String, usize)> {
        match self.frames.last_mut()? {
            Frame::Object { key, depth, .. } => Some((key.take().unwrap_or_default(), *depth)),
            Frame::Array {
                key, depth, index, ..
            } => {
                let entry = (format!("{key}[{index}]"), *depth);
                *index += 1;
                Some(entry)
            }
        }
    }

    fn token(&mut self, token: Token) -> io::Result<()> {
        // An array of numbers so far: another number joins it; anything else turns it
        // into entries, the numbers before it printed one per line.
        if let Some(Frame::Array {
            key,
            depth,
            index,
            mode,
        }) = self.frames.last_mut()
        {
            let is_number =
                matches!(&token, Token::Scalar(t) if matches!(t.first(), Some(b'-' | b'0'..=b'9')));
            match (&mut *mode, &token, is_number) {
                (ArrayMode::Empty, Token::Scalar(text), true) => {
                    let mut numbers = Numbers::Bytes(Vec::new());
                    numbers.push(std::str::from_utf8(text).unwrap_or("0"));
                    *mode = ArrayMode::Numbers(numbers);
                    *index += 1;
                    return Ok(());
                }
                (ArrayMode::Numbers(numbers), Token::Scalar(text), true) => {
                    numbers.push(std::str::from_utf8(text).unwrap_or("0"));
                    *index += 1;
                    return Ok(());
                }
                (_, Token::ArrayEnd, _) => {}
                (ArrayMode::Numbers(numbers), _, false) => {
                    let indent = "  ".repeat(*depth);
                    for (at, text) in numbers.texts().iter().enumerate() {
                        writeln!(self.out, "{indent}{key}[{at}]: {}", scalar(text.as_bytes()))?;
                    }
                    *mode = ArrayMode::Entries;
                }
                (ArrayMode::Empty, _, _) => *mode = ArrayMode::Entries,
                _ => {}
            }
        }
        match token {
            Token::ObjectStart => {
                self.print_object_header()?;
                let header = self.next_entry();
                let depth = header.as_ref().map_or(0, |(_, depth)| depth + 1);
                self.frames.push(Frame::Object {
                    header,
                    header_printed: false,
                    depth,
                    key: None,
                });
                Ok(())
            }
            Token::ArrayStart => {
                self.print_object_header()?;
                let (key, depth) = self.next_entry().unwrap_or_default();
                self.frames.push(Frame::Array {
                    key,
                    depth,
                    index: 0,
                    mode: ArrayMode::Empty,
                });
                Ok(())
            }
            Token::ObjectEnd => match self.frames.pop() {
                Some(Frame::Object {
                    header: Some((key, depth)),
                    header_printed: false,
                    ..
                }) => writeln!(self.out, "{}{key}: {{}}", "  ".repeat(depth)),
                _ => Ok(()),
            },
            Token::ArrayEnd => match self.frames.pop() {
                Some(Frame::Array {
                    key,
                    depth,
                    mode: ArrayMode::Empty,
                    ..
                }) => writeln!(self.out, "{}{key}: []", "  ".repeat(depth)),
                Some(Frame::Array {
                    key,
                    depth,
                    mode: ArrayMode::Numbers(numbers),
                    ..
                }) => self.write_numbers(&key, depth, &numbers),
                _ => Ok(()),
            },
            Token::Scalar(text) => {
                self.print_object_header()?;
                match self.next_entry() {
                    Some((key, depth)) => self.write_scalar(&key, depth, &text),
                    None => writeln!(self.out, "{}", scalar(&text)),
                }
            }
        }
    }

    /// Before the first member of an object: its `key:` line.
    fn print_object_header(&mut self) -> io::Result<()> {
        if let Some(Frame::Object {
            header: Some((key, depth)),
            header_printed,
            ..
        }) = self.frames.last_mut()
        {
            if !*header_printed {
                *header_printed = true;
                writeln!(self.out, "{}{key}:", "  ".repeat(*depth))?;
            }
        }
        Ok(())
    }

    fn write_scalar(&mut self, key: &str, depth: usize, text: &[u8]) -> io::Result<()> {
        let indent = "  ".repeat(depth);
        if text.first() == Some(&b'"') && text.len() > INLINE_HEX_CHARS + 2 {
            let string = serde_json::from_slice::<String>(text).unwrap_or_default();
            if string.len() > INLINE_HEX_CHARS && is_hex(&string) {
                writeln!(self.out, "{indent}{key}: {} bytes", string.len() / 2)?;
                let bytes = || {
                    string.as_bytes().chunks(2).filter_map(|pair| {
                        let pair = std::str::from_utf8(pair).ok()?;
                        u64::from_str_radix(pair, 16).ok()
                    })
                };
                return write_rows(self.out, bytes, depth + 1);
            }
        }
        writeln!(self.out, "{indent}{key}: {}", scalar(text))
    }

    fn write_numbers(&mut self, key: &str, depth: usize, numbers: &Numbers) -> io::Result<()> {
        let indent = "  ".repeat(depth);
        match numbers {
            Numbers::Bytes(v) if v.len() > INLINE_NUMBERS => {
                writeln!(self.out, "{indent}{key}: {} values", v.len())?;
                write_rows(self.out, || v.iter().map(|&b| u64::from(b)), depth + 1)
            }
            Numbers::Words(v) if v.len() > INLINE_NUMBERS => {
                writeln!(self.out, "{indent}{key}: {} values", v.len())?;
                write_rows(self.out, || v.iter().copied(), depth + 1)
            }
            _ => {
                writeln!(self.out, "{indent}{key}: [{}]", numbers.texts().join(", "))
            }
        }
    }
}

impl Write for TextSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &byte in buf {
            self.byte(byte)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn is_hex(text: &str) -> bool {
    text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hex dump: an offset, then fixed-width values; repeated rows collapse into `*`.
/// `values` is walked twice (for the widest value, then for the rows): nothing is
/// collected.
fn write_rows<I: Iterator<Item = u64>>(
    out: &mut dyn Write,
    values: impl Fn() -> I,
    depth: usize,
) -> io::Result<()> {
    let indent = "  ".repeat(depth);
    let max = values().max().unwrap_or(0);
    let (digits, per_row) = match max {
        0..=0xff => (2, ROW_BYTES),
        0x100..=0xffff => (4, 8),
        0x1_0000..=0xffff_ffff => (8, 8),
        _ => (16, 4),
    };
    let mut previous: Vec<u64> = Vec::with_capacity(per_row);
    let mut row: Vec<u64> = Vec::with_capacity(per_row);
    let mut collapsed = false;
    let mut offset = 0usize;
    let mut count = 0usize;
    let mut iter = values();
    loop {
        row.clear();
        row.extend(iter.by_ref().take(per_row));
        if row.is_empty() {
            break;
        }
        count += row.len();
        if offset > 0 && previous == row {
            if !collapsed {
                writeln!(out, "{indent}*")?;
                collapsed = true;
            }
        } else {
            collapsed = false;
            let cells: Vec<String> = row
                .iter()
                .map(|v| format!("{v:0digits$x}", digits = digits))
                .collect();
            writeln!(out, "{indent}{offset:06x}: {}", cells.join(" "))?;
            std::mem::swap(&mut previous, &mut row);
        }
        offset += per_row;
    }
    if collapsed {
        writeln!(out, "{indent}{count:06x}")?;
    }
    Ok(())
}
