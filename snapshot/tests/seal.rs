//! Sealed files: round trips, and every way a sealed file can be wrong (a changed byte at
//! every position, a cut at every length, chunks swapped or taken from another file, bytes
//! appended, a wrong key, a file of another snapshot) named before any byte is released.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use snapshot::{
    arch_of_magic, load_sealed, open_bytes, open_file, open_reader, peek_sealed_header,
    save_sealed, seal_bytes, seal_file, seal_writer, SealAlgorithm, SealKey, SealOptions,
    SealedFileRef, Snapshot, SnapshotError, SEAL_MAGIC, SEAL_TAG_LEN,
};
use versionize::VersionMap;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("seal-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CHUNK: u32 = 64;

fn key(seed: u8) -> SealKey {
    SealKey::from_bytes([seed; 32])
}

/// A payload whose bytes differ from chunk to chunk (so swapped chunks differ).
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 64) as u8).collect()
}

fn options(algorithm: SealAlgorithm) -> SealOptions {
    SealOptions::new(algorithm)
        .with_chunk_size(CHUNK)
        .with_label("state")
}

/// Opens `sealed` through the streaming reader (no length check up front).
fn stream_open(key: &SealKey, sealed: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    let mut reader = open_reader(key, sealed, None)?;
    let mut out = Vec::new();
    match reader.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err(*e
            .into_inner()
            .expect("a seal error")
            .downcast::<SnapshotError>()
            .expect("a SnapshotError")),
    }
}

/// Header length of a file sealed by `options` with the label "state" and no companions.
fn header_len(sealed: &[u8], key: &SealKey) -> usize {
    open_reader(key, sealed, None).unwrap().header().header_len as usize
}

#[test]
fn test_seal_round_trip_every_algorithm_and_chunk_boundary() {
    let key = key(1);
    for algorithm in SealAlgorithm::ALL {
        for len in [0, 1, 63, 64, 65, 127, 128, 129, 1000] {
            let payload = payload(len);
            let (sealed, file) = seal_bytes(&key, &options(algorithm), &payload).unwrap();
            let chunks = len.div_ceil(CHUNK as usize).max(1);
            assert_eq!(
                sealed.len(),
                header_len(&sealed, &key) + len + chunks * SEAL_TAG_LEN,
                "{algorithm} {len}"
            );
            let (header, opened) = open_bytes(&key, &sealed, Some(&file)).unwrap();
            assert_eq!(opened, payload, "{algorithm} {len}");
            assert_eq!(header.file_ref(), file);
            assert_eq!(header.algorithm, algorithm);
            assert_eq!(header.chunk_count(), chunks as u64);
            assert_eq!(stream_open(&key, &sealed).unwrap(), payload);
            // Encryption hides the payload; authentication only leaves it readable.
            if len >= 64 {
                let clear = sealed.windows(32).any(|w| w == &payload[..32]);
                assert_eq!(clear, !algorithm.encrypts(), "{algorithm} {len}");
            }
        }
    }
}

#[test]
fn test_seal_same_payload_twice_gives_different_files() {
    let key = key(1);
    let payload = payload(100);
    let options = options(SealAlgorithm::ChaCha20Poly1305);
    let (a, file_a) = seal_bytes(&key, &options, &payload).unwrap();
    let (b, file_b) = seal_bytes(&key, &options, &payload).unwrap();
    assert_ne!(file_a.file_id, file_b.file_id);
    let start = header_len(&a, &key);
    assert_ne!(
        a[start..],
        b[start..],
        "fresh file id, fresh keys, fresh ciphertext"
    );
}

/// What changing the byte at `offset` of a sealed file must give.
fn expected_for_tampered(offset: usize, header_len: usize) -> &'static str {
    match offset {
        0..=7 => "not sealed",
        8..=9 => "unsupported",
        24..=39 => "wrong key",
        _ if offset < header_len => "header",
        _ => "chunk",
    }
}

