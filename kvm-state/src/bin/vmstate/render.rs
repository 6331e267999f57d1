//! The decoded state as JSON, and the differences between two states.
//!
//! Nothing here builds a JSON tree of the state: `--json` is serialized straight to the
//! output, the text dump is rendered while serializing (`crate::text`), and `convert`'s
//! differences walk the compact JSON bytes of the fields that differ (serde_json's
//! deterministic output) without parsing them into values. A `serde_json::Value` costs tens
//! of bytes per element of a byte array; these cost a few bytes per byte at most.
//!
//! Guest memory is summarized (length and CRC-64 of each region's contents) unless asked
//! for: a guest's memory is megabytes, and its bytes say nothing to a reader of the dump.

use std::fmt::Write as _;
use std::io::{self, Write};

use kvm_state::{MemoryRegionState, MicrovmState};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use versionize::crc::crc64;

use crate::failure::Failure;
use crate::text::TextSink;

/// `{"data_version": N, "state": {...}}`, with each memory region's `contents` replaced by
/// `contents_len` and `contents_crc64`, and kept as a hex string when `memory` is set.
pub(crate) struct StateView<'a> {
    state: &'a MicrovmState,
    data_version: u16,
    memory: bool,
    /// The state's fields beside `data_version` rather than under `state` (the text dump).
    flat: bool,
    /// Which of the state's fields (in their order) are written.
    fields: [bool; 5],
}

impl<'a> StateView<'a> {
    pub(crate) fn new(state: &'a MicrovmState, data_version: u16, memory: bool) -> Self {
        StateView {
            state,
            data_version,
            memory,
            flat: false,
            fields: [true; 5],
        }
    }

    /// Leaves out the state's fields that equal `other`'s: they hold no difference, and a
    /// large equal field (a UART buffer) costs no JSON.
    pub(crate) fn without_fields_equal_to(mut self, other: &MicrovmState) -> Self {
        let state = self.state;
        self.fields = [
            state.vm != other.vm,
            state.vcpus != other.vcpus,
            state.devices != other.devices,
            state.memory != other.memory,
            state.host != other.host,
        ];
        self
    }

    /// The state's fields beside `data_version` rather than under `state`.
    pub(crate) fn flat(mut self) -> Self {
        self.flat = true;
        self
    }

    /// Pretty JSON, streamed to `out`.
    pub(crate) fn write_json(&self, out: &mut dyn Write) -> Result<(), Failure> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(json_failure)?;
        writeln!(out)?;
        Ok(())
    }

    /// Indented text, rendered while serializing (see [`TextSink`]).
    pub(crate) fn write_text(&self, out: &mut dyn Write) -> Result<(), Failure> {
        let mut sink = TextSink::new(out);
        serde_json::to_writer(&mut sink, self).map_err(json_failure)?;
        sink.finish()?;
        Ok(())
    }

    /// Compact JSON bytes.
    #[cfg(test)]
    pub(crate) fn to_compact(&self) -> Result<Vec<u8>, Failure> {
        serde_json::to_vec(self).map_err(json_failure)
    }

    /// The state alone (no data version) as compact JSON, the input of [`differences`].
    pub(crate) fn state_to_compact(&self) -> Result<Vec<u8>, Failure> {
        serde_json::to_vec(&StateBody(self)).map_err(json_failure)
    }
}

fn json_failure(err: serde_json::Error) -> Failure {
    if err.is_io() {
        // Writing the output failed: report it as such (a closed pipe stays quiet).
        return Failure::from(io::Error::from(err));
    }
    Failure::new("cannot convert the state to JSON").because(&err)
}

impl Serialize for StateView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("data_version", &self.data_version)?;
        if self.flat {
            self.state_entries(&mut map)?;
        } else {
            map.serialize_entry("state", &StateBody(self))?;
        }
        map.end()
    }
}

impl StateView<'_> {
    /// The state's fields, memory regions summarized. Destructuring names every field, so a
    /// field added to `MicrovmState` fails to compile here instead of going missing.
    fn state_entries<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        let MicrovmState {
            vm,
            vcpus,
            devices,
            memory,
            host,
            memory_source,
        } = self.state;
        let [with_vm, with_vcpus, with_devices, with_memory, with_host] = self.fields;
        if with_vm {
            map.serialize_entry("vm", vm)?;
        }
        if with_vcpus {
            map.serialize_entry("vcpus", vcpus)?;
        }
        if with_devices {
            map.serialize_entry("devices", devices)?;
        }
        if with_memory {
            map.serialize_entry("memory", &Regions(memory, self.memory))?;
        }
        if with_host {
            map.serialize_entry("host", host)?;
        }
        if with_memory {
            map.serialize_entry("memory_source", memory_source)?;
        }
        Ok(())
    }
}

struct StateBody<'a>(&'a StateView<'a>);

