//! What the file benchmarks (`memory`, `seal`) share: whether criterion measures, the guest
//! size, seeded guest memory and a directory removed on drop.

use std::path::PathBuf;

use kvm_state::GuestMemoryMapping;

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once.
pub(crate) fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Guest size in MiB: `default` or the environment variable `var` when measuring, 8 MiB when
/// each benchmark runs once (CI).
pub(crate) fn guest_mib(var: &str, default: u64) -> u64 {
    if !benchmarking() {
        return 8;
    }
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seeded xorshift64*: the same bytes on every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Guest memory of `size` bytes full of incompressible bytes from `seed` (a guest that has
/// used all its memory).
pub(crate) fn guest(size: u64, seed: u64) -> GuestMemoryMapping {
    let mut memory = GuestMemoryMapping::anonymous(0, size).expect("anonymous memory");
    let mut rng = Rng(seed | 1);
    for word in memory.as_mut_slice().chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    memory
}

/// A directory for the files, under `$var` or the system temp dir, removed on drop.
pub(crate) struct BenchDir(PathBuf);

impl BenchDir {
    pub(crate) fn new(var: &str, prefix: &str) -> BenchDir {
        let base = std::env::var_os(var).map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench directory");
        BenchDir(dir)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
