//! The shared chunk store: round trips, deduplication across snapshots, removal and garbage
//! collection, and the controls (a corrupt or missing chunk, a damaged manifest, bad names).

mod common;
mod memory_support;

use common::TempDir;
use kvm_state::{ChunkStore, GuestMemoryMapping, MemoryError, DEFAULT_CHUNK_SIZE, PAGE_SIZE};
use memory_support::{clean_bitmap, dirty_pages, flip_byte, patterned, set_len, Rng};

const MIB: u64 = 1 << 20;

fn guest(seed: u64) -> Vec<GuestMemoryMapping> {
    vec![
        patterned(0, 8 * MIB, 5, seed),
        patterned(1 << 30, 2 * MIB, 3, seed + 1),
    ]
}

fn regions(memory: &[GuestMemoryMapping]) -> Vec<kvm_state::GuestRegionBytes<'_>> {
    memory.iter().map(GuestMemoryMapping::region).collect()
}

fn assert_same(restored: &[GuestMemoryMapping], memory: &[GuestMemoryMapping]) {
    assert_eq!(restored.len(), memory.len());
    for (r, m) in restored.iter().zip(memory) {
        assert_eq!(
            (r.guest_phys_addr(), r.size()),
            (m.guest_phys_addr(), m.size())
        );
        assert!(
            r.as_slice() == m.as_slice(),
            "region {:#x} differs",
            m.guest_phys_addr()
        );
    }
}

/// Every chunk file of the store.
fn chunk_files(store: &ChunkStore) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for sub in std::fs::read_dir(store.root().join("chunks")).unwrap() {
        for entry in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn test_chunk_store_round_trip_and_dedup() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path().join("store")).unwrap();
    let memory = guest(1);
    let first = store.save("a", &regions(&memory)).unwrap();
    assert_eq!(first.memory_bytes, 10 * MIB);
    assert_eq!(first.chunks, 10 * MIB / DEFAULT_CHUNK_SIZE);
    // Every chunk holds filled pages except none: the stride-5 and stride-3 patterns touch
    // every 64 KiB chunk, so each is distinct.
    assert_eq!(first.new_chunks, first.chunks);
    assert_chunk_files(&store, first.new_chunks);
    assert_same(&store.load("a").unwrap(), &memory);

    // An unchanged guest adds only its manifest.
    let second = store.save("b", &regions(&memory)).unwrap();
    assert_eq!(second.new_chunks, 0);
    let manifest_len = std::fs::metadata(store.root().join("snapshots/b.manifest"))
        .unwrap()
        .len();
    assert_eq!(second.new_bytes, manifest_len);
    assert!(second.new_bytes * 100 < second.memory_bytes, "{second:?}");

    // A similar guest adds the chunks it changed.
    let mut changed = guest(1);
    let mut rng = Rng::new(2);
    let mut bitmap = clean_bitmap(&changed[0]);
    dirty_pages(&mut changed[0], &mut bitmap, 1, &mut rng);
    let third = store.save("c", &regions(&changed)).unwrap();
    assert_eq!(third.new_chunks, 1);
    assert_eq!(third.new_bytes, DEFAULT_CHUNK_SIZE + manifest_len);
    assert_same(&store.load("c").unwrap(), &changed);
    assert_eq!(store.snapshots().unwrap(), ["a", "b", "c"]);
}

fn assert_chunk_files(store: &ChunkStore, count: u64) {
    assert_eq!(chunk_files(store).len() as u64, count);
}

#[test]
fn test_chunk_store_zero_memory_is_one_chunk() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    let zero = vec![GuestMemoryMapping::anonymous(0, 16 * MIB).unwrap()];
    let stats = store.save("zero", &regions(&zero)).unwrap();
    assert_eq!((stats.chunks, stats.new_chunks), (256, 1));
    assert_same(&store.load("zero").unwrap(), &zero);
}

#[test]
fn test_chunk_store_remove_and_gc() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    let a = guest(1);
    let b = guest(100);
    store.save("a", &regions(&a)).unwrap();
    store.save("a2", &regions(&a)).unwrap();
    let b_stats = store.save("b", &regions(&b)).unwrap();
    let before = chunk_files(&store).len() as u64;

    // Nothing to collect while every chunk is named.
    let stats = store.gc().unwrap();
    assert_eq!((stats.removed, stats.kept), (0, before));

    // "a" is still named by "a2".
    store.remove("a").unwrap();
    assert_eq!(store.gc().unwrap().removed, 0);
    assert!(matches!(
        store.load("a"),
        Err(MemoryError::NoSnapshot { .. })
    ));

    store.remove("a2").unwrap();
    // Leftovers of interrupted saves: a chunk and a manifest being written.
    let stray_chunk = chunk_files(&store)[0].with_extension("0123.tmp");
    std::fs::write(&stray_chunk, b"partial").unwrap();
    let stray_manifest = store.root().join("snapshots/.c.manifest.0123.tmp");
    std::fs::write(&stray_manifest, b"partial!").unwrap();
    let stats = store.gc().unwrap();
    assert_eq!(stats.kept, b_stats.new_chunks);
    assert_eq!(stats.removed, before - b_stats.new_chunks + 2);
    assert_eq!(
        stats.freed_bytes,
        (stats.removed - 2) * DEFAULT_CHUNK_SIZE + 15
    );
    assert!(!stray_chunk.exists() && !stray_manifest.exists());
    assert_same(&store.load("b").unwrap(), &b);
    assert_eq!(store.snapshots().unwrap(), ["b"]);
    assert!(matches!(
        store.remove("a"),
        Err(MemoryError::NoSnapshot { .. })
    ));
}

