//! `diff_values` (paths, data versions, maps by key, sets by element, byte strings and long
//! runs of scalars summarised) and the JSON rendering of every kind of value.

use versionize::prelude::*;
use versionize::schema::{
    decode_value, diff_values, export, Change, JsonOptions, Value, ValueDifference,
};
use versionize::Limits;

fn s(name: &str, fields: Vec<(&str, Value)>) -> Value {
    Value::Struct {
        type_name: name.to_owned(),
        fields: fields
            .into_iter()
            .map(|(field, value)| (field.to_owned(), value))
            .collect(),
    }
}

fn e(variant: &str, index: u32, fields: Vec<Value>) -> Value {
    Value::Enum {
        type_name: "a::Event".to_owned(),
        variant: variant.to_owned(),
        index,
        fields: fields
            .into_iter()
            .enumerate()
            .map(|(at, value)| (at.to_string(), value))
            .collect(),
    }
}

fn lines(old: &Value, new: &Value) -> Vec<String> {
    diff_values(old, new)
        .iter()
        .map(ValueDifference::to_string)
        .collect()
}

#[test]
fn test_schema_value_diff_paths_through_structs_sequences_and_variants() {
    let cpu = |rip: u64, event: Value| {
        s(
            "a::Cpu",
            vec![
                ("regs", s("a::Regs", vec![("rip", Value::U64(rip))])),
                ("event", event),
            ],
        )
    };
    let old = s(
        "a::Vm",
        vec![(
            "vcpus",
            Value::Seq(vec![
                cpu(0x1000, e("Exception", 1, vec![Value::U8(13)])),
                cpu(0x2000, e("Nothing", 0, vec![])),
            ]),
        )],
    );
    let new = s(
        "a::Vm",
        vec![(
            "vcpus",
            Value::Seq(vec![
                cpu(0x1000, e("Exception", 1, vec![Value::U8(14)])),
                cpu(0x2004, e("Exception", 1, vec![Value::U8(6)])),
            ]),
        )],
    );
    assert_eq!(
        lines(&old, &new),
        [
            "vcpus[0].event.Exception.0: 13 (0xd) -> 14 (0xe)",
            "vcpus[1].regs.rip: 0x2000 -> 0x2004",
            "vcpus[1].event: Nothing -> Exception(...)",
        ]
    );
    assert!(diff_values(&old, &old).is_empty());
}

#[test]
fn test_schema_value_diff_root_values_and_type_changes() {
    assert_eq!(lines(&Value::U32(1), &Value::U32(2)), ["<root>: 1 -> 2"]);
    assert_eq!(lines(&Value::U32(1), &Value::U64(1)), ["<root>: 1 -> 0x1"]);
    assert_eq!(
        lines(
            &Value::Seq(vec![Value::U8(1)]),
            &Value::Seq(vec![Value::U8(2)])
        ),
        ["[0]: 1 -> 2"]
    );
    // Same fields, another type: the type change is reported, then the fields.
    let old = s("a::Regs", vec![("rip", Value::U64(1))]);
    let new = s("b::Regs", vec![("rip", Value::U64(2))]);
    assert_eq!(
        lines(&old, &new),
        [
            "<root>: struct a::Regs -> struct b::Regs",
            "rip: 0x1 -> 0x2"
        ]
    );
}

#[test]
fn test_schema_value_diff_fields_of_other_data_versions_are_absent() {
    let old = s("a::Clock", vec![("clock", Value::U64(5))]);
    let new = s(
        "a::Clock",
        vec![("clock", Value::U64(5)), ("realtime", Value::U64(7))],
    );
    let differences = diff_values(&old, &new);
    assert_eq!(
        differences,
        [ValueDifference {
            path: "realtime".to_owned(),
            change: Change::Added {
                new: "0x7".to_owned()
            },
        }]
    );
    assert_eq!(lines(&new, &old), ["realtime: 0x7 -> absent"]);
}

#[test]
fn test_schema_value_diff_maps_by_key_and_sets_by_element() {
    let map = |entries: &[(u32, u64)]| {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::U32(*k), Value::U64(*v)))
                .collect(),
        )
    };
    // Hash maps come in any order: the same entries in another order are equal.
    assert!(diff_values(&map(&[(1, 1), (2, 2)]), &map(&[(2, 2), (1, 1)])).is_empty());
    assert_eq!(
        lines(&map(&[(1, 1), (2, 2)]), &map(&[(3, 3), (1, 9)])),
        [
            "[1]: 0x1 -> 0x9",
            "[2]: 0x2 -> absent",
            "[3]: absent -> 0x3"
        ]
    );
    let set = |items: &[u16]| Value::Set(items.iter().map(|i| Value::U16(*i)).collect());
    assert!(diff_values(&set(&[1, 2, 3]), &set(&[3, 1, 2])).is_empty());
    assert_eq!(
        lines(&set(&[1, 2]), &set(&[2, 40])),
        ["[1]: 1 -> absent", "[40 (0x28)]: absent -> 40 (0x28)"]
    );
}