fn class(error: &SnapshotError) -> &'static str {
    match error {
        SnapshotError::NotSealed { .. } => "not sealed",
        SnapshotError::SealUnsupported { .. } => "unsupported",
        SnapshotError::WrongKey { .. } => "wrong key",
        SnapshotError::Tampered { chunk: None, .. } => "header",
        SnapshotError::Tampered { chunk: Some(_), .. } => "chunk",
        SnapshotError::Truncated { .. } => "truncated",
        SnapshotError::Extended { .. } => "extended",
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn test_seal_every_byte_changed_is_named() {
    let key = key(2);
    // Empty (one empty chunk), exactly one chunk, and four chunks, the last one short.
    for (algorithm, len) in SealAlgorithm::ALL
        .into_iter()
        .flat_map(|a| [0, CHUNK as usize, 3 * CHUNK as usize + 10].map(|len| (a, len)))
    {
        let payload = payload(len);
        let (sealed, _) = seal_bytes(&key, &options(algorithm), &payload).unwrap();
        let header_len = header_len(&sealed, &key);
        let record = CHUNK as usize + SEAL_TAG_LEN;
        let chunk_of = |offset: usize| ((offset - header_len) / record) as u64;
        for offset in 0..sealed.len() {
            for flip in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[offset] ^= flip;
                let error = open_bytes(&key, &bad, None).unwrap_err();
                let expected = expected_for_tampered(offset, header_len);
                let found = class(&error);
                // The length of the header's variable part, changed, may point past the end.
                let length_field = (72..76).contains(&offset) && found == "truncated";
                assert!(
                    found == expected || length_field,
                    "{algorithm} {len}: byte {offset} ^ {flip:#x}: {error}"
                );
                if let SnapshotError::Tampered {
                    chunk: Some(chunk), ..
                } = error
                {
                    assert_eq!(chunk, chunk_of(offset), "{algorithm}: byte {offset}");
                }
                // The streaming reader names the same part.
                let streamed = stream_open(&key, &bad).unwrap_err();
                assert_eq!(
                    class(&streamed),
                    found,
                    "{algorithm}: byte {offset}: {streamed}"
                );
            }
        }
    }
}

#[test]
fn test_seal_every_truncation_is_named() {
    let key = key(3);
    for algorithm in SealAlgorithm::ALL {
        for len in [
            0,
            CHUNK as usize,
            2 * CHUNK as usize,
            2 * CHUNK as usize + 5,
        ] {
            let (sealed, _) = seal_bytes(&key, &options(algorithm), &payload(len)).unwrap();
            for cut in 0..sealed.len() {
                let short = &sealed[..cut];
                let error = open_bytes(&key, short, None).unwrap_err();
                let expected = if cut == 0 { "not sealed" } else { "truncated" };
                assert_eq!(
                    class(&error),
                    expected,
                    "{algorithm} {len} cut at {cut}: {error}"
                );
                let streamed = stream_open(&key, short).unwrap_err();
                assert_eq!(class(&streamed), expected, "{algorithm} {len} cut at {cut}");
                if cut > 0 {
                    assert!(error.to_string().contains("truncated"), "{error}");
                }
            }
        }
    }
}

#[test]
fn test_seal_appended_bytes_are_named() {
    let key = key(4);
    for algorithm in SealAlgorithm::ALL {
        let (mut sealed, _) =
            seal_bytes(&key, &options(algorithm), &payload(2 * CHUNK as usize)).unwrap();
        sealed.push(0);
        let error = open_bytes(&key, &sealed, None).unwrap_err();
        assert_eq!(class(&error), "extended", "{error}");
        assert_eq!(class(&stream_open(&key, &sealed).unwrap_err()), "extended");
        // A whole chunk appended (its last copy repeated).
        sealed.pop();
        let record = CHUNK as usize + SEAL_TAG_LEN;
        let last = sealed[sealed.len() - record..].to_vec();
        sealed.extend_from_slice(&last);
        assert_eq!(
            class(&open_bytes(&key, &sealed, None).unwrap_err()),
            "extended"
        );
        assert_eq!(class(&stream_open(&key, &sealed).unwrap_err()), "extended");
    }
}

