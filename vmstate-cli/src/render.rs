//! Text rendering of a decoded state: one `path: value` line per scalar, in wire order.

use std::io::{self, Write};

use versionize::crc::crc64;
use versionize::schema::Value;

/// Byte strings longer than this are summarised unless the whole contents are asked for.
pub(crate) const SUMMARIZE_BYTES_OVER: usize = 1024;

/// Bytes per hex dump line.
const DUMP_LINE: usize = 16;

/// Writes `value` as `path: value` lines; byte strings over [`SUMMARIZE_BYTES_OVER`] are
/// summarised by length and CRC-64 unless `all_bytes`, and then hex dumped.
pub(crate) fn write_text(
    out: &mut dyn Write,
    path: &str,
    value: &Value,
    all_bytes: bool,
) -> io::Result<()> {
    match value {
        Value::Struct { fields, .. } => {
            if fields.is_empty() {
                writeln!(out, "{path}: {{}}")?;
            }
            for (name, field) in fields {
                write_text(out, &join(path, name), field, all_bytes)?;
            }
            Ok(())
        }
        Value::Enum {
            variant, fields, ..
        } => {
            writeln!(out, "{path}: {variant}")?;
            let inner = join(path, variant);
            for (name, field) in fields {
                write_text(out, &join(&inner, name), field, all_bytes)?;
            }
            Ok(())
        }
        Value::Option(None) => writeln!(out, "{path}: none"),
        Value::Option(Some(inner)) => write_text(out, path, inner, all_bytes),
        Value::Seq(items) | Value::Set(items) | Value::Tuple(items) => {
            if items.is_empty() {
                writeln!(out, "{path}: []")?;
            }
            for (index, item) in items.iter().enumerate() {
                write_text(out, &format!("{path}[{index}]"), item, all_bytes)?;
            }
            Ok(())
        }
        Value::Map(entries) => {
            if entries.is_empty() {
                writeln!(out, "{path}: {{}}")?;
            }
            for (key, item) in entries {
                write_text(out, &format!("{path}[{}]", key.short()), item, all_bytes)?;
            }
            Ok(())
        }
        Value::Bytes(bytes) if bytes.len() <= 32 => {
            writeln!(out, "{path}: [{}]", hex(bytes))
        }
        Value::Bytes(bytes) => {
            writeln!(
                out,
                "{path}: {} bytes, crc64 {:#018x}",
                bytes.len(),
                crc64(bytes)
            )?;
            if all_bytes || bytes.len() <= SUMMARIZE_BYTES_OVER {
                for (line, chunk) in bytes.chunks(DUMP_LINE).enumerate() {
                    writeln!(out, "  {:08x}  {}", line * DUMP_LINE, spaced_hex(chunk))?;
                }
            }
            Ok(())
        }
        Value::String(text) => writeln!(out, "{path}: {text:?}"),
        scalar => writeln!(out, "{path}: {}", scalar.short()),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spaced_hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &Value, all_bytes: bool) -> String {
        let mut out = Vec::new();
        write_text(&mut out, "", value, all_bytes).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn test_render_paths_and_summaries() {
        let value = Value::Struct {
            type_name: "a::S".to_owned(),
            fields: vec![
                ("rip".to_owned(), Value::U64(0x1000)),
                ("small".to_owned(), Value::U8(3)),
                ("maybe".to_owned(), Value::Option(None)),
                (
                    "event".to_owned(),
                    Value::Enum {
                        type_name: "a::E".to_owned(),
                        variant: "Fault".to_owned(),
                        index: 1,
                        fields: vec![("0".to_owned(), Value::U32(14))],
                    },
                ),
                ("list".to_owned(), Value::Seq(vec![Value::Bool(true)])),
                ("memory".to_owned(), Value::Bytes(vec![1; 2048])),
            ],
        };
        let summary = text(&value, false);
        assert!(summary.contains("rip: 0x1000\n"), "{summary}");
        assert!(summary.contains("small: 3\n"), "{summary}");
        assert!(summary.contains("maybe: none\n"), "{summary}");
        assert!(
            summary.contains("event: Fault\nevent.Fault.0: 14 (0xe)\n"),
            "{summary}"
        );
        assert!(summary.contains("list[0]: true\n"), "{summary}");
        assert!(
            summary.contains("memory: 2048 bytes, crc64 0x"),
            "{summary}"
        );
        assert!(!summary.contains("00000000"), "{summary}");
        let full = text(&value, true);
        assert!(full.contains("  000007f0  01 01"), "{full}");
    }
}
