//! Diff snapshots without KVM: a chain of diffs restores the same bytes as the memory it was
//! taken of, lazily and eagerly and merged; diffs on the wrong base, out of order, damaged
//! or truncated are refused; the page-hash fallback finds exactly the changed pages.

mod common;
mod memory_support;

use std::path::PathBuf;

use common::TempDir;
use kvm_state::{
    merge_memory_chain, read_memory_diff_info, restore_memory_chain, restore_memory_file,
    save_memory_diff, save_memory_file, DiffRegion, GuestMemoryMapping, MemoryDiffInfo,
    MemoryError, MemoryFileDescriptor, MemoryLayerId, PageHashes, RestoreMode, PAGE_SIZE,
};
use memory_support::{clean_bitmap, dirty_pages, fill_page, flip_byte, patterned, set_len, Rng};

const MIB: u64 = 1 << 20;

/// Memory, its base file, and two diffs taken after dirtying pages in between.
struct Chain {
    _dir: TempDir,
    memory: Vec<GuestMemoryMapping>,
    base_path: PathBuf,
    base: MemoryFileDescriptor,
    diffs: Vec<(PathBuf, MemoryDiffInfo)>,
    dir: PathBuf,
}

fn diff_of(
    path: &std::path::Path,
    base: MemoryLayerId,
    memory: &[GuestMemoryMapping],
    bitmaps: &[Vec<u64>],
) -> MemoryDiffInfo {
    let regions: Vec<DiffRegion<'_>> = memory
        .iter()
        .zip(bitmaps)
        .map(|(m, dirty)| DiffRegion {
            guest_phys_addr: m.guest_phys_addr(),
            bytes: m.as_slice(),
            dirty,
        })
        .collect();
    save_memory_diff(path, base, &regions).unwrap()
}

fn chain() -> Chain {
    let dir = TempDir::new("memory-diff");
    let mut memory = vec![
        patterned(0, 8 * MIB, 4, 1),
        patterned(1 << 30, 4 * MIB, 7, 2),
    ];
    let base_path = dir.path().join("base.mem");
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    let base = save_memory_file(&base_path, &regions).unwrap();
    let mut rng = Rng::new(3);
    let mut layer = base.layer;
    let mut diffs = Vec::new();
    for (step, count) in [20u64, 35].into_iter().enumerate() {
        let mut bitmaps: Vec<Vec<u64>> = memory.iter().map(clean_bitmap).collect();
        for (m, bitmap) in memory.iter_mut().zip(bitmaps.iter_mut()) {
            dirty_pages(m, bitmap, count, &mut rng);
        }
        let path = dir.path().join(format!("diff{}.mem", step + 1));
        let info = diff_of(&path, layer, &memory, &bitmaps);
        assert_eq!(info.base, layer);
        layer = info.layer;
        diffs.push((path, info));
    }
    let dir_path = dir.path().to_path_buf();
    Chain {
        _dir: dir,
        memory,
        base_path,
        base,
        diffs,
        dir: dir_path,
    }
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

fn paths(chain: &Chain, order: &[usize]) -> Vec<PathBuf> {
    order.iter().map(|&i| chain.diffs[i].0.clone()).collect()
}

#[test]
fn test_diff_chain_round_trip() {
    let chain = chain();
    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        let (restored, layer) =
            restore_memory_chain(&chain.base_path, &chain.base, &paths(&chain, &[0, 1]), mode)
                .unwrap();
        assert_same(&restored, &chain.memory);
        assert_eq!(layer, chain.diffs[1].1.layer);
    }
    // A diff holds only its pages (at most 20 + 20 distinct pages, plus a header page and
    // the trailer).
    let first = &chain.diffs[0].1;
    assert!(first.dirty_pages <= 40 && first.dirty_pages > 0);
    assert_eq!(
        first.file_len,
        PAGE_SIZE + first.dirty_pages * PAGE_SIZE + 8
    );
    assert_eq!(
        std::fs::metadata(&chain.diffs[0].0).unwrap().len(),
        first.file_len
    );
    assert_eq!(
        read_memory_diff_info(&chain.diffs[1].0).unwrap(),
        chain.diffs[1].1
    );
}

#[test]
fn test_diff_chain_of_none_is_the_base() {
    let chain = chain();
    let (restored, layer) =
        restore_memory_chain::<PathBuf>(&chain.base_path, &chain.base, &[], RestoreMode::Lazy)
            .unwrap();
    let base = restore_memory_file(&chain.base_path, &chain.base, RestoreMode::Eager).unwrap();
    assert_same(&restored, &base);
    assert_eq!(layer, chain.base.layer);
}