#[test]
fn test_seal_reordered_dropped_and_foreign_chunks_are_tampered() {
    let key = key(5);
    let record = CHUNK as usize + SEAL_TAG_LEN;
    for algorithm in SealAlgorithm::ALL {
        let payload = payload(4 * CHUNK as usize);
        let (sealed, _) = seal_bytes(&key, &options(algorithm), &payload).unwrap();
        let start = header_len(&sealed, &key);
        let chunk = |i: usize| start + i * record..start + (i + 1) * record;

        // Chunks 1 and 2 swapped.
        let mut swapped = sealed.clone();
        swapped[chunk(1)].copy_from_slice(&sealed[chunk(2)]);
        swapped[chunk(2)].copy_from_slice(&sealed[chunk(1)]);
        for error in [
            open_bytes(&key, &swapped, None).unwrap_err(),
            stream_open(&key, &swapped).unwrap_err(),
        ] {
            assert!(
                matches!(error, SnapshotError::Tampered { chunk: Some(1), .. }),
                "{algorithm}: {error}"
            );
        }

        // The last chunk dropped: the file is short of what its header says, and a reader
        // that does not know the length finds chunk 2 marked as not the last.
        let dropped = &sealed[..chunk(3).start];
        assert_eq!(
            class(&open_bytes(&key, dropped, None).unwrap_err()),
            "truncated"
        );
        assert_eq!(class(&stream_open(&key, dropped).unwrap_err()), "truncated");

        // A middle chunk dropped and the last one moved up.
        let mut shifted = sealed[..chunk(1).start].to_vec();
        shifted.extend_from_slice(&sealed[chunk(2).start..]);
        assert_eq!(
            class(&open_bytes(&key, &shifted, None).unwrap_err()),
            "truncated"
        );
        let error = stream_open(&key, &shifted).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Tampered { chunk: Some(1), .. }),
            "{error}"
        );

        // Chunk 1 of another file sealed with the same key and options.
        let (other, _) = seal_bytes(&key, &options(algorithm), &payload).unwrap();
        let mut spliced = sealed.clone();
        spliced[chunk(1)].copy_from_slice(&other[chunk(1)]);
        let error = open_bytes(&key, &spliced, None).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Tampered { chunk: Some(1), .. }),
            "{error}"
        );

        // The other file's header on this file's chunks.
        let mut grafted = other[..start].to_vec();
        grafted.extend_from_slice(&sealed[start..]);
        let error = open_bytes(&key, &grafted, None).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Tampered { chunk: Some(0), .. }),
            "{error}"
        );
    }
}

#[test]
fn test_seal_wrong_key_is_named_with_both_ids() {
    let (right, wrong) = (key(6), key(7));
    for algorithm in SealAlgorithm::ALL {
        let (sealed, _) = seal_bytes(&right, &options(algorithm), &payload(10)).unwrap();
        let error = open_bytes(&wrong, &sealed, None).unwrap_err();
        let SnapshotError::WrongKey {
            ref sealed_with,
            ref given,
            ..
        } = error
        else {
            panic!("{error}");
        };
        assert_eq!(sealed_with, &right.id().to_string());
        assert_eq!(given, &wrong.id().to_string());
        assert_eq!(
            error.to_string(),
            format!(
                "wrong key: the file was sealed with key id {}, this key's id is {}",
                right.id(),
                wrong.id()
            )
        );
    }
}

#[test]
fn test_seal_key_debug_shows_only_the_id() {
    let key = key(0xab);
    let debug = format!("{key:?}");
    assert!(debug.contains(&key.id().to_string()), "{debug}");
    assert!(!debug.contains("abab"), "{debug}");
    assert!(!debug.contains("171"), "{debug}");
}

#[test]
fn test_seal_plain_snapshot_and_garbage_are_not_sealed() {
    let mut plain = Vec::new();
    Snapshot::new(VersionMap::new(), 1)
        .save(&mut plain, &7u64)
        .unwrap();
    let error = open_bytes(&key(1), &plain, None).unwrap_err();
    assert!(matches!(error, SnapshotError::NotSealed { .. }), "{error}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            error.to_string(),
            "not a sealed file: a plain x86_64 snapshot"
        );
    }
    let error = open_bytes(&key(1), b"hello, world", None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "not a sealed file: magic 0x77202c6f6c6c6568"
    );
    let error = open_bytes(&key(1), b"", None).unwrap_err();
    assert_eq!(error.to_string(), "not a sealed file: empty");
    // No Firecracker magic is the seal magic, and a plain load refuses a sealed file.
    assert_eq!(arch_of_magic(u64::from_le_bytes(SEAL_MAGIC)), None);
    let (sealed, _) = seal_bytes(&key(1), &options(SealAlgorithm::HmacSha256), &plain).unwrap();
    let loaded: Result<(u64, u16), _> =
        Snapshot::load(&mut &sealed[..], sealed.len(), VersionMap::new());
    assert!(matches!(loaded, Err(SnapshotError::InvalidMagic { .. })));
}

