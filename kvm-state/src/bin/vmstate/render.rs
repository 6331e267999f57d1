//! The decoded state as a JSON value, and that value as indented text.
//!
//! Guest memory is summarized (length and CRC-64 of each region's contents) unless asked
//! for: a guest's memory is megabytes, and its bytes say nothing to a reader of the dump.

use std::fmt::Write as _;
use std::io::{self, Write};

use kvm_state::MicrovmState;
use serde_json::{Map, Value};
use versionize::crc::crc64;

use crate::failure::Failure;

/// Arrays of numbers up to this long print on one line.
const INLINE_NUMBERS: usize = 8;
/// Hex strings longer than this print as a hex dump.
const INLINE_HEX_CHARS: usize = 64;
/// Bytes of a hex dump row.
const ROW_BYTES: usize = 16;

/// `{"data_version": N, "state": {...}}`, with each memory region's `contents` replaced by
/// `contents_len` and `contents_crc64`, and kept as a hex string when `memory` is set.
pub(crate) fn state_view(
    mut state: MicrovmState,
    data_version: u16,
    memory: bool,
) -> Result<Value, Failure> {
    // Take the contents out before serializing: never a JSON number per guest byte.
    let contents: Vec<Vec<u8>> = state
        .memory
        .iter_mut()
        .map(|region| std::mem::take(&mut region.contents))
        .collect();
    let mut value = serde_json::to_value(&state)
        .map_err(|e| Failure::new("cannot convert the state to JSON").because(&e))?;
    if let Some(regions) = value.get_mut("memory").and_then(Value::as_array_mut) {
        for (region, bytes) in regions.iter_mut().zip(&contents) {
            let Some(region) = region.as_object_mut() else {
                continue;
            };
            region.remove("contents");
            region.insert("contents_len".to_owned(), Value::from(bytes.len()));
            region.insert(
                "contents_crc64".to_owned(),
                Value::from(format!("{:#018x}", crc64(bytes))),
            );
            if memory {
                region.insert("contents".to_owned(), Value::from(hex(bytes)));
            }
        }
    }
    let mut view = Map::new();
    view.insert("data_version".to_owned(), Value::from(data_version));
    view.insert("state".to_owned(), value);
    Ok(Value::Object(view))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Writes `value` as indented `key: value` lines.
pub(crate) fn write_text(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    match value {
        Value::Object(map) => write_object(out, map, 0),
        other => writeln!(out, "{}", scalar(other)),
    }
}

fn write_object(out: &mut dyn Write, map: &Map<String, Value>, depth: usize) -> io::Result<()> {
    for (key, value) in map {
        write_entry(out, key, value, depth)?;
    }
    Ok(())
}

fn write_entry(out: &mut dyn Write, key: &str, value: &Value, depth: usize) -> io::Result<()> {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) if map.is_empty() => writeln!(out, "{indent}{key}: {{}}"),
        Value::Object(map) => {
            writeln!(out, "{indent}{key}:")?;
            write_object(out, map, depth + 1)
        }
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let numbers: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
            if items.len() <= INLINE_NUMBERS || numbers.len() != items.len() {
                let inline: Vec<String> = items.iter().map(Value::to_string).collect();
                writeln!(out, "{indent}{key}: [{}]", inline.join(", "))
            } else {
                writeln!(out, "{indent}{key}: {} values", numbers.len())?;
                write_rows(out, &numbers, depth + 1)
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                write_entry(out, &format!("{key}[{index}]"), item, depth)?;
            }
            Ok(())
        }
        Value::String(text) if text.len() > INLINE_HEX_CHARS && is_hex(text) => {
            writeln!(out, "{indent}{key}: {} bytes", text.len() / 2)?;
            let bytes: Vec<u64> = text
                .as_bytes()
                .chunks(2)
                .filter_map(|pair| {
                    let pair = std::str::from_utf8(pair).ok()?;
                    u64::from_str_radix(pair, 16).ok()
                })
                .collect();
            write_rows(out, &bytes, depth + 1)
        }
        other => writeln!(out, "{indent}{key}: {}", scalar(other)),
    }
}

