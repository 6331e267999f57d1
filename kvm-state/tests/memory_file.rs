//! Full memory files: save, lazy and eager restore, verify, and the controls (a changed
//! byte, a truncated file, bad regions, a file changed under a lazy mapping).

mod common;
mod memory_support;

use common::TempDir;
use kvm_state::{
    restore_memory_file, save_memory_file, verify_memory_file, GuestMemoryMapping, MemoryError,
    MemoryFileDescriptor, MemoryFileRegion, MemoryLayerId, RestoreMode, PAGE_SIZE,
};
use memory_support::{flip_byte, patterned, set_len};
use versionize::{VersionMap, Versionize};

const MIB: u64 = 1 << 20;

/// Two regions, as an x86 VM with a PCI hole has: 4 MiB at 0 and 2 MiB at 4 GiB.
fn two_regions() -> Vec<GuestMemoryMapping> {
    vec![
        patterned(0, 4 * MIB, 3, 1),
        patterned(4 << 30, 2 * MIB, 5, 2),
    ]
}

fn save(
    dir: &TempDir,
    memory: &[GuestMemoryMapping],
) -> (std::path::PathBuf, MemoryFileDescriptor) {
    let path = dir.path().join("vm.mem");
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    let descriptor = save_memory_file(&path, &regions).unwrap();
    (path, descriptor)
}

fn assert_same(restored: &[GuestMemoryMapping], memory: &[GuestMemoryMapping]) {
    assert_eq!(restored.len(), memory.len());
    for (r, m) in restored.iter().zip(memory) {
        assert_eq!(r.guest_phys_addr(), m.guest_phys_addr());
        assert_eq!(r.size(), m.size());
        assert!(
            r.as_slice() == m.as_slice(),
            "region {:#x} differs",
            m.guest_phys_addr()
        );
    }
}

#[test]
fn test_memory_file_round_trip_lazy_and_eager() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, descriptor) = save(&dir, &memory);

    assert_eq!(descriptor.regions.len(), 2);
    assert_eq!(descriptor.regions[0].file_offset, 0);
    assert_eq!(descriptor.regions[1].file_offset, 4 * MIB);
    assert_eq!(descriptor.regions[1].guest_phys_addr, 4 << 30);
    assert_eq!(descriptor.file_len(), 6 * MIB);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 6 * MIB);
    verify_memory_file(&path, &descriptor).unwrap();

    let lazy = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
    assert!(lazy.iter().all(GuestMemoryMapping::is_file_backed));
    assert_same(&lazy, &memory);

    let eager = restore_memory_file(&path, &descriptor, RestoreMode::Eager).unwrap();
    assert!(!eager.iter().any(GuestMemoryMapping::is_file_backed));
    assert_same(&eager, &memory);

    // The file is raw: region 1's bytes are at its offset.
    let file = std::fs::read(&path).unwrap();
    assert!(file[4 * MIB as usize..] == *memory[1].as_slice());
}

#[test]
fn test_memory_file_lazy_writes_stay_private() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, descriptor) = save(&dir, &memory);
    let before = std::fs::read(&path).unwrap();
    let mut lazy = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
    lazy[0].as_mut_slice()[123] ^= 0xff;
    lazy[1].as_mut_slice()[PAGE_SIZE as usize] ^= 0xff;
    drop(lazy);
    assert!(std::fs::read(&path).unwrap() == before);
    verify_memory_file(&path, &descriptor).unwrap();
}

#[test]
fn test_memory_file_changed_byte_detected() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, descriptor) = save(&dir, &memory);
    // A byte in the second region, in a page that was zero.
    let offset = 4 * MIB + PAGE_SIZE + 7;
    flip_byte(&path, offset);

    let err = verify_memory_file(&path, &descriptor).unwrap_err();
    match err {
        MemoryError::Checksum {
            guest_phys_addr, ..
        } => assert_eq!(guest_phys_addr, 4 << 30),
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(matches!(
        restore_memory_file(&path, &descriptor, RestoreMode::Eager),
        Err(MemoryError::Checksum { .. })
    ));
    // A lazy restore does not read the file: the change shows in the guest's memory, which
    // is why verify exists (documented on RestoreMode::Lazy).
    let lazy = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
    assert_ne!(lazy[1].as_slice(), memory[1].as_slice());
}

#[test]
fn test_memory_file_truncated_refused() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, descriptor) = save(&dir, &memory);
    for len in [6 * MIB - 1, 6 * MIB - PAGE_SIZE, 0, 6 * MIB + 1] {
        set_len(&path, len);
        for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
            match restore_memory_file(&path, &descriptor, mode) {
                Err(MemoryError::Length {
                    expected, found, ..
                }) => assert_eq!((expected, found), (6 * MIB, len)),
                other => panic!("{mode:?} at length {len}: expected a length error, got {other:?}"),
            }
        }
        assert!(matches!(
            verify_memory_file(&path, &descriptor),
            Err(MemoryError::Length { .. })
        ));
    }
}

#[test]
fn test_memory_file_missing_refused() {
    let dir = TempDir::new("memory-file");
    let descriptor = MemoryFileDescriptor {
        layer: MemoryLayerId { id: 1, checksum: 2 },
        regions: vec![],
    };
    let err = restore_memory_file(
        dir.path().join("absent.mem"),
        &descriptor,
        RestoreMode::Lazy,
    )
    .unwrap_err();
    assert!(matches!(err, MemoryError::Io { op: "open", .. }), "{err}");
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}

