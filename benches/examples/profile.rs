//! Runs one benchmark case in a loop, for a profiler that counts instructions.
//!
//! ```text
//! cargo build --profile bench -p benchmarks --example profile
//! valgrind --tool=callgrind target/release/examples/profile array_u8_4k_decode 1000
//! ```
//!
//! Cases: `encode_latest`, `encode_older`, `decode_latest`, `encode_4`, `encode_1000`,
//! `decode_4`, `decode_1000`, `vec_u8_4k_decode`, `array_u8_4k_decode`, `save_crc`,
//! `save_without_crc`, `crc64_payload`.

use std::hint::black_box;

use benchmarks::{version_map, ArrayField, MicrovmState, VecField};
use snapshot::Snapshot;
use versionize::{VersionMap, Versionize};

fn encode<T: Versionize>(value: &T, map: &VersionMap, app_version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .serialize(&mut out, map, app_version)
        .expect("encodes");
    out
}

fn repeat(iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations {
        f();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "encode_latest".to_owned());
    let iterations: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let state = MicrovmState::bench_payload();
    let mut out = Vec::with_capacity(256 * 1024);
    let encode_with = |map: &VersionMap, version: u16, out: &mut Vec<u8>| {
        out.clear();
        state.serialize(out, map, version).expect("encodes");
    };
    let decode_with = |map: &'static VersionMap, version: u16| {
        let bytes = encode(&state, map, version);
        move || {
            black_box(
                MicrovmState::deserialize(&mut bytes.as_slice(), map, version).expect("decodes"),
            );
        }
    };
    let map4: &'static VersionMap = Box::leak(Box::new(version_map(4)));
    let map1000: &'static VersionMap = Box::leak(Box::new(version_map(1000)));
    match case.as_str() {
        "encode_latest" | "encode_4" => repeat(iterations, || encode_with(map4, 4, &mut out)),
        "encode_older" => repeat(iterations, || encode_with(map4, 1, &mut out)),
        "encode_1000" => repeat(iterations, || encode_with(map1000, 1000, &mut out)),
        "decode_latest" | "decode_4" => repeat(iterations, decode_with(map4, 4)),
        "decode_1000" => repeat(iterations, decode_with(map1000, 1000)),
        "vec_u8_4k_decode" => {
            let map = VersionMap::new();
            let bytes = encode(&VecField::new(1, 4096), &map, 1);
            repeat(iterations, || {
                black_box(VecField::deserialize(&mut bytes.as_slice(), &map, 1).expect("decodes"));
            });
        }
        "array_u8_4k_decode" => {
            let map = VersionMap::new();
            let bytes = encode(&ArrayField::<4096>::new(1), &map, 1);
            repeat(iterations, || {
                black_box(
                    ArrayField::<4096>::deserialize(&mut bytes.as_slice(), &map, 1)
                        .expect("decodes"),
                );
            });
        }
        "save_crc" | "save_without_crc" => {
            let mut snapshot = Snapshot::new(map4.clone(), 4);
            let crc = case == "save_crc";
            repeat(iterations, || {
                out.clear();
                if crc {
                    snapshot.save(&mut out, &state).expect("saves");
                } else {
                    snapshot.save_without_crc(&mut out, &state).expect("saves");
                }
            });
        }
        "crc64_payload" => {
            let bytes = encode(&state, map4, 4);
            repeat(iterations, || {
                black_box(versionize::crc::crc64(black_box(&bytes)));
            });
        }
        other => {
            eprintln!("unknown case {other}");
            std::process::exit(2);
        }
    }
    black_box(out.len());
}
