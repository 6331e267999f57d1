//! The check of the `schema_check` target: `vmstate schema check`'s parsing and comparison
//! of two schema files, on arbitrary input.
//!
//! The input is two documents separated by the first `0xff` byte (never part of UTF-8
//! text); without one, the input is compared with itself. Each document goes through
//! `Schema::from_json` as `vmstate` reads it; what parses must write back to JSON that parses
//! to an equal schema, and any two parsed schemas are compared both ways. Nothing may panic,
//! overflow the stack or allocate without bound.

use versionize::schema::{compare, Schema};

/// Parses the document(s) in `data` and compares what parses.
pub fn schema_check(data: &[u8]) {
    let (old, new) = match data.iter().position(|&byte| byte == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let parse = |bytes: &[u8]| -> Option<Schema> {
        let text = std::str::from_utf8(bytes).ok()?;
        let schema = Schema::from_json(text).ok()?;
        let again = Schema::from_json(&schema.to_json())
            .unwrap_or_else(|e| panic!("a parsed schema does not parse once written: {e}"));
        assert_eq!(again, schema, "a schema changed through to_json and from_json");
        Some(schema)
    };
    let (Some(old), Some(new)) = (parse(old), parse(new)) else {
        return;
    };
    let _ = compare(&old, &new);
    let _ = compare(&new, &old);
}