#[test]
fn test_diff_out_of_order_refused() {
    let chain = chain();
    // Each order, and the diff that is refused in it.
    for (order, refused) in [
        (&[1usize][..], "diff2.mem"),
        (&[1, 0], "diff2.mem"),
        (&[0, 0], "diff1.mem"),
        (&[0, 1, 1], "diff2.mem"),
    ] {
        match restore_memory_chain(
            &chain.base_path,
            &chain.base,
            &paths(&chain, order),
            RestoreMode::Lazy,
        ) {
            Err(MemoryError::WrongBase {
                path,
                expected,
                found,
            }) => {
                assert_ne!(expected, found);
                assert!(
                    path.ends_with(refused),
                    "order {order:?}: {}",
                    path.display()
                );
            }
            other => panic!(
                "order {order:?}: expected WrongBase, got {:?}",
                other.map(|(_, layer)| layer)
            ),
        }
    }
}

#[test]
fn test_diff_on_wrong_base_refused() {
    let chain = chain();
    // Another save of the very same bytes is another layer: the diff is refused on it.
    let other_path = chain.dir.join("other.mem");
    let regions: Vec<_> = chain
        .memory
        .iter()
        .map(GuestMemoryMapping::region)
        .collect();
    let other = save_memory_file(&other_path, &regions).unwrap();
    let err = restore_memory_chain(&other_path, &other, &paths(&chain, &[0]), RestoreMode::Lazy)
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().contains("applies on top of memory layer"),
        "{err}"
    );
    match err {
        MemoryError::WrongBase {
            expected, found, ..
        } => {
            assert_eq!(expected, chain.base.layer);
            assert_eq!(found, other.layer);
        }
        other => panic!("expected WrongBase, got {other}"),
    }
}

#[test]
fn test_diff_with_other_regions_refused() {
    let chain = chain();
    // A diff of a one-region memory, claiming the chain's base as its base.
    let small = vec![patterned(0, 8 * MIB, 4, 1)];
    let path = chain.dir.join("small.diff");
    diff_of(&path, chain.base.layer, &small, &[clean_bitmap(&small[0])]);
    let err = restore_memory_chain(&chain.base_path, &chain.base, &[&path], RestoreMode::Lazy)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, MemoryError::Format { .. }), "{err}");
    assert!(err.to_string().contains("diff regions differ"), "{err}");
}

#[test]
fn test_diff_truncated_refused() {
    let chain = chain();
    let (path, info) = &chain.diffs[0];
    for len in [
        info.file_len - 1,
        info.file_len - PAGE_SIZE,
        info.file_len + 1,
    ] {
        set_len(path, len);
        match read_memory_diff_info(path) {
            Err(MemoryError::Length {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (info.file_len, len));
            }
            other => panic!("length {len}: expected a length error, got {other:?}"),
        }
    }
    // Cut inside the header.
    for len in [0, 10, 70] {
        set_len(path, len);
        assert!(
            matches!(read_memory_diff_info(path), Err(MemoryError::Format { .. })),
            "length {len}"
        );
    }
}

#[test]
fn test_diff_damage_detected() {
    let chain = chain();
    let (path, info) = &chain.diffs[0];
    // A byte of page data: the data checksum fails on apply.
    flip_byte(path, PAGE_SIZE + 5);
    let err = restore_memory_chain(&chain.base_path, &chain.base, &[path], RestoreMode::Lazy)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("page data has crc64"), "{err}");
    flip_byte(path, PAGE_SIZE + 5);
    // A byte of the header (the dirty-page count of region 0) or of the magic.
    for offset in [64 + 16, 0, 8] {
        flip_byte(path, offset);
        let err = read_memory_diff_info(path).unwrap_err();
        assert!(
            matches!(err, MemoryError::Format { .. }),
            "offset {offset}: {err}"
        );
        flip_byte(path, offset);
    }
    assert_eq!(&read_memory_diff_info(path).unwrap(), info);
    // A memory file is not a diff.
    assert!(read_memory_diff_info(&chain.base_path)
        .unwrap_err()
        .to_string()
        .contains("bad magic"));
}

#[test]
fn test_diff_bad_bitmap_refused() {
    let dir = TempDir::new("memory-diff");
    let memory = [patterned(0, 100 * PAGE_SIZE, 1, 5)];
    let base = MemoryLayerId { id: 1, checksum: 2 };
    let path = dir.path().join("bad.diff");
    let regions = |dirty| {
        vec![DiffRegion {
            guest_phys_addr: 0,
            bytes: memory[0].as_slice(),
            dirty,
        }]
    };
    let short = [0u64; 1];
    let past_end = [0u64, 1 << 40];
    for (dirty, reason) in [
        (&short[..], "dirty bitmap does not have one bit per page"),
        (
            &past_end[..],
            "dirty bitmap marks pages past the end of the region",
        ),
    ] {
        match save_memory_diff(&path, base, &regions(dirty)) {
            Err(MemoryError::Region { reason: found, .. }) => assert_eq!(found, reason),
            other => panic!("expected {reason:?}, got {other:?}"),
        }
    }
    assert!(!path.exists());
}