impl Serialize for StateBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.0.state_entries(&mut map)?;
        map.end()
    }
}

struct Regions<'a>(&'a [MemoryRegionState], bool);

impl Serialize for Regions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for region in self.0 {
            seq.serialize_element(&region_view(region, self.1))?;
        }
        seq.end()
    }
}

/// One region without its contents (a small value), plus their length and CRC-64.
fn region_view(region: &MemoryRegionState, memory: bool) -> Value {
    let MemoryRegionState {
        guest_phys_addr,
        size,
        contents,
    } = region;
    let mut view = Map::new();
    view.insert("guest_phys_addr".to_owned(), Value::from(*guest_phys_addr));
    view.insert("size".to_owned(), Value::from(*size));
    view.insert("contents_len".to_owned(), Value::from(contents.len()));
    view.insert(
        "contents_crc64".to_owned(),
        Value::from(format!("{:#018x}", crc64(contents))),
    );
    if memory {
        view.insert("contents".to_owned(), Value::from(hex(contents)));
    }
    Value::Object(view)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Walking compact JSON without parsing it into values. The input is serde_json's own
// compact output (no whitespace); anything else still walks without panicking, as scalars.

/// The index just past the JSON value starting at `start`.
fn value_end(json: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut at = start;
    while at < json.len() {
        let byte = json[at];
        at += 1;
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                if depth == 0 {
                    return at;
                }
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return at;
                }
            }
            b',' | b':' if depth == 0 => return at - 1,
            _ => {}
        }
    }
    at
}

/// The elements of an array, or the `key:value` members of an object, as raw slices.
fn members(container: &[u8]) -> impl Iterator<Item = &[u8]> {
    let inner = container
        .get(1..container.len().saturating_sub(1))
        .unwrap_or(&[]);
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= inner.len() {
            return None;
        }
        let start = at;
        let mut end = value_end(inner, at);
        if inner.get(end) == Some(&b':') {
            // An object member: the key, then its value.
            end = value_end(inner, end + 1);
        }
        at = end + 1;
        Some(&inner[start..end.max(start)])
    })
}

/// An object's members as (key, raw value).
fn entries(object: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    members(object).map(|member| {
        let key_end = value_end(member, 0);
        let key = serde_json::from_slice::<String>(&member[..key_end]).unwrap_or_default();
        (key, member.get(key_end + 1..).unwrap_or(&[]))
    })
}

fn is_object(raw: &[u8]) -> bool {
    raw.first() == Some(&b'{')
}

fn is_array(raw: &[u8]) -> bool {
    raw.first() == Some(&b'[')
}