#[test]
fn test_seal_unknown_format_version_is_unsupported() {
    let key = key(1);
    let (mut sealed, _) = seal_bytes(&key, &options(SealAlgorithm::HmacSha256), b"x").unwrap();
    sealed[8] = 2;
    let error = open_bytes(&key, &sealed, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "sealed file format version 2 is not supported (this build reads 1)"
    );
}

#[test]
fn test_seal_writer_refuses_a_payload_of_another_length() {
    let key = key(1);
    let options = options(SealAlgorithm::ChaCha20Poly1305);
    let mut out = Vec::new();
    let mut writer = seal_writer(&key, &options, 10, &mut out).unwrap();
    writer.write_all(&[1; 9]).unwrap();
    let error = writer.finish().unwrap_err();
    assert_eq!(
        error.to_string(),
        "sealed payload declared as 10 bytes, 9 were written"
    );

    let mut out = Vec::new();
    let mut writer = seal_writer(&key, &options, 10, &mut out).unwrap();
    let error = writer.write_all(&[1; 11]).unwrap_err();
    let error = error
        .into_inner()
        .unwrap()
        .downcast::<SnapshotError>()
        .unwrap();
    assert!(
        matches!(*error, SnapshotError::SealLength { declared: 10, .. }),
        "{error}"
    );

    // A writer dropped before finishing leaves a file its reader calls truncated.
    let mut out = Vec::new();
    let mut writer = seal_writer(&key, &options, 1000, &mut out).unwrap();
    writer.write_all(&payload(300)).unwrap();
    drop(writer);
    assert_eq!(
        class(&open_bytes(&key, &out, None).unwrap_err()),
        "truncated"
    );
}

#[test]
fn test_seal_options_out_of_range_are_refused() {
    let key = key(1);
    for chunk in [0, 63, (16 << 20) + 1] {
        let options = SealOptions::new(SealAlgorithm::HmacSha256).with_chunk_size(chunk);
        let error = seal_bytes(&key, &options, b"x").unwrap_err();
        assert!(
            matches!(error, SnapshotError::SealOptions { .. }),
            "{error}"
        );
    }
    let options = SealOptions::new(SealAlgorithm::HmacSha256).with_label("l".repeat(65));
    let error = seal_bytes(&key, &options, b"x").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid seal options: label of 65 bytes, at most 64"
    );
}

/// Seals a state and its memory into `dir` as one snapshot: memory first, then the state
/// listing it.
fn seal_snapshot(key: &SealKey, dir: &TempDir, name: &str, memory: &[u8]) -> (PathBuf, PathBuf) {
    let plain_memory = dir.path(&format!("{name}.mem.plain"));
    std::fs::write(&plain_memory, memory).unwrap();
    let memory_path = dir.path(&format!("{name}.mem"));
    let options = SealOptions::new(SealAlgorithm::Aes256Gcm).with_chunk_size(4096);
    let memory_ref = seal_file(
        key,
        &options.clone().with_label("memory"),
        &plain_memory,
        &memory_path,
    )
    .unwrap();
    std::fs::remove_file(&plain_memory).unwrap();
    let mut state = Vec::new();
    Snapshot::new(VersionMap::new(), 1)
        .save(&mut state, &(name.len() as u64))
        .unwrap();
    let state_path = dir.path(&format!("{name}.state"));
    save_sealed(
        key,
        &options.with_label("state").with_companion(memory_ref),
        &state,
        &state_path,
    )
    .unwrap();
    (state_path, memory_path)
}

