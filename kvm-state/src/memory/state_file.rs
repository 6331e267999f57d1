//! A [`MicrovmState`] and its guest memory together: the state file and the memory file (or
//! diff) beside it, `<state>.mem`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use snapshot::DEFAULT_MAX_STATE_LEN;

use super::diff::{
    merge_memory_chain, read_memory_diff_info, restore_memory_chain, save_memory_diff, DiffRegion,
};
use super::file::{restore_memory_file, save_memory_file, RestoreMode};
use super::{
    GuestMemoryMapping, GuestRegionBytes, MemoryDiffInfo, MemoryFileDescriptor, MemoryLayerId,
};
use crate::error::{KvmStateError, Result};
use crate::microvm::{MemoryRegionState, MemorySource, MicrovmState, APP_VERSION_6};

/// What the loads return: the state, the app version it was written at, and guest memory.
type Loaded = (MicrovmState, u16, Vec<GuestMemoryMapping>);

impl MicrovmState {
    /// The memory file (or diff) that belongs to the state file at `state_path`: the same
    /// path with `.mem` appended (`vm.snap` → `vm.snap.mem`).
    pub fn memory_file_path(state_path: impl AsRef<Path>) -> PathBuf {
        let mut name = OsString::from(state_path.as_ref().as_os_str());
        name.push(".mem");
        PathBuf::from(name)
    }

    /// Saves the state to `path` and guest memory `regions` (read with the vCPUs paused)
    /// beside it, at `app_version` of [`version_map`](crate::version_map); returns the state
    /// as written. The regions replace [`memory`](Self::memory).
    ///
    /// From app version 6 on, memory goes raw and page-aligned into
    /// [`memory_file_path`](Self::memory_file_path)`(path)` at sequential-write bandwidth
    /// ([`save_memory_file`]) and the state records it ([`MemorySource::File`]); the memory
    /// file is written first and the state file last, each replaced atomically, so the state
    /// file never names a memory file that is not complete. For app versions 1 to 3, which
    /// know memory only inside the state, the bytes are written inline instead, when the
    /// whole state then fits the 10 MiB those builds load by default.
    ///
    /// # Errors
    /// [`KvmStateError::MemoryTooLargeForAppVersion`] when memory does not fit inline for an
    /// older app version (nothing is written); [`KvmStateError::Memory`] when the memory file
    /// cannot be written or the regions are not page-aligned or overlap;
    /// [`KvmStateError::Snapshot`] as [`save_to_file`](Self::save_to_file).
    ///
    /// # Example
    /// ```
    /// use kvm_state::{GuestMemoryMapping, MicrovmState, RestoreMode, CURRENT_APP_VERSION};
    ///
    /// let dir = std::env::temp_dir().join(format!("with-memory-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("vm.snap");
    /// let mut memory = GuestMemoryMapping::anonymous(0, 4 << 20).unwrap();
    /// memory.as_mut_slice()[0x3000] = 7;
    ///
    /// let state = MicrovmState::default();
    /// state.save_with_memory(&path, CURRENT_APP_VERSION, &[memory.region()]).unwrap();
    /// assert!(MicrovmState::memory_file_path(&path).exists());
    ///
    /// let (loaded, _app_version, restored) =
    ///     MicrovmState::load_with_memory(&path, RestoreMode::Lazy).unwrap();
    /// assert_eq!(loaded.memory[0].size, 4 << 20);
    /// assert_eq!(restored[0].as_slice(), memory.as_slice());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn save_with_memory(
        &self,
        path: impl AsRef<Path>,
        app_version: u16,
        regions: &[GuestRegionBytes<'_>],
    ) -> Result<MicrovmState> {
        let path = path.as_ref();
        let mut state = self.clone();
        if app_version >= APP_VERSION_6 {
            let descriptor = save_memory_file(Self::memory_file_path(path), regions)?;
            state.memory = regions_without_contents(regions);
            state.memory_source = MemorySource::File(descriptor);
            state.save_to_file(path, app_version)?;
            return Ok(state);
        }
        // Older app versions: inline, if it fits. Refuse before copying a large guest.
        let too_large = |state_len: u64| KvmStateError::MemoryTooLargeForAppVersion {
            app_version,
            state_len,
            cap: DEFAULT_MAX_STATE_LEN,
        };
        let memory_len: u64 = regions.iter().map(|r| r.bytes.len() as u64).sum();
        if memory_len > DEFAULT_MAX_STATE_LEN {
            return Err(too_large(memory_len));
        }
        super::check_regions(
            &regions
                .iter()
                .map(|r| (r.guest_phys_addr, r.bytes.len() as u64))
                .collect::<Vec<_>>(),
        )?;
        state.memory = regions
            .iter()
            .map(|r| MemoryRegionState::with_contents(r.guest_phys_addr, r.bytes.to_vec()))
            .collect();
        state.memory_source = MemorySource::Inline;
        let bytes = state.to_snapshot_bytes(app_version)?;
        if bytes.len() as u64 > DEFAULT_MAX_STATE_LEN {
            return Err(too_large(bytes.len() as u64));
        }
        state.save_to_file(path, app_version)?;
        Ok(state)
    }