#[test]
fn test_chunk_store_corrupt_chunk_detected() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    let memory = guest(1);
    store.save("a", &regions(&memory)).unwrap();
    let files = chunk_files(&store);
    flip_byte(&files[3], 100);
    match store.load("a") {
        Err(MemoryError::ChunkCorrupt { id, snapshot }) => {
            assert!(files[3].ends_with(&id));
            assert_eq!(snapshot, "a");
        }
        other => panic!("expected ChunkCorrupt, got {:?}", other.map(|m| m.len())),
    }
    flip_byte(&files[3], 100);
    set_len(&files[3], PAGE_SIZE);
    assert!(matches!(
        store.load("a"),
        Err(MemoryError::ChunkCorrupt { .. })
    ));
    // A save of the same memory replaces a chunk of the wrong length (as a crash before
    // the syncfs can leave it).
    assert_eq!(store.save("c", &regions(&memory)).unwrap().new_chunks, 1);
    assert_same(&store.load("a").unwrap(), &memory);
    std::fs::remove_file(&files[3]).unwrap();
    let err = store.load("a").map(|_| ()).unwrap_err();
    assert!(matches!(err, MemoryError::ChunkMissing { .. }), "{err}");
    // A new save of the same memory writes the missing chunk again.
    assert_eq!(store.save("b", &regions(&memory)).unwrap().new_chunks, 1);
    assert_same(&store.load("a").unwrap(), &memory);
}

#[test]
fn test_chunk_store_damaged_manifest_refused() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    let memory = guest(1);
    store.save("a", &regions(&memory)).unwrap();
    let manifest = store.root().join("snapshots/a.manifest");
    let len = std::fs::metadata(&manifest).unwrap().len();
    // A byte of a chunk id: the manifest checksum fails, and gc refuses to collect.
    flip_byte(&manifest, 24 + 2 * 24 + 5);
    assert!(matches!(store.load("a"), Err(MemoryError::Format { .. })));
    let before = chunk_files(&store).len();
    assert!(store.gc().is_err());
    assert_eq!(chunk_files(&store).len(), before);
    flip_byte(&manifest, 24 + 2 * 24 + 5);
    // Truncated manifests.
    for cut in [len - 1, len - 40, 10] {
        set_len(&manifest, cut);
        let err = store.load("a").map(|_| ()).unwrap_err();
        assert!(
            matches!(err, MemoryError::Format { .. } | MemoryError::Length { .. }),
            "length {cut}: {err}"
        );
    }
}

#[test]
fn test_chunk_store_names_and_sizes() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    let memory = vec![patterned(0, MIB, 1, 1)];
    for name in ["", "../x", "a/b", ".hidden", &"n".repeat(129), "sp ace"] {
        assert!(
            matches!(
                store.save(name, &regions(&memory)),
                Err(MemoryError::SnapshotName { .. })
            ),
            "{name:?}"
        );
    }
    assert!(store.snapshots().unwrap().is_empty());
    for size in [0, 1000, 65 * MIB] {
        assert!(matches!(
            ChunkStore::with_chunk_size(dir.path(), size),
            Err(MemoryError::Region { .. })
        ));
    }
    // A store with 2 MiB chunks reads back regions that are not a multiple of the chunk.
    let big = ChunkStore::with_chunk_size(dir.path(), 2 * MIB).unwrap();
    let odd = vec![patterned(0, 3 * MIB + PAGE_SIZE, 1, 4)];
    let stats = big.save("odd", &regions(&odd)).unwrap();
    assert_eq!(stats.chunks, 2);
    assert_same(&store.load("odd").unwrap(), &odd);
}

/// Damaged manifests, each one byte flipped or cut short at a random place: every load is
/// refused (the manifest has no byte the checksum does not cover) and never panics.
#[test]
fn test_chunk_manifest_mutations_refused() {
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path()).unwrap();
    store.save("a", &regions(&guest(1))).unwrap();
    let manifest = store.root().join("snapshots/a.manifest");
    let original = std::fs::read(&manifest).unwrap();
    let mut rng = Rng::new(5);
    for round in 0..300 {
        let mut bytes = original.clone();
        if round % 3 == 0 {
            bytes.truncate(rng.below(original.len() as u64) as usize);
        } else {
            let at = rng.below(original.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(&manifest, &bytes).unwrap();
        let err = store.load("a").map(|_| ()).unwrap_err();
        assert!(
            matches!(err, MemoryError::Format { .. } | MemoryError::Length { .. }),
            "round {round}: {err}"
        );
    }
}