#[test]
fn test_memory_file_bad_regions_refused() {
    let dir = TempDir::new("memory-file");
    let path = dir.path().join("bad.mem");
    let page = vec![0u8; PAGE_SIZE as usize];
    let two = vec![0u8; 2 * PAGE_SIZE as usize];
    let cases: Vec<(Vec<kvm_state::GuestRegionBytes<'_>>, &str)> = vec![
        (
            vec![kvm_state::GuestRegionBytes {
                guest_phys_addr: 0,
                bytes: &page[..100],
            }],
            "size is not a multiple of the page size",
        ),
        (
            vec![kvm_state::GuestRegionBytes {
                guest_phys_addr: 0x800,
                bytes: &page,
            }],
            "guest address is not page-aligned",
        ),
        (
            vec![kvm_state::GuestRegionBytes {
                guest_phys_addr: 0,
                bytes: &[],
            }],
            "size is zero",
        ),
        (
            vec![
                kvm_state::GuestRegionBytes {
                    guest_phys_addr: 0x1000,
                    bytes: &two,
                },
                kvm_state::GuestRegionBytes {
                    guest_phys_addr: 0x2000,
                    bytes: &page,
                },
            ],
            "overlaps another region",
        ),
    ];
    for (regions, expected) in cases {
        match save_memory_file(&path, &regions) {
            Err(MemoryError::Region { reason, .. }) => assert_eq!(reason, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
        assert!(!path.exists(), "a refused save leaves no file");
    }
}

#[test]
fn test_memory_file_descriptor_must_match_layout() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, mut descriptor) = save(&dir, &memory);
    descriptor.regions[1].file_offset += PAGE_SIZE;
    assert!(matches!(
        restore_memory_file(&path, &descriptor, RestoreMode::Lazy),
        Err(MemoryError::Format { .. })
    ));
}

/// A new save to the path of a mapped file replaces the file by rename: the mapping keeps
/// the bytes it was restored from.
#[test]
fn test_memory_file_save_over_mapped_file_keeps_mapping() {
    let dir = TempDir::new("memory-file");
    let memory = two_regions();
    let (path, descriptor) = save(&dir, &memory);
    let lazy = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
    let other = [
        patterned(0, 4 * MIB, 1, 99),
        patterned(4 << 30, 2 * MIB, 1, 98),
    ];
    let regions: Vec<_> = other.iter().map(GuestMemoryMapping::region).collect();
    save_memory_file(&path, &regions).unwrap();
    assert_same(&lazy, &memory);
}

/// The documented semantics of truncating a file under a lazy mapping: the process that
/// touches a page past the new end gets SIGBUS. Run in a child process (this test binary,
/// re-executed on the ignored test below).
#[test]
fn test_memory_file_truncated_after_mapping_is_sigbus() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("memory-file");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_touch_truncated_mapping",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEMORY_SIGBUS_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("mapped and truncated"),
        "child output: {stdout}"
    );
    assert_eq!(
        status.status.signal(),
        Some(libc::SIGBUS),
        "{:?}",
        status.status
    );
}

#[test]
#[ignore = "run by test_memory_file_truncated_after_mapping_is_sigbus in a child process"]
fn child_touch_truncated_mapping() {
    let Some(dir) = std::env::var_os("MEMORY_SIGBUS_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("vm.mem");
    let memory = [patterned(0, MIB, 1, 7)];
    let regions: Vec<_> = memory.iter().map(GuestMemoryMapping::region).collect();
    let descriptor = save_memory_file(&path, &regions).unwrap();
    let lazy = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
    set_len(&path, PAGE_SIZE);
    println!("mapped and truncated");
    // Page 0 is still in the file; the last page is not.
    let last = std::hint::black_box(lazy[0].as_slice())[MIB as usize - 1];
    println!("read {last} past the end without a signal");
}

/// The descriptor's versioned bytes, pinned: the state embeds them.
#[test]
fn test_memory_file_descriptor_bytes() {
    let descriptor = MemoryFileDescriptor {
        layer: MemoryLayerId {
            id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            checksum: 0x1122_3344_5566_7788,
        },
        regions: vec![MemoryFileRegion {
            guest_phys_addr: 0x1000,
            size: 0x2000,
            file_offset: 0,
            crc64: 0xaabb,
        }],
    };
    let mut bytes = Vec::new();
    descriptor
        .serialize(&mut bytes, &VersionMap::new(), 1)
        .unwrap();
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &[0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01][..],
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
        &[1, 0, 0, 0, 0, 0, 0, 0],
        &[0x00, 0x10, 0, 0, 0, 0, 0, 0],
        &[0x00, 0x20, 0, 0, 0, 0, 0, 0],
        &[0, 0, 0, 0, 0, 0, 0, 0],
        &[0xbb, 0xaa, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(bytes, expected);
    let back =
        MemoryFileDescriptor::deserialize(&mut bytes.as_slice(), &VersionMap::new(), 1).unwrap();
    assert_eq!(back, descriptor);
}
