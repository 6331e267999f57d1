//! Helpers shared by the guest-memory tests (`memory_*.rs`).

#![allow(dead_code, unreachable_pub)]

use kvm_state::{GuestMemoryMapping, PAGE_SIZE};

/// A seeded xorshift64* generator: the same bytes on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Fills one page of `memory` with bytes from `rng`.
pub fn fill_page(memory: &mut GuestMemoryMapping, page: u64, rng: &mut Rng) {
    let start = (page * PAGE_SIZE) as usize;
    let bytes = &mut memory.as_mut_slice()[start..start + PAGE_SIZE as usize];
    for word in bytes.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
}

/// Anonymous memory at `guest_phys_addr` with every `stride`-th page filled from `seed`
/// (the rest zero, as a fresh guest's memory mostly is).
pub fn patterned(guest_phys_addr: u64, size: u64, stride: u64, seed: u64) -> GuestMemoryMapping {
    let mut memory = GuestMemoryMapping::anonymous(guest_phys_addr, size).unwrap();
    let mut rng = Rng::new(seed);
    let pages = size / PAGE_SIZE;
    for page in (0..pages).step_by(stride as usize) {
        fill_page(&mut memory, page, &mut rng);
    }
    memory
}

/// Writes `count` random pages of `memory` with new bytes and marks them in `dirty`.
pub fn dirty_pages(memory: &mut GuestMemoryMapping, dirty: &mut [u64], count: u64, rng: &mut Rng) {
    let pages = memory.size() / PAGE_SIZE;
    for _ in 0..count {
        let page = rng.below(pages);
        fill_page(memory, page, rng);
        dirty[(page / 64) as usize] |= 1 << (page % 64);
    }
}

/// An all-clear dirty bitmap for `memory`.
pub fn clean_bitmap(memory: &GuestMemoryMapping) -> Vec<u64> {
    vec![0; (memory.size() / PAGE_SIZE).div_ceil(64) as usize]
}

/// Flips one byte of the file at `path`, at `offset`.
pub fn flip_byte(path: &std::path::Path, offset: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x5a;
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&byte).unwrap();
}

/// Sets the length of the file at `path`.
pub fn set_len(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}