/// Opens a sealed snapshot: the state, then the memory file it lists.
fn open_snapshot(
    key: &SealKey,
    state: &Path,
    memory: &Path,
    memory_out: &Path,
) -> Result<(u64, Vec<u8>), SnapshotError> {
    let (header, state) = load_sealed(key, state, 1 << 20, None)?;
    let listed: SealedFileRef = header.companion("memory").cloned().expect("listed");
    open_file(key, memory, memory_out, Some(&listed))?;
    let (value, _): (u64, u16) = Snapshot::load(&mut &state[..], state.len(), VersionMap::new())?;
    Ok((value, std::fs::read(memory_out).unwrap()))
}

#[test]
fn test_seal_memory_file_of_another_snapshot_is_refused() {
    let dir = TempDir::new("companions");
    let key = key(8);
    let (state_a, memory_a) = seal_snapshot(&key, &dir, "a", &payload(10_000));
    let (state_b, memory_b) = seal_snapshot(&key, &dir, "bb", &payload(10_000));
    let out = dir.path("out.mem");
    assert_eq!(
        open_snapshot(&key, &state_a, &memory_a, &out).unwrap(),
        (1, payload(10_000))
    );
    std::fs::remove_file(&out).unwrap();

    // b's memory (authentic, same key, same length) under a's state.
    let error = open_snapshot(&key, &state_a, &memory_b, &out).unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnexpectedSealedFile { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: not the sealed memory file this snapshot lists: file id ",
            memory_b.display()
        )),
        "{message}"
    );
    assert!(!out.exists(), "nothing is written for a refused file");
    assert_eq!(open_snapshot(&key, &state_b, &memory_b, &out).unwrap().0, 2);
    std::fs::remove_file(&out).unwrap();

    // An older save of a's memory (rolled back) is refused as well.
    let (_, older_memory) = seal_snapshot(&key, &dir, "a-older", &payload(10_000));
    let error = open_snapshot(&key, &state_a, &older_memory, &out).unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnexpectedSealedFile { .. }),
        "{error}"
    );
}

#[test]
fn test_seal_open_file_leaves_nothing_for_a_bad_file() {
    let dir = TempDir::new("open-file");
    let key = key(9);
    let plain = dir.path("plain");
    std::fs::write(&plain, payload(50_000)).unwrap();
    let sealed = dir.path("sealed");
    let options = SealOptions::new(SealAlgorithm::ChaCha20Poly1305).with_chunk_size(4096);
    seal_file(&key, &options, &plain, &sealed).unwrap();
    let out = dir.path("out");
    open_file(&key, &sealed, &out, None).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), payload(50_000));
    std::fs::remove_file(&out).unwrap();

    // A byte of the last chunk changed: every chunk before it verified and streamed into
    // the temporary file, which is dropped.
    let mut bytes = std::fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    let error = open_file(&key, &sealed, &out, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: sealed chunk 12 fails authentication (tampered with, reordered or from another file)",
            sealed.display()
        )
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        2,
        "no temporary left"
    );

    // Truncated: named from the length, before any chunk is read.
    bytes[last] ^= 1;
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&sealed, &bytes).unwrap();
    let error = open_file(&key, &sealed, &out, None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: sealed file is truncated: ", sealed.display())),
        "{error}"
    );
    let error = load_sealed(&key, &sealed, u64::MAX, None).unwrap_err();
    assert!(matches!(error, SnapshotError::Truncated { .. }), "{error}");
    assert!(!out.exists());
}