#[test]
fn test_schema_value_diff_summarises_bytes_by_page_and_long_runs() {
    let old = vec![0u8; 3 * 4096 + 10];
    let mut new = old.clone();
    for offset in [5000, 5001, 8200, 12290] {
        new[offset] = 1;
    }
    assert_eq!(
        lines(&Value::Bytes(old.clone()), &Value::Bytes(new.clone())),
        ["<root>: 4 byte(s) differ in 3 page(s) of 4096 bytes, first at offset 0x1388"]
    );
    new.push(0);
    assert_eq!(
        lines(&Value::Bytes(old), &Value::Bytes(new)),
        [
            "<root>: length 12298 -> 12299",
            "<root>: 4 byte(s) differ in 3 page(s) of 4096 bytes, first at offset 0x1388"
        ]
    );
    // A short byte string reads whole.
    assert_eq!(
        lines(&Value::Bytes(vec![1, 2]), &Value::Bytes(vec![1, 3])),
        ["<root>: [0102] -> [0103]"]
    );
    // Many differing scalars: one line.
    let old = Value::Seq((0..1024u32).map(Value::U32).collect());
    let new = Value::Seq((0..1024u32).map(|i| Value::U32(i / 2 * 2)).collect());
    assert_eq!(
        lines(&old, &new),
        ["<root>: 512 values differ, first [1]: 1 -> 0"]
    );
    // A few: one line each; a longer sequence: its length, then the appended elements.
    let old = Value::Seq(vec![Value::U32(1), Value::U32(2)]);
    let new = Value::Seq(vec![Value::U32(1), Value::U32(3), Value::U32(4)]);
    assert_eq!(
        lines(&old, &new),
        ["<root>: length 2 -> 3", "[1]: 2 -> 3", "[2]: absent -> 4"]
    );
}

#[test]
fn test_schema_value_diff_of_floats_compares_bits() {
    assert!(diff_values(&Value::F64(f64::NAN), &Value::F64(f64::NAN)).is_empty());
    assert_eq!(
        lines(&Value::F64(0.0), &Value::F64(-0.0)),
        ["<root>: 0 -> -0"]
    );
}

#[test]
fn test_schema_value_json_rendering_of_every_kind() {
    let value = s(
        "a::All",
        vec![
            ("small", Value::U32(u32::MAX)),
            ("signed", Value::I32(-3)),
            ("reg", Value::U64(0x1000)),
            ("wide", Value::U128(u128::MAX)),
            ("offset", Value::I64(i64::MIN)),
            ("ratio", Value::F32(0.5)),
            ("nan", Value::F64(f64::NAN)),
            ("inf", Value::F64(f64::NEG_INFINITY)),
            ("letter", Value::Char('é')),
            ("bytes", Value::Bytes(vec![0, 0xab])),
            ("pair", Value::Tuple(vec![Value::U8(1), Value::Bool(true)])),
            ("set", Value::Set(vec![Value::I8(-1)])),
            ("map", Value::Map(vec![(Value::U32(16), Value::U64(99))])),
            ("none", Value::Option(None)),
            ("some", Value::Option(Some(Box::new(Value::U16(7))))),
            ("unit", Value::Unit),
            ("plain", e("Nothing", 0, vec![])),
            ("newtype", e("Exception", 1, vec![Value::U8(13)])),
            (
                "tuple",
                e("Pair", 2, vec![Value::U8(1), Value::Option(None)]),
            ),
            (
                "named",
                Value::Enum {
                    type_name: "a::Event".to_owned(),
                    variant: "Irq".to_owned(),
                    index: 3,
                    fields: vec![("vector".to_owned(), Value::U8(32))],
                },
            ),
            (
                "wrapper",
                s("a::Id", vec![("0", Value::String("x".to_owned()))]),
            ),
            (
                "point",
                s("a::Point", vec![("0", Value::I16(1)), ("1", Value::I16(2))]),
            ),
        ],
    );
    let json = value.to_json();
    assert_eq!(
        json,
        serde_json::json!({
            "small": 4_294_967_295_u32,
            "signed": -3,
            "reg": "0x1000",
            "wide": "0xffffffffffffffffffffffffffffffff",
            "offset": "-9223372036854775808",
            "ratio": 0.5,
            "nan": "NaN",
            "inf": "-inf",
            "letter": "é",
            "bytes": "00ab",
            "pair": [1, true],
            "set": [-1],
            "map": [[16, "0x63"]],
            "none": null,
            "some": 7,
            "unit": null,
            "plain": "Nothing",
            "newtype": {"Exception": 13},
            "tuple": {"Pair": [1, null]},
            "named": {"Irq": {"vector": 32}},
            "wrapper": "x",
            "point": [1, 2],
        })
    );
    // Fields keep their order in the text.
    let text = json.to_string();
    assert!(text.find("\"small\"") < text.find("\"reg\""));
    assert!(text.find("\"reg\"") < text.find("\"bytes\""));

    let summarised =
        Value::Bytes(vec![7; 100]).to_json_with(&JsonOptions::new().summarize_bytes_over(64));
    assert_eq!(summarised["len"], 100);
    assert_eq!(
        summarised["crc64"],
        format!("{:#018x}", versionize::crc::crc64(&[7; 100]))
    );
    let mut out = Vec::new();
    Value::U64(1)
        .to_json_writer(&mut out, &JsonOptions::new())
        .unwrap();
    assert_eq!(out, b"\"0x1\"\n");
}

#[derive(Versionize)]
struct Counter {
    ticks: u64,
    #[version(start = 2)]
    wraps: u16,
}

/// Two snapshots of different data versions, each decoded with the schema of its own app
/// version, differ only in what one version does not carry.
#[test]
fn test_schema_value_diff_of_two_data_versions_of_one_state() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Counter::type_id(), 2);
    let counter = Counter {
        ticks: u64::MAX,
        wraps: 3,
    };
    let decode = |app| {
        let mut bytes = Vec::new();
        counter.serialize(&mut bytes, &map, app).unwrap();
        let schema = export::<Counter>(&map, app).unwrap();
        decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap()
    };
    assert_eq!(lines(&decode(1), &decode(2)), ["wraps: absent -> 3"]);
}