    /// Saves the state to `path` and a diff of guest memory beside it
    /// ([`memory_file_path`](Self::memory_file_path)): only the pages each region's dirty
    /// bitmap marks, on top of memory layer `base` (the full memory file's
    /// [`MemoryFileDescriptor::layer`](crate::MemoryFileDescriptor::layer), or the previous
    /// diff's). The state records the diff's layer ([`MemorySource::Diff`]); restore it with
    /// [`load_with_memory_chain`](Self::load_with_memory_chain). Returns the state as written
    /// and what the diff holds.
    ///
    /// # Errors
    /// [`KvmStateError::MemoryOutsideState`] for an app version before 4 (a diff cannot be
    /// written inline: use [`save_with_memory`](Self::save_with_memory));
    /// [`KvmStateError::Memory`] when the diff cannot be written or a bitmap does not fit its
    /// region; [`KvmStateError::Snapshot`] as [`save_to_file`](Self::save_to_file).
    pub fn save_diff_with_memory(
        &self,
        path: impl AsRef<Path>,
        app_version: u16,
        base: MemoryLayerId,
        regions: &[DiffRegion<'_>],
    ) -> Result<(MicrovmState, MemoryDiffInfo)> {
        let path = path.as_ref();
        if app_version < APP_VERSION_6 {
            return Err(KvmStateError::MemoryOutsideState { app_version });
        }
        let info = save_memory_diff(Self::memory_file_path(path), base, regions)?;
        let mut state = self.clone();
        state.memory = regions
            .iter()
            .map(|r| MemoryRegionState {
                guest_phys_addr: r.guest_phys_addr,
                size: r.bytes.len() as u64,
                contents: Vec::new(),
            })
            .collect();
        state.memory_source = MemorySource::Diff(info.layer);
        state.save_to_file(path, app_version)?;
        Ok((state, info))
    }

    /// Loads the state file at `path` and brings its guest memory back, one mapping per
    /// region in the order of [`memory`](Self::memory), ready for `set_user_memory_region`:
    /// from the memory file beside it ([`MemorySource::File`], lazily or eagerly as `mode`
    /// says, see [`RestoreMode`]), or from the state itself ([`MemorySource::Inline`], any
    /// app version: the contents are moved into anonymous mappings and the returned state's
    /// regions keep their addresses and sizes only).
    ///
    /// # Errors
    /// [`KvmStateError::Snapshot`] as [`load_file`](Self::load_file);
    /// [`KvmStateError::MemoryRegion`] when the regions contradict the memory file's
    /// description; [`KvmStateError::MemorySource`] for a diff snapshot (see
    /// [`load_with_memory_chain`](Self::load_with_memory_chain)) or a state whose memory the
    /// saving VMM kept elsewhere (regions without contents); [`KvmStateError::Memory`] when
    /// the memory file is missing, truncated, or (eager mode) fails its checksums.
    pub fn load_with_memory(path: impl AsRef<Path>, mode: RestoreMode) -> Result<Loaded> {
        let path = path.as_ref();
        let (mut state, app_version) = Self::load_file(path)?;
        state.check_memory_source()?;
        let memory = match &state.memory_source {
            MemorySource::Inline => inline_memory(path, &mut state)?,
            MemorySource::File(descriptor) => {
                restore_memory_file(Self::memory_file_path(path), descriptor, mode)?
            }
            MemorySource::Diff(_) => {
                return Err(source_error(
                    path,
                    "guest memory is a diff: load it with load_with_memory_chain and its base",
                ))
            }
        };
        Ok((state, app_version, memory))
    }

    /// Loads a diff snapshot: the full snapshot `base` (its state file, whose memory is in a
    /// memory file) and the diff snapshots `diffs` taken on top of it, in order; returns the
    /// state of the last one with guest memory as that one saved it (the base's memory file,
    /// mapped as `mode` says, with each diff applied). With no diffs this is
    /// [`load_with_memory`](Self::load_with_memory) of `base`.
    ///
    /// Each diff applies only on the layer it was taken from, so a chain with the wrong base
    /// or out of order is refused, and each diff state must record the layer of the diff
    /// beside it.
    ///
    /// # Errors
    /// [`KvmStateError::MemorySource`] when `base` is not a full snapshot with a memory file,
    /// a diff state is not a diff snapshot, or records another layer than the diff beside it;
    /// [`KvmStateError::Memory`] wrapping [`MemoryError::WrongBase`](crate::MemoryError::WrongBase)
    /// for a diff on the wrong layer, and the errors of
    /// [`load_with_memory`](Self::load_with_memory).
    pub fn load_with_memory_chain<P: AsRef<Path>>(
        base: impl AsRef<Path>,
        diffs: &[P],
        mode: RestoreMode,
    ) -> Result<Loaded> {
        let base = base.as_ref();
        if diffs.is_empty() {
            return Self::load_with_memory(base, mode);
        }
        let chain = Chain::load(base, diffs)?;
        let (memory, _layer) = restore_memory_chain(
            Self::memory_file_path(base),
            &chain.base,
            &chain.diff_files,
            mode,
        )?;
        // The last diff's layer was checked against its state, and the chain ends at it.
        Ok((chain.state, chain.app_version, memory))
    }

    /// Collapses a diff snapshot into a full one: the full snapshot `base` and the diff
    /// snapshots `diffs` on top of it (as [`load_with_memory_chain`](Self::load_with_memory_chain)
    /// takes them) become the snapshot `out` (state file and memory file beside it, each
    /// replaced atomically): the last diff's state, with guest memory
    /// as it saved it in one memory file. The base's checksums are verified first. The merged
    /// memory takes the last diff's layer identity, so diffs taken after it apply on `out`.
    /// Returns the state written. `out` must not be `base`: the memory file is replaced
    /// before the state file, and a base state left beside a merged memory file by a crash
    /// between the two would load lazily on the wrong memory.
    ///
    /// # Errors
    /// [`KvmStateError::MemorySource`] when `out` is `base`; as
    /// [`load_with_memory_chain`](Self::load_with_memory_chain) in eager mode, and
    /// [`KvmStateError::Memory`], [`KvmStateError::Snapshot`] when writing fails.
    pub fn merge_diff_snapshots<P: AsRef<Path>>(
        base: impl AsRef<Path>,
        diffs: &[P],
        out: impl AsRef<Path>,
    ) -> Result<MicrovmState> {
        let (base, out) = (base.as_ref(), out.as_ref());
        if same_file(base, out) {
            return Err(source_error(
                out,
                "merging over the base snapshot is refused: merge into a new name",
            ));
        }
        let chain = Chain::load(base, diffs)?;
        let descriptor = merge_memory_chain(
            Self::memory_file_path(base),
            &chain.base,
            &chain.diff_files,
            Self::memory_file_path(out),
        )?;
        let mut state = chain.state;
        state.memory_source = MemorySource::File(descriptor);
        state.save_to_file(out, chain.app_version.max(APP_VERSION_6))?;
        Ok(state)
    }

    /// Checks that [`memory`](Self::memory) agrees with
    /// [`memory_source`](Self::memory_source): with a memory file, the same regions (address
    /// and size, in order) as the file's description and no contents; with a diff, no
    /// contents. [`check_state`](crate::check_state) runs it.
    ///
    /// # Errors
    /// [`KvmStateError::MemoryRegion`] naming the first region that does not agree, or
    /// [`KvmStateError::BadLength`] when the memory file describes another number of regions.
    pub fn check_memory_source(&self) -> Result<()> {
        let refuse = |r: &MemoryRegionState, reason| KvmStateError::MemoryRegion {
            guest_phys_addr: r.guest_phys_addr,
            size: r.size,
            reason,
        };
        match &self.memory_source {
            MemorySource::Inline => Ok(()),
            MemorySource::File(descriptor) => {
                if descriptor.regions.len() != self.memory.len() {
                    return Err(KvmStateError::BadLength {
                        what: "regions of the memory file",
                        found: descriptor.regions.len(),
                        expected: self.memory.len(),
                    });
                }
                for (region, described) in self.memory.iter().zip(&descriptor.regions) {
                    if region.guest_phys_addr != described.guest_phys_addr
                        || region.size != described.size
                    {
                        return Err(refuse(region, "the memory file describes another region"));
                    }
                    if region.has_contents() {
                        return Err(refuse(region, "has contents but is in a memory file"));
                    }
                }
                Ok(())
            }
            MemorySource::Diff(_) => match self.memory.iter().find(|r| r.has_contents()) {
                Some(region) => Err(refuse(region, "has contents but is in a memory diff")),
                None => Ok(()),
            },
        }
    }
}

/// A full snapshot and diff snapshots on top of it, checked to belong together.
struct Chain {
    /// The base's memory file description.
    base: MemoryFileDescriptor,
    /// The diff files beside the diff states, in order.
    diff_files: Vec<PathBuf>,
    /// The state of the last snapshot of the chain, and its app version.
    state: MicrovmState,
    app_version: u16,
}

impl Chain {
    /// Loads the states of `base` and `diffs`: the base must be a full snapshot with a memory
    /// file, each diff a diff snapshot whose state records the layer of the diff beside it.
    /// Whether each diff applies on the layer before it is checked when they are applied.
    fn load<P: AsRef<Path>>(base: &Path, diffs: &[P]) -> Result<Chain> {
        let (base_state, base_version) = MicrovmState::load_file(base)?;
        base_state.check_memory_source()?;
        let MemorySource::File(descriptor) = base_state.memory_source.clone() else {
            return Err(source_error(
                base,
                "the base of a chain must be a full snapshot with a memory file",
            ));
        };
        let mut chain = Chain {
            base: descriptor,
            diff_files: Vec::with_capacity(diffs.len()),
            state: base_state,
            app_version: base_version,
        };
        for diff in diffs {
            let diff = diff.as_ref();
            let (state, app_version) = MicrovmState::load_file(diff)?;
            state.check_memory_source()?;
            let MemorySource::Diff(layer) = state.memory_source else {
                return Err(source_error(diff, "not a diff snapshot"));
            };
            let file = MicrovmState::memory_file_path(diff);
            let info = read_memory_diff_info(&file)?;
            if info.layer != layer {
                return Err(source_error(
                    diff,
                    format!(
                        "the state records memory layer {layer}, the diff beside it is layer {}",
                        info.layer
                    ),
                ));
            }
            chain.diff_files.push(file);
            chain.state = state;
            chain.app_version = app_version;
        }
        Ok(chain)
    }
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The regions of a save, as the state records them when memory is in a file.
fn regions_without_contents(regions: &[GuestRegionBytes<'_>]) -> Vec<MemoryRegionState> {
    regions
        .iter()
        .map(|r| MemoryRegionState {
            guest_phys_addr: r.guest_phys_addr,
            size: r.bytes.len() as u64,
            contents: Vec::new(),
        })
        .collect()
}

/// Moves inline contents into anonymous mappings.
fn inline_memory(path: &Path, state: &mut MicrovmState) -> Result<Vec<GuestMemoryMapping>> {
    let mut memory = Vec::with_capacity(state.memory.len());
    for region in &mut state.memory {
        if !region.has_contents() {
            return Err(source_error(
                path,
                format!(
                    "the region at {:#x} has no contents and there is no memory file: the VMM that saved it kept guest memory elsewhere",
                    region.guest_phys_addr
                ),
            ));
        }
        let mut mapping = GuestMemoryMapping::anonymous(region.guest_phys_addr, region.size)?;
        // `check_state` made sure the contents are `size` bytes; a state that skipped it
        // is refused here rather than copied short.
        if region.contents.len() as u64 != region.size {
            return Err(KvmStateError::MemoryRegion {
                guest_phys_addr: region.guest_phys_addr,
                size: region.size,
                reason: "contents are not `size` bytes",
            });
        }
        mapping.as_mut_slice().copy_from_slice(&region.contents);
        region.contents = Vec::new();
        memory.push(mapping);
    }
    Ok(memory)
}

fn source_error(path: &Path, reason: impl Into<String>) -> KvmStateError {
    KvmStateError::MemorySource {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