#[test]
fn test_seal_load_sealed_refuses_a_payload_over_the_limit() {
    let dir = TempDir::new("limit");
    let key = key(10);
    let path = dir.path("state");
    save_sealed(
        &key,
        &options(SealAlgorithm::HmacSha256),
        &payload(1000),
        &path,
    )
    .unwrap();
    let error = load_sealed(&key, &path, 999, None).unwrap_err();
    assert!(
        matches!(
            error,
            SnapshotError::FileTooLarge {
                len: 1000,
                limit: 999,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        load_sealed(&key, &path, 1000, None).unwrap().1,
        payload(1000)
    );
}

#[test]
fn test_seal_peek_reads_the_header_without_the_key() {
    let key = key(11);
    let companion = SealedFileRef {
        label: "memory".into(),
        file_id: snapshot::SealFileId([7; 32]),
        payload_len: 4096,
    };
    let options = options(SealAlgorithm::Aes256Gcm).with_companion(companion.clone());
    let (sealed, file) = seal_bytes(&key, &options, &payload(100)).unwrap();
    let header = peek_sealed_header(&sealed[..]).unwrap();
    assert_eq!(header.file_ref(), file);
    assert_eq!(header.key_id, key.id());
    assert_eq!(header.companions, vec![companion]);
    assert_eq!(header.file_len(), sealed.len() as u64);
    assert!(matches!(
        peek_sealed_header(&b"plain"[..]),
        Err(SnapshotError::NotSealed { .. })
    ));
}

#[test]
fn test_seal_key_file_raw_and_hex_load_the_same_key() {
    let dir = TempDir::new("keys");
    let key = SealKey::generate().unwrap();
    let hex = dir.path("hex.key");
    key.write_key_file(&hex).unwrap();
    assert_eq!(
        std::fs::metadata(&hex).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(SealKey::from_key_file(&hex).unwrap().id(), key.id());
    // Never replaces a file.
    let error = key.write_key_file(&hex).unwrap_err();
    assert!(matches!(error, SnapshotError::File { .. }), "{error}");

    let raw = dir.path("raw.key");
    write_private(&raw, &[0x5a; 32]);
    assert_eq!(
        SealKey::from_key_file(&raw).unwrap().id(),
        SealKey::from_bytes([0x5a; 32]).id()
    );
    let upper = dir.path("upper.key");
    write_private(&upper, format!("  {}\r\n", "5A".repeat(32)).as_bytes());
    assert_eq!(
        SealKey::from_key_file(&upper).unwrap().id(),
        SealKey::from_bytes([0x5a; 32]).id()
    );
}

fn write_private(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn test_seal_key_file_of_the_wrong_size_content_or_mode_is_refused() {
    let dir = TempDir::new("bad-keys");
    let path = dir.path("k");
    for (bytes, problem) in [
        (
            vec![1u8; 31],
            "31 bytes: expected 32 raw bytes or 64 hex digits",
        ),
        (
            vec![1u8; 33],
            "33 bytes: expected 32 raw bytes or 64 hex digits",
        ),
        (vec![], "0 bytes: expected 32 raw bytes or 64 hex digits"),
        (
            b"ab".repeat(31),
            "62 bytes: expected 32 raw bytes or 64 hex digits",
        ),
        (
            vec![b'g'; 64],
            "64 characters that are not all hex digits: expected 32 raw bytes or 64 hex digits",
        ),
        (
            vec![0u8; 4096],
            "4096 bytes: expected 32 raw bytes or 64 hex digits",
        ),
    ] {
        write_private(&path, &bytes);
        let error = SealKey::from_key_file(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("key file {}: {problem}", path.display())
        );
    }
    write_private(&path, &[1; 32]);
    for mode in [0o640, 0o604, 0o660, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let error = SealKey::from_key_file(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "key file {}: mode {mode:04o} lets group or others access it (use 0600)",
                path.display()
            )
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    SealKey::from_key_file(&path).unwrap();
    let error = SealKey::from_key_file(dir.path("missing")).unwrap_err();
    assert!(matches!(error, SnapshotError::File { .. }), "{error}");
}

#[test]
fn test_seal_errors_are_one_line() {
    let other = key(13);
    let key = key(12);
    let (sealed, _) = seal_bytes(&key, &options(SealAlgorithm::HmacSha256), &payload(300)).unwrap();
    let mut errors = vec![
        open_bytes(&other, &sealed, None).unwrap_err(),
        open_bytes(&key, &sealed[..100], None).unwrap_err(),
        open_bytes(&key, b"plain", None).unwrap_err(),
    ];
    let mut bad = sealed.clone();
    bad[200] ^= 1;
    errors.push(open_bytes(&key, &bad, None).unwrap_err());
    for error in errors {
        let message = error.to_string();
        assert!(
            !message.contains('\n') && !message.ends_with('.'),
            "{message}"
        );
        assert_eq!(message, message.to_string().trim());
    }
}

#[test]
fn test_seal_reader_finish_checks_what_read_exact_leaves() {
    let key = key(14);
    let payload = payload(5 * CHUNK as usize);
    let (sealed, _) =
        seal_bytes(&key, &options(SealAlgorithm::ChaCha20Poly1305), &payload).unwrap();

    // read_exact stops at the payload's length: finish sees the appended byte.
    let mut extended = sealed.clone();
    extended.push(1);
    let mut reader = open_reader(&key, &extended[..], None).unwrap();
    let mut out = vec![0; payload.len()];
    reader.read_exact(&mut out).unwrap();
    assert_eq!(out, payload);
    let error = reader.finish().unwrap_err();
    assert!(matches!(error, SnapshotError::Extended { .. }), "{error}");

    // finish without reading verifies every chunk.
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let error = open_reader(&key, &bad[..], None)
        .unwrap()
        .finish()
        .unwrap_err();
    assert!(
        matches!(error, SnapshotError::Tampered { chunk: Some(4), .. }),
        "{error}"
    );
    let header = open_reader(&key, &sealed[..], None)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(header.payload_len, payload.len() as u64);

    let dir = TempDir::new("verify");
    let path = dir.path("sealed");
    std::fs::write(&path, &sealed).unwrap();
    snapshot::verify_sealed_file(&key, &path, None).unwrap();
    std::fs::write(&path, &bad).unwrap();
    let error = snapshot::verify_sealed_file(&key, &path, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: sealed chunk 4 fails authentication (tampered with, reordered or from another file)",
            path.display()
        )
    );
}

#[test]
fn test_seal_reader_never_leaves_unverified_bytes_in_the_callers_buffer() {
    let key = key(15);
    for algorithm in SealAlgorithm::ALL {
        let payload = payload(3 * CHUNK as usize);
        let (sealed, _) = seal_bytes(&key, &options(algorithm), &payload).unwrap();
        let start = header_len(&sealed, &key);
        let record = CHUNK as usize + SEAL_TAG_LEN;
        // Chunk 1's tag changed, then the file cut in the middle of chunk 2.
        let mut bad = sealed.clone();
        bad[start + 2 * record - 1] ^= 1;
        let cut = &sealed[..start + 2 * record + 10];
        for (input, failing) in [(&bad[..], 1usize), (cut, 2)] {
            let mut reader = open_reader(&key, input, None).unwrap();
            // Reads of a whole chunk or more verify in place in the caller's buffer.
            let mut out = vec![0xee; payload.len()];
            let mut filled = 0;
            let error = loop {
                match reader.read(&mut out[filled..]) {
                    Ok(0) => panic!("{algorithm}: end of file"),
                    Ok(n) => filled += n,
                    Err(e) => break e,
                }
            };
            assert_eq!(filled, failing * CHUNK as usize, "{algorithm}: {error}");
            assert_eq!(out[..filled], payload[..filled]);
            let chunk = &out[filled..filled + CHUNK as usize];
            assert!(
                chunk.iter().all(|&b| b == 0),
                "{algorithm}: unverified bytes of chunk {failing} left in the buffer"
            );
        }
    }
}

#[test]
fn test_seal_algorithm_names_round_trip_and_preferred_encrypts() {
    for algorithm in SealAlgorithm::ALL {
        assert_eq!(SealAlgorithm::from_name(algorithm.name()), Some(algorithm));
    }
    assert_eq!(SealAlgorithm::from_name("aes-128-gcm"), None);
    let preferred = SealAlgorithm::preferred_encryption();
    assert!(preferred.encrypts());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        assert_eq!(preferred, SealAlgorithm::Aes256Gcm);
    }
}

fn snapshot_file<'a>(
    label: &'a str,
    source: &'a Path,
    dest: &'a Path,
) -> snapshot::SnapshotFile<'a> {
    snapshot::SnapshotFile {
        label,
        source,
        dest,
    }
}

#[test]
fn test_seal_snapshot_files_open_all_or_nothing() {
    use snapshot::{open_snapshot_files, seal_snapshot_files};
    let dir = TempDir::new("set");
    let key = key(16);
    let options = SealOptions::new(SealAlgorithm::preferred_encryption()).with_chunk_size(4096);
    let p = |name: &str| dir.path(name);
    let mut state_ref = Vec::new();
    for (name, seed) in [("a", 1usize), ("b", 2)] {
        std::fs::write(p(&format!("{name}.state")), payload(100 + seed)).unwrap();
        std::fs::write(p(&format!("{name}.mem")), payload(10_000 * seed)).unwrap();
        std::fs::write(p(&format!("{name}.mem2")), payload(5_000 * seed)).unwrap();
        let (state, mem, mem2) = (
            p(&format!("{name}.state")),
            p(&format!("{name}.mem")),
            p(&format!("{name}.mem2")),
        );
        let (state_s, mem_s, mem2_s) = (
            p(&format!("{name}.state.sealed")),
            p(&format!("{name}.mem.sealed")),
            p(&format!("{name}.mem2.sealed")),
        );
        state_ref.push(
            seal_snapshot_files(
                &key,
                &options,
                snapshot_file("state", &state, &state_s),
                &[
                    snapshot_file("memory", &mem, &mem_s),
                    snapshot_file("memory.1", &mem2, &mem2_s),
                ],
            )
            .unwrap(),
        );
    }
    let (out_state, out_mem, out_mem2) = (p("out.state"), p("out.mem"), p("out.mem2"));
    let open = |state: &str, mem: &str, mem2: &str, expected: Option<&SealedFileRef>| {
        let (state, mem, mem2) = (p(state), p(mem), p(mem2));
        let result = open_snapshot_files(
            &key,
            snapshot_file("state", &state, &out_state),
            &[
                snapshot_file("memory", &mem, &out_mem),
                snapshot_file("memory.1", &mem2, &out_mem2),
            ],
            1 << 20,
            expected,
        );
        let outputs = [&out_state, &out_mem, &out_mem2].map(|p| p.exists());
        (result, outputs)
    };

    let (result, outputs) = open(
        "a.state.sealed",
        "a.mem.sealed",
        "a.mem2.sealed",
        Some(&state_ref[0]),
    );
    result.unwrap();
    assert_eq!(outputs, [true; 3]);
    assert_eq!(std::fs::read(&out_state).unwrap(), payload(101));
    assert_eq!(std::fs::read(&out_mem2).unwrap(), payload(5_000));
    for out in [&out_state, &out_mem, &out_mem2] {
        std::fs::remove_file(out).unwrap();
    }

    // The second memory file of b: the first was opened, and is removed again.
    let (result, outputs) = open("a.state.sealed", "a.mem.sealed", "b.mem2.sealed", None);
    let error = result.unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnexpectedSealedFile { ref label, .. } if label == "memory.1"),
        "{error}"
    );
    assert_eq!(outputs, [false; 3]);

    // b's state where a's is expected (a rollback or a substitution).
    let (result, outputs) = open(
        "b.state.sealed",
        "b.mem.sealed",
        "b.mem2.sealed",
        Some(&state_ref[0]),
    );
    assert!(matches!(
        result.unwrap_err(),
        SnapshotError::UnexpectedSealedFile { .. }
    ));
    assert_eq!(outputs, [false; 3]);

    // A listed file not given, and a file the state does not list.
    let (a_state, a_mem) = (p("a.state.sealed"), p("a.mem.sealed"));
    let error = open_snapshot_files(
        &key,
        snapshot_file("state", &a_state, &out_state),
        &[snapshot_file("memory", &a_mem, &out_mem)],
        1 << 20,
        None,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "sealed state {}: lists a file labelled memory.1 that was not given",
            a_state.display()
        )
    );
    let error = open_snapshot_files(
        &key,
        snapshot_file("state", &a_state, &out_state),
        &[snapshot_file("disk", &a_mem, &out_mem)],
        1 << 20,
        None,
    )
    .unwrap_err();
    assert!(
        error.to_string().ends_with(": lists no file labelled disk"),
        "{error}"
    );
    assert!(!out_state.exists() && !out_mem.exists());

    // Two files with one label are refused when sealing.
    let error = seal_snapshot_files(
        &key,
        &options,
        snapshot_file("state", &p("a.state"), &p("x.sealed")),
        &[
            snapshot_file("memory", &p("a.mem"), &p("y.sealed")),
            snapshot_file("memory", &p("a.mem2"), &p("z.sealed")),
        ],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid seal options: two files labelled memory"
    );
    assert!(!p("y.sealed").exists(), "refused before anything is sealed");
}
