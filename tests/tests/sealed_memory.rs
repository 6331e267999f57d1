//! Sealed snapshots with kvm-state's guest memory files: a memory file saved by
//! `save_memory_file` is sealed beside a sealed state that lists it, and comes back eagerly
//! (streamed into guest memory) or lazily (opened to a plain file that is mapped); a memory
//! file of another snapshot or a changed byte is refused before any guest memory is restored.

use std::io::Read;
use std::path::{Path, PathBuf};

use kvm_state::{
    restore_memory_file, save_memory_file, verify_memory_file, GuestMemoryMapping,
    MemoryFileDescriptor, RestoreMode, CURRENT_APP_VERSION,
};
use snapshot::{
    load_sealed, open_file, open_reader, save_sealed, seal_file, SealAlgorithm, SealKey,
    SealOptions, SealedFileRef, Snapshot, SnapshotError,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sealed-memory-{}-{name}", std::process::id()));
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

/// Two regions of guest memory, filled from `seed`.
fn guest(seed: u8) -> Vec<GuestMemoryMapping> {
    let mut regions = vec![
        GuestMemoryMapping::anonymous(0, 256 << 10).unwrap(),
        GuestMemoryMapping::anonymous(1 << 20, 64 << 10).unwrap(),
    ];
    for (r, region) in regions.iter_mut().enumerate() {
        for (i, byte) in region.as_mut_slice().iter_mut().enumerate() {
            *byte = (i / 4096) as u8 ^ seed ^ (r as u8 * 31);
        }
    }
    regions
}

/// Saves `memory` as a sealed snapshot `name` in `dir`: the memory file (sealed, its plain
/// copy removed) and a sealed state (the memory descriptor) that lists it.
fn save(
    key: &SealKey,
    dir: &TempDir,
    name: &str,
    memory: &[GuestMemoryMapping],
) -> (PathBuf, PathBuf) {
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    let plain = dir.path(&format!("{name}.mem.plain"));
    let descriptor = save_memory_file(&plain, &regions).unwrap();
    let options = SealOptions::new(SealAlgorithm::ChaCha20Poly1305).with_chunk_size(64 << 10);
    let memory_path = dir.path(&format!("{name}.mem"));
    let memory_ref = seal_file(
        key,
        &options.clone().with_label("memory"),
        &plain,
        &memory_path,
    )
    .unwrap();
    std::fs::remove_file(&plain).unwrap();

    let mut state = Vec::new();
    Snapshot::new(kvm_state::version_map(), CURRENT_APP_VERSION)
        .save(&mut state, &descriptor)
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

/// Opens the sealed state: the memory descriptor and the memory file it lists.
fn open_state(key: &SealKey, state: &Path) -> (MemoryFileDescriptor, SealedFileRef) {
    let (header, bytes) = load_sealed(key, state, 1 << 20, None).unwrap();
    let (descriptor, _): (MemoryFileDescriptor, u16) =
        Snapshot::load(&mut &bytes[..], bytes.len(), kvm_state::version_map()).unwrap();
    (descriptor, header.companion("memory").unwrap().clone())
}

/// Eager restore from the sealed file: each region streamed from the verified payload.
fn restore_eager(
    key: &SealKey,
    memory: &Path,
    descriptor: &MemoryFileDescriptor,
    listed: &SealedFileRef,
) -> Result<Vec<GuestMemoryMapping>, SnapshotError> {
    let mut reader = open_reader(key, std::fs::File::open(memory).unwrap(), Some(listed))?;
    let mut restored = Vec::new();
    for region in &descriptor.regions {
        let mut mapping =
            GuestMemoryMapping::anonymous(region.guest_phys_addr, region.size).unwrap();
        reader
            .read_exact(mapping.as_mut_slice())
            .map_err(|e| *e.into_inner().unwrap().downcast::<SnapshotError>().unwrap())?;
        restored.push(mapping);
    }
    reader.finish()?;
    Ok(restored)
}

fn same(a: &[GuestMemoryMapping], b: &[GuestMemoryMapping]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.guest_phys_addr() == b.guest_phys_addr() && a.as_slice() == b.as_slice()
        })
}