fn as_u64(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// A scalar as text: numbers of two digits or more also in hex, `null` as `none`, strings
/// unquoted.
pub(crate) fn scalar(raw: &[u8]) -> String {
    match raw.first() {
        Some(b'"') => serde_json::from_slice::<String>(raw).unwrap_or_default(),
        _ if raw == b"null" => "none".to_owned(),
        _ => match as_u64(raw) {
            Some(small) if small < 10 => small.to_string(),
            Some(big) => format!("{big} ({big:#x})"),
            None => String::from_utf8_lossy(raw).into_owned(),
        },
    }
}

/// The leaves that differ between two compact JSON values: how many, and the first
/// `listed` of them as `path: old -> new`.
pub(crate) struct Differences {
    pub(crate) count: usize,
    pub(crate) listed: Vec<String>,
    limit: usize,
}

impl Differences {
    fn push(&mut self, line: impl FnOnce() -> String) {
        self.count += 1;
        if self.listed.len() < self.limit {
            self.listed.push(line());
        }
    }
}

/// Every leaf that differs between `old` and `new` (compact JSON), listing at most
/// `limit` of them.
pub(crate) fn differences(old: &[u8], new: &[u8], limit: usize) -> Differences {
    let mut out = Differences {
        count: 0,
        listed: Vec::new(),
        limit,
    };
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &[u8], new: &[u8], out: &mut Differences) {
    if old == new {
        // serde_json's output is deterministic: equal bytes, equal values.
        return;
    }
    if is_object(old) && is_object(new) {
        let child = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        let new_entries: Vec<(String, &[u8])> = entries(new).collect();
        let mut old_keys = Vec::new();
        for (key, old_value) in entries(old) {
            match new_entries.iter().find(|(k, _)| *k == key) {
                Some((_, new_value)) => diff_into(&child(&key), old_value, new_value, out),
                None => out.push(|| format!("{}: {} -> absent", child(&key), short(old_value))),
            }
            old_keys.push(key);
        }
        for (key, new_value) in &new_entries {
            if !old_keys.contains(key) {
                out.push(|| format!("{}: absent -> {}", child(key), short(new_value)));
            }
        }
        return;
    }
    if is_array(old) && is_array(new) && members(old).count() == members(new).count() {
        for (index, (old_item, new_item)) in members(old).zip(members(new)).enumerate() {
            diff_into(&format!("{path}[{index}]"), old_item, new_item, out);
        }
        return;
    }
    out.push(|| format!("{path}: {} -> {}", short(old), short(new)));
}

fn short(raw: &[u8]) -> String {
    if is_array(raw) {
        format!("{} values", members(raw).count())
    } else if is_object(raw) {
        "{...}".to_owned()
    } else {
        scalar(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &Value) -> String {
        let mut out = Vec::new();
        let mut sink = TextSink::new(&mut out);
        serde_json::to_writer(&mut sink, value).unwrap();
        sink.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn test_render_scalars_nesting_and_arrays() {
        let value = serde_json::json!({
            "regs": {"rip": 32768, "rax": 1},
            "tsc_khz": null,
            "db": [0, 0, 0, 0],
            "vcpus": [{"id": 0}, {"id": 1}],
            "empty": {},
            "name": "a \"quoted\", [odd] {name}",
            "signed": [-1, 2],
        });
        assert_eq!(
            text(&value),
            "regs:\n  rip: 32768 (0x8000)\n  rax: 1\ntsc_khz: none\ndb: [0, 0, 0, 0]\n\
             vcpus[0]:\n  id: 0\nvcpus[1]:\n  id: 1\nempty: {}\n\
             name: a \"quoted\", [odd] {name}\nsigned: [-1, 2]\n"
        );
    }

    /// Arrays that start with numbers and go on with something else print every element as
    /// an entry; the text is the same whatever the size of the writes.
    #[test]
    fn test_render_mixed_arrays_and_byte_by_byte_input() {
        let value = serde_json::json!({
            "m": [1, {"a": 2, "e": []}, [3], "x", null, [[]], [{}]],
            "n": {"deep": {"deeper": {"k": true}}},
        });
        let expected = "m[0]: 1\nm[1]:\n  a: 2\n  e: []\nm[2]: [3]\nm[3]: x\nm[4]: none\n\
                        m[5][0]: []\nm[6][0]: {}\nn:\n  deep:\n    deeper:\n      k: true\n";
        assert_eq!(text(&value), expected);
        let mut out = Vec::new();
        let mut sink = TextSink::new(&mut out);
        for byte in serde_json::to_vec(&value).unwrap() {
            sink.write_all(&[byte]).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
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
        let value = serde_json::json!({ "wide": [1, 2, 3, 4, 5, 6, 7, 8, 0x1_0000_0000u64] });
        assert_eq!(
            text(&value),
            "wide: 9 values\n  000000: 0000000000000001 0000000000000002 0000000000000003 \
             0000000000000004\n  000004: 0000000000000005 0000000000000006 0000000000000007 \
             0000000000000008\n  000008: 0000000100000000\n"
        );
    }

    #[test]
    fn test_state_view_summarizes_memory() {
        let state = MicrovmState {
            memory: vec![MemoryRegionState::with_contents(0x1000, vec![1, 2, 3])],
            ..Default::default()
        };
        let view: Value =
            serde_json::from_slice(&StateView::new(&state, 2, false).to_compact().unwrap())
                .unwrap();
        let region = &view["state"]["memory"][0];
        assert_eq!(region["contents_len"], 3);
        assert_eq!(
            region["contents_crc64"],
            format!("{:#018x}", crc64(&[1, 2, 3]))
        );
        assert!(region.get("contents").is_none());
        let view: Value =
            serde_json::from_slice(&StateView::new(&state, 2, true).to_compact().unwrap()).unwrap();
        assert_eq!(view["state"]["memory"][0]["contents"], "010203");
    }

    /// The view has exactly the state's own fields, in its order.
    #[test]
    fn test_state_view_has_every_field_of_the_state() {
        let state = MicrovmState::default();
        let direct = serde_json::to_value(&state).unwrap();
        let view: Value =
            serde_json::from_slice(&StateView::new(&state, 1, false).to_compact().unwrap())
                .unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&direct), keys(&view["state"]));
    }

    #[test]
    fn test_differences_by_path() {
        let old = serde_json::json!({"vcpus": [{"tsc_khz": 3, "rip": 1}], "n": [1, 2], "gone": 1});
        let new =
            serde_json::json!({"vcpus": [{"tsc_khz": null, "rip": 1}], "n": [1, 3], "added": [4]});
        let diff = differences(
            &serde_json::to_vec(&old).unwrap(),
            &serde_json::to_vec(&new).unwrap(),
            3,
        );
        assert_eq!(diff.count, 4);
        assert_eq!(
            diff.listed,
            [
                "vcpus[0].tsc_khz: 3 -> none",
                "n[1]: 2 -> 3",
                "gone: 1 -> absent"
            ]
        );
    }
}