fn is_hex(text: &str) -> bool {
    text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hex dump: an offset, then fixed-width values; repeated rows collapse into `*`.
fn write_rows(out: &mut dyn Write, values: &[u64], depth: usize) -> io::Result<()> {
    let indent = "  ".repeat(depth);
    let max = values.iter().copied().max().unwrap_or(0);
    let (digits, per_row) = match max {
        0..=0xff => (2, ROW_BYTES),
        0x100..=0xffff => (4, 8),
        0x1_0000..=0xffff_ffff => (8, 8),
        _ => (16, 4),
    };
    let mut previous: Option<&[u64]> = None;
    let mut collapsed = false;
    for (row, chunk) in values.chunks(per_row).enumerate() {
        if previous == Some(chunk) {
            if !collapsed {
                writeln!(out, "{indent}*")?;
                collapsed = true;
            }
            continue;
        }
        previous = Some(chunk);
        collapsed = false;
        let cells: Vec<String> = chunk
            .iter()
            .map(|v| format!("{v:0digits$x}", digits = digits))
            .collect();
        writeln!(out, "{indent}{:06x}: {}", row * per_row, cells.join(" "))?;
    }
    if collapsed {
        writeln!(out, "{indent}{:06x}", values.len())?;
    }
    Ok(())
}

/// A scalar as text: numbers of two digits or more also in hex, `null` as `none`.
fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "none".to_owned(),
        Value::Number(n) => match n.as_u64() {
            Some(small) if small < 10 => small.to_string(),
            Some(big) => format!("{big} ({big:#x})"),
            None => n.to_string(),
        },
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every leaf that differs between `old` and `new`, as `path: old -> new`.
pub(crate) fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let child = |key: &str| {
                if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                }
            };
            for (key, a_value) in a {
                match b.get(key) {
                    Some(b_value) => diff_into(&child(key), a_value, b_value, out),
                    None => out.push(format!("{}: {} -> absent", child(key), short(a_value))),
                }
            }
            for (key, b_value) in b {
                if !a.contains_key(key) {
                    out.push(format!("{}: absent -> {}", child(key), short(b_value)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (a_item, b_item)) in a.iter().zip(b).enumerate() {
                diff_into(&format!("{path}[{index}]"), a_item, b_item, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {} -> {}", short(a), short(b))),
        _ => {}
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("{} values", items.len()),
        Value::Object(_) => "{...}".to_owned(),
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &Value) -> String {
        let mut out = Vec::new();
        write_text(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn test_render_scalars_nesting_and_arrays() {
        let value = serde_json::json!({
            "regs": {"rip": 32768, "rax": 1},
            "tsc_khz": null,
            "db": [0, 0, 0, 0],
            "vcpus": [{"id": 0}, {"id": 1}],
        });
        assert_eq!(
            text(&value),
            "regs:\n  rip: 32768 (0x8000)\n  rax: 1\ntsc_khz: none\ndb: [0, 0, 0, 0]\n\
             vcpus[0]:\n  id: 0\nvcpus[1]:\n  id: 1\n"
        );
    }

    #[test]
    fn test_render_long_arrays_as_collapsed_hex_rows() {
        let mut regs = vec![0u8; 64];
        regs[0] = 0x10;
        let value = serde_json::json!({ "regs": regs });
        assert_eq!(
            text(&value),
            "regs: 64 values\n  000000: 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n  \
             000010: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n  *\n  000040\n"
        );
        let value = serde_json::json!({ "contents": hex(&[0xa5; 40]) });
        assert!(text(&value).starts_with("contents: 40 bytes\n  000000: a5 a5"));
    }

    #[test]
    fn test_state_view_summarizes_memory() {
        let state = MicrovmState {
            memory: vec![kvm_state::MemoryRegionState::with_contents(
                0x1000,
                vec![1, 2, 3],
            )],
            ..Default::default()
        };
        let view = state_view(state.clone(), 2, false).unwrap();
        let region = &view["state"]["memory"][0];
        assert_eq!(region["contents_len"], 3);
        assert_eq!(
            region["contents_crc64"],
            format!("{:#018x}", crc64(&[1, 2, 3]))
        );
        assert!(region.get("contents").is_none());
        let view = state_view(state, 2, true).unwrap();
        assert_eq!(view["state"]["memory"][0]["contents"], "010203");
    }

    #[test]
    fn test_differences_by_path() {
        let old = serde_json::json!({"vcpus": [{"tsc_khz": 3, "rip": 1}], "n": [1, 2]});
        let new = serde_json::json!({"vcpus": [{"tsc_khz": null, "rip": 1}], "n": [1, 3]});
        assert_eq!(
            differences(&old, &new),
            ["vcpus[0].tsc_khz: 3 -> none", "n[1]: 2 -> 3"]
        );
    }
}