#[test]
fn test_sealed_memory_file_restores_eagerly_and_lazily() {
    let dir = TempDir::new("restore");
    let key = SealKey::generate().unwrap();
    let memory = guest(1);
    let (state, sealed_memory) = save(&key, &dir, "vm", &memory);
    let (descriptor, listed) = open_state(&key, &state);
    assert_eq!(listed.payload_len, descriptor.file_len());

    let eager = restore_eager(&key, &sealed_memory, &descriptor, &listed).unwrap();
    assert!(same(&eager, &memory));

    // Lazy: open to a plain file (tmpfs in production), check it against the descriptor's
    // CRCs, map it.
    let plain = dir.path("vm.mem.opened");
    open_file(&key, &sealed_memory, &plain, Some(&listed)).unwrap();
    verify_memory_file(&plain, &descriptor).unwrap();
    let lazy = restore_memory_file(&plain, &descriptor, RestoreMode::Lazy).unwrap();
    assert!(same(&lazy, &memory));
}

#[test]
fn test_sealed_memory_file_of_another_snapshot_is_refused_before_restore() {
    let dir = TempDir::new("swap");
    let key = SealKey::generate().unwrap();
    let (state_a, _) = save(&key, &dir, "a", &guest(1));
    let (_, memory_b) = save(&key, &dir, "b", &guest(2));
    let (descriptor, listed) = open_state(&key, &state_a);

    let error = restore_eager(&key, &memory_b, &descriptor, &listed).unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnexpectedSealedFile { .. }),
        "{error}"
    );
    let plain = dir.path("opened");
    let error = open_file(&key, &memory_b, &plain, Some(&listed)).unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnexpectedSealedFile { .. }),
        "{error}"
    );
    assert!(!plain.exists());
}

#[test]
fn test_sealed_memory_file_with_a_changed_byte_is_refused() {
    let dir = TempDir::new("tamper");
    let key = SealKey::generate().unwrap();
    let (state, memory) = save(&key, &dir, "vm", &guest(3));
    let (descriptor, listed) = open_state(&key, &state);
    let mut bytes = std::fs::read(&memory).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&memory, &bytes).unwrap();

    let error = restore_eager(&key, &memory, &descriptor, &listed).unwrap_err();
    assert!(
        matches!(error, SnapshotError::Tampered { chunk: Some(2), .. }),
        "{error}"
    );
    let plain = dir.path("opened");
    let error = open_file(&key, &memory, &plain, Some(&listed)).unwrap_err();
    assert!(
        matches!(error, SnapshotError::Tampered { chunk: Some(2), .. }),
        "{error}"
    );
    assert!(
        !plain.exists(),
        "no plaintext left for a lazy restore to map"
    );
}

#[test]
fn test_sealed_memory_straight_from_guest_memory_restores_like_the_memory_file() {
    let dir = TempDir::new("parts");
    let key = SealKey::generate().unwrap();
    let memory = guest(4);
    let (state, _) = save(&key, &dir, "vm", &memory);
    let (descriptor, _) = open_state(&key, &state);

    // The regions sealed back to back with no plain copy on disk: the payload is the
    // memory file's bytes, so the descriptor of a plain save describes it.
    let parts: Vec<&[u8]> = memory.iter().map(GuestMemoryMapping::as_slice).collect();
    let direct = dir.path("direct.mem");
    let options = SealOptions::new(SealAlgorithm::preferred_encryption()).with_label("memory");
    let listed = snapshot::save_sealed_parts(&key, &options, &parts, &direct).unwrap();
    assert_eq!(listed.payload_len, descriptor.file_len());
    let restored = restore_eager(&key, &direct, &descriptor, &listed).unwrap();
    assert!(same(&restored, &memory));
    let plain = dir.path("direct.mem.opened");
    open_file(&key, &direct, &plain, Some(&listed)).unwrap();
    verify_memory_file(&plain, &descriptor).unwrap();
}