#[test]
fn test_merge_chain_equals_chain() {
    let chain = chain();
    let merged_path = chain.dir.join("merged.mem");
    let merged = merge_memory_chain(
        &chain.base_path,
        &chain.base,
        &paths(&chain, &[0, 1]),
        &merged_path,
    )
    .unwrap();
    assert_eq!(merged.layer, chain.diffs[1].1.layer);
    assert_eq!(merged.file_len(), chain.base.file_len());
    let restored = restore_memory_file(&merged_path, &merged, RestoreMode::Eager).unwrap();
    assert_same(&restored, &chain.memory);

    // A diff taken after the chain's last layer applies to the merged file.
    let mut memory = chain.memory;
    let mut rng = Rng::new(9);
    let mut bitmaps: Vec<Vec<u64>> = memory.iter().map(clean_bitmap).collect();
    dirty_pages(&mut memory[1], &mut bitmaps[1], 3, &mut rng);
    let next = chain.dir.join("diff3.mem");
    diff_of(&next, chain.diffs[1].1.layer, &memory, &bitmaps);
    let (restored, _) =
        restore_memory_chain(&merged_path, &merged, &[&next], RestoreMode::Lazy).unwrap();
    assert_same(&restored, &memory);

    // Merging in place replaces the base atomically.
    let in_place = merge_memory_chain(&merged_path, &merged, &[&next], &merged_path).unwrap();
    let restored = restore_memory_file(&merged_path, &in_place, RestoreMode::Eager).unwrap();
    assert_same(&restored, &memory);
}

#[test]
fn test_merge_refuses_damaged_base() {
    let chain = chain();
    flip_byte(&chain.base_path, 3);
    let out = chain.dir.join("merged.mem");
    assert!(matches!(
        merge_memory_chain(&chain.base_path, &chain.base, &paths(&chain, &[0, 1]), &out),
        Err(MemoryError::Checksum { .. })
    ));
    assert!(!out.exists());
}

/// Without a dirty log: page hashes against the previous layer find exactly the pages that
/// changed, and a diff of them restores the same bytes.
#[test]
fn test_page_hashes_fallback_round_trip() {
    let dir = TempDir::new("memory-diff");
    let mut memory = vec![
        patterned(0, 4 * MIB, 2, 11),
        patterned(1 << 32, 2 * MIB, 3, 12),
    ];
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    let base_path = dir.path().join("base.mem");
    let base = save_memory_file(&base_path, &regions).unwrap();
    let mut hashes = PageHashes::new(&regions).unwrap();

    let mut rng = Rng::new(13);
    let mut layer = base.layer;
    let mut diffs = Vec::new();
    for step in 0..2 {
        let mut truth: Vec<Vec<u64>> = memory.iter().map(clean_bitmap).collect();
        for (m, bitmap) in memory.iter_mut().zip(truth.iter_mut()) {
            dirty_pages(m, bitmap, 17, &mut rng);
        }
        // A page rewritten with the bytes it already had is not a change.
        let same = memory[0].as_slice()[..PAGE_SIZE as usize].to_vec();
        memory[0].as_mut_slice()[..PAGE_SIZE as usize].copy_from_slice(&same);
        let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
        let found = hashes.dirty_bitmaps(&regions).unwrap();
        assert_eq!(found, truth, "step {step}");
        let path = dir.path().join(format!("diff{step}.mem"));
        layer = diff_of(&path, layer, &memory, &found).layer;
        diffs.push(path);
    }
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    assert!(hashes
        .dirty_bitmaps(&regions)
        .unwrap()
        .iter()
        .all(|b| b.iter().all(|&w| w == 0)));
    let (restored, _) = restore_memory_chain(&base_path, &base, &diffs, RestoreMode::Lazy).unwrap();
    assert_same(&restored, &memory);

    // Other regions than the hashed ones are refused.
    let mut single = patterned(0, 4 * MIB, 2, 11);
    fill_page(&mut single, 0, &mut rng);
    assert!(matches!(
        hashes.dirty_bitmaps(&[single.region()]),
        Err(MemoryError::Region { .. })
    ));
}

/// Damaged diffs, each one byte flipped or cut short at a random place: every restore is
/// refused or restores exactly the right bytes (a flip in the header's zero padding is
/// harmless), never panics, never allocates from a damaged length.
#[test]
fn test_diff_mutations_refused_or_exact() {
    let chain = chain();
    let (path, info) = &chain.diffs[0];
    let original = std::fs::read(path).unwrap();
    let expected = {
        let (memory, _) = restore_memory_chain(
            &chain.base_path,
            &chain.base,
            &paths(&chain, &[0]),
            RestoreMode::Eager,
        )
        .unwrap();
        memory
    };
    let mut rng = Rng::new(77);
    let mut refused = 0;
    for round in 0..300 {
        let mut bytes = original.clone();
        if round % 3 == 0 {
            bytes.truncate(rng.below(info.file_len) as usize);
        } else {
            let at = rng.below(info.file_len) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(path, &bytes).unwrap();
        match restore_memory_chain(
            &chain.base_path,
            &chain.base,
            &paths(&chain, &[0]),
            RestoreMode::Lazy,
        ) {
            Ok((memory, _)) => assert_same(&memory, &expected),
            Err(_) => refused += 1,
        }
    }
    // Padding is under 1 page of a diff this size: nearly every mutation is refused.
    assert!(refused > 150, "{refused} of 300 refused");
}
