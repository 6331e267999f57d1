//! The complete state of a microVM, the app [`VersionMap`] a VMM registers at start-up, and
//! snapshot files.
//!
//! A VMM builds [`version_map`] once and uses it for every snapshot it writes or reads: it
//! writes at [`CURRENT_APP_VERSION`], or at an older app version when the snapshot is meant
//! for an older build (rollback), and reads any app version up to its own.

use std::path::Path;

use snapshot::{LoadOptions, Snapshot};
use versionize::{prelude::Versionize, Limits, VersionMap};

use crate::device::{MmioTransportState, SerialState};
use crate::error::{KvmStateError, Result};
use crate::host::HostFacts;
use crate::memory::{MemoryFileDescriptor, MemoryLayerId};
use crate::vcpu::VcpuState;
use crate::vm::{ClockState, VmState};

/// App version 1: the first release; every state type at version 1.
pub const APP_VERSION_1: u16 = 1;
/// App version 2: `VcpuState` gained `tsc_khz`, `ClockState` gained `realtime` and
/// `host_tsc`.
pub const APP_VERSION_2: u16 = 2;
/// App version 3: `MicrovmState` gained `host`, the facts of the host it was
/// saved on.
pub const APP_VERSION_3: u16 = 3;
// ---- releases (issue 15): app versions 4 and 5, begin ----
/// App version 4 (release 0.2.0): `VcpuState` gained `nested_state`, KVM's
/// nested-virtualization state.
pub const APP_VERSION_4: u16 = 4;
/// App version 5 (release 0.3.0): `Sregs` gained `pdptrs`, the PAE PDPTRs of
/// `KVM_GET_SREGS2`.
pub const APP_VERSION_5: u16 = 5;
// ---- releases (issue 15): app versions 4 and 5, end ----
/// App version 6: `MicrovmState` gained `memory_source`, so guest memory can live in a
/// memory file (or a diff) beside the state file.
pub const APP_VERSION_6: u16 = 6;
/// The app version this build writes by default, the newest of [`version_map`].
pub const CURRENT_APP_VERSION: u16 = APP_VERSION_6;

/// A recorded release of this workspace: its version and the newest app version it reads
/// and writes (`RELEASES.toml` at the repository root, which also records each release's
/// commit and changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The release, `0.2.0`.
    pub version: &'static str,
    /// The newest app version of its [`version_map`]; it reads and writes `1..=app_version`.
    pub app_version: u16,
}

/// The recorded releases, oldest first, as `RELEASES.toml` lists them
/// (`tests/releases.rs` checks that the two agree).
pub const RELEASES: &[Release] = &[
    Release {
        version: "0.1.0",
        app_version: APP_VERSION_3,
    },
    Release {
        version: "0.2.0",
        app_version: APP_VERSION_4,
    },
    Release {
        version: "0.3.0",
        app_version: APP_VERSION_5,
    },
];

/// The recorded releases that read a snapshot of `data_version`: those whose newest app
/// version is at least `data_version` (no recorded release narrows its support window).
///
/// # Example
/// ```
/// let readers: Vec<&str> = kvm_state::releases_reading(4).map(|r| r.version).collect();
/// assert_eq!(readers, ["0.2.0", "0.3.0"]);
/// ```
pub fn releases_reading(data_version: u16) -> impl Iterator<Item = &'static Release> {
    RELEASES
        .iter()
        .filter(move |release| release.app_version >= data_version)
}

/// The app version map of this crate's state types.
///
/// # Version history
///
/// Every app version lists the types whose version changed; types not listed keep the version
/// they had before (1 unless listed earlier).
///
/// | app version | type changes | why |
/// |---|---|---|
/// | 1 ([`APP_VERSION_1`]) | every type at version 1 | first release |
/// | 2 ([`APP_VERSION_2`]) | [`VcpuState`] v2 gains `tsc_khz`; [`ClockState`] v2 gains `realtime` and `host_tsc` | restoring the TSC frequency on another host; Linux 5.16's `KVM_CLOCK_REALTIME`/`KVM_CLOCK_HOST_TSC` |
/// | 3 ([`APP_VERSION_3`]) | [`MicrovmState`] v2 gains `host` ([`HostFacts`]) | refusing, before touching KVM, a restore on a host that cannot honour the state (CPU vendor, KVM capabilities, TSC frequency) |
/// | 4 ([`APP_VERSION_4`]) | [`VcpuState`] v3 gains `nested_state` | a guest hypervisor's nested guest (VMCS12/VMCB12, VMXON) lives only in KVM (`KVM_GET_NESTED_STATE`) |
/// | 5 ([`APP_VERSION_5`]) | [`Sregs`](crate::Sregs) v2 gains `pdptrs` | a PAE guest's CPU-held PDPTRs, which `KVM_SET_SREGS` silently reloads from memory (`KVM_GET_SREGS2`) |
/// | 6 ([`APP_VERSION_6`]) | [`MicrovmState`] v3 gains `memory_source` ([`MemorySource`]: inline, a memory file with each region's guest address, size, file offset and CRC-64, or a diff layer) | guest memory at real sizes: beside the state file, mapped lazily on restore, instead of inside the 10 MiB state |
///
/// Rollback from 2 to 1 loses the TSC frequency (the restored vCPU keeps the target host's,
/// which is right on the same host) and the host clock readings, whose flags are cleared so
/// that an older build never sees a flag without its value (`ClockState`'s `ser_fn`).
/// Rollback from 3 to 2 loses the host facts: a build of app version 2 does not check them,
/// and a state of app version 2 or older reads empty facts, which no check compares.
/// Rollback from 4 to 3 loses the nested state, which builds of app version 3 never saved nor
/// restored: a guest that runs no nested guest (`None`, or a header without VMXON) loses
/// nothing. Rollback from 5 to 4 loses the PDPTRs: the older build reloads them from guest
/// memory, which differs only for a PAE guest that rewrote its PDPT without reloading CR3.
///
/// Rollback from 4 to 3 and older: those builds know guest memory only inside the state
/// ([`MemoryRegionState::contents`]). A state whose memory is in a memory file or a diff
/// ([`MemorySource::File`], [`MemorySource::Diff`]) is never written for them as is (it
/// would read as "memory managed elsewhere" and resume on zeroed memory):
/// [`MicrovmState::save_with_memory`] writes the memory inline instead when the whole state
/// then fits the 10 MiB cap those builds load by default, and otherwise refuses with
/// [`KvmStateError::MemoryTooLargeForAppVersion`]; [`MicrovmState::save_to_file`] and
/// [`MicrovmState::to_snapshot_bytes`] refuse with [`KvmStateError::MemoryOutsideState`], and
/// a VMM's own state type that embeds [`MicrovmState`] gets the `ser_fn` refusal
/// (`VersionizeError::Semantic`). States of app version 3 and older read
/// [`MemorySource::Inline`], which is what they are.
///
/// The guard test `tests/schema.rs` checks the committed schema file of each app version
/// (`kvm-state/schema/v<N>.json`) and that the newest app version maps every state type to
/// its newest version; a new app version's file is written with
/// `VERSIONIZE_BLESS=1 cargo test -p kvm-state --test schema` and committed with the release.
///
/// # In a VMM's own version map
///
/// A VMM whose state embeds these types numbers its app versions its own way and takes up
/// each release of this crate with one line, [`VersionMap::adopt`], in the app version that
/// takes it up:
///
/// ```
/// # #[cfg(target_arch = "x86_64")] {
/// use kvm_state::{version_map as kvm_state_map, APP_VERSION_2, CURRENT_APP_VERSION};
/// use kvm_state::{ClockState, VcpuState};
/// use versionize::prelude::*;
///
/// #[derive(Versionize)]
/// struct VmmState {
///     vcpus: Vec<VcpuState>,
///     clock: ClockState,
///     #[version(start = 2)]
///     balloon_pages: u32,
/// }
///
/// fn version_map() -> VersionMap {
///     let mut map = VersionMap::new(); // app 1: kvm-state's app version 1
///     map.new_version() // app 2: our balloon
///         .set_type_version(VmmState::type_id(), 2);
///     map.new_version() // app 3: kvm-state's app version 2
///         .adopt(&kvm_state_map(), APP_VERSION_2)
///         .expect("kvm-state has app version 2");
///     map.new_version() // app 4: kvm-state's newest app version
///         .adopt(&kvm_state_map(), CURRENT_APP_VERSION)
///         .expect("kvm-state has its current app version");
///     map
/// }
///
/// let map = version_map();
/// assert_eq!(map.get_type_version(2, VcpuState::type_id()), 1);
/// assert_eq!(map.get_type_version(3, VcpuState::type_id()), 2);
/// assert_eq!(map.get_type_version(3, ClockState::type_id()), 2);
/// assert_eq!(map.get_type_version(4, VcpuState::type_id()), VcpuState::version());
/// versionize::schema::check_latest::<VmmState>(&map).unwrap();
/// # }
/// ```
///
/// # Size
///
/// A snapshot file holds the whole state, guest memory included, and both the `snapshot`
/// crate's loader and the `versionize` decoder refuse more than 10 MiB by default
/// ([`snapshot::DEFAULT_MAX_STATE_LEN`], [`versionize::Limits`]): enough for the 2 MiB demo
/// guest, not for a real one. For larger guests keep memory in a memory file beside the state
/// file ([`MicrovmState::save_with_memory`], [`MicrovmState::load_with_memory`], app version
/// 4 on), or load with [`MicrovmState::load_file_with_cap`], which raises both limits.
///
/// # Example
/// ```
/// # #[cfg(target_arch = "x86_64")] {
/// use kvm_state::{version_map, CURRENT_APP_VERSION};
/// use kvm_state::VcpuState;
/// use versionize::prelude::Versionize;
///
/// let map = version_map();
/// assert_eq!(map.latest_version(), CURRENT_APP_VERSION);
/// assert_eq!(map.get_type_version(1, VcpuState::type_id()), 1);
/// assert_eq!(map.get_type_version(2, VcpuState::type_id()), 2);
/// # }
/// ```
pub fn version_map() -> VersionMap {
    let mut map = VersionMap::new();
    // App version 2.
    map.new_version()
        .set_type_version(VcpuState::type_id(), 2)
        .set_type_version(ClockState::type_id(), 2);
    // App version 3.
    map.new_version()
        .set_type_version(MicrovmState::type_id(), 2);
    // ---- releases (issue 15): app versions 4 and 5, begin ----
    // App version 4 (release 0.2.0): nested-virtualization state.
    map.new_version().set_type_version(VcpuState::type_id(), 3);
    // App version 5 (release 0.3.0): the PAE PDPTRs.
    map.new_version()
        .set_type_version(crate::vcpu::Sregs::type_id(), 2);
    // ---- releases (issue 15): app versions 4 and 5, end ----
    // ---- App version 6 (guest memory files, issue 14) ----
    map.new_version()
        .set_type_version(MicrovmState::type_id(), 3);
    // ---- end of app version 6 ----
    map
}

/// One region of guest memory: where it is, how large, and (optionally) what it holds.
#[derive(Clone, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MemoryRegionState {
    /// Guest physical address of the first byte.
    pub guest_phys_addr: u64,
    /// Size of the region, in bytes.
    pub size: u64,
    /// The region's bytes (`size` of them), or empty when the VMM saves guest memory
    /// elsewhere (a separate memory file).
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for MemoryRegionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents are megabytes: show their length only.
        f.debug_struct("MemoryRegionState")
            .field(
                "guest_phys_addr",
                &format_args!("{:#x}", self.guest_phys_addr),
            )
            .field("size", &self.size)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .finish()
    }
}

impl MemoryRegionState {
    /// A region holding `contents`, at `guest_phys_addr`.
    pub fn with_contents(guest_phys_addr: u64, contents: Vec<u8>) -> Self {
        MemoryRegionState {
            guest_phys_addr,
            size: contents.len() as u64,
            contents,
        }
    }

    /// Whether the contents are in the state (rather than saved elsewhere).
    pub fn has_contents(&self) -> bool {
        !self.contents.is_empty()
    }

    /// Checks that the region has the address and size of a region of guest memory, and that
    /// its contents, if any, are exactly `size` bytes.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::MemoryRegion`] saying what does not match.
    pub fn check(&self, guest_phys_addr: u64, size: u64) -> Result<()> {
        let reason = if self.guest_phys_addr != guest_phys_addr {
            "guest physical address differs"
        } else if self.size != size {
            "size differs"
        } else if self.has_contents() && self.contents.len() as u64 != self.size {
            "contents are not `size` bytes"
        } else {
            return Ok(());
        };
        Err(KvmStateError::MemoryRegion {
            guest_phys_addr: self.guest_phys_addr,
            size: self.size,
            reason,
        })
    }
}

/// State of the emulated devices, in the order the VMM created them.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct DevicesState {
    /// 16550 UARTs.
    pub serial: Vec<SerialState>,
    /// virtio-mmio transports and their queues.
    pub virtio_mmio: Vec<MmioTransportState>,
}

/// Everything needed to resume a microVM in a fresh VM: KVM's VM-wide state, every vCPU, the
/// emulated devices and guest memory.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MicrovmState {
    /// Irqchips, PIT and clock.
    pub vm: VmState,
    /// The vCPUs, by vCPU id.
    pub vcpus: Vec<VcpuState>,
    /// Emulated devices.
    pub devices: DevicesState,
    /// Guest memory regions.
    pub memory: Vec<MemoryRegionState>,
    /// The facts of the host the state was saved on, which a restore checks
    /// ([`HostSupport::check_facts`](crate::HostSupport::check_facts)). Added in version 2 of
    /// `MicrovmState` (app version 3): older snapshots read empty facts, which no check
    /// compares.
    #[version(start = 2)]
    pub host: HostFacts,
    /// Where guest memory is: in [`memory`](Self::memory) (inline), in a memory file beside
    /// the state file, or in a diff on top of one. Added in version 3 of `MicrovmState` (app
    /// version 4): older snapshots read [`MemorySource::Inline`], and a state whose memory is
    /// outside is never written for an older app version (see [`version_map`]).
    #[version(start = 3, ser_fn = "refuse_memory_outside")]
    pub memory_source: MemorySource,
}

/// Where a [`MicrovmState`]'s guest memory is.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub enum MemorySource {
    /// In the state: each region's [`MemoryRegionState::contents`], or, where those are
    /// empty, kept by the VMM itself (what app versions 1 to 3 know).
    #[default]
    Inline,
    /// In a full memory file beside the state file (`<state>.mem`, see
    /// [`MicrovmState::memory_file_path`]): each region's guest address, size, file offset
    /// and CRC-64, and the file's layer identity. The regions of
    /// [`MicrovmState::memory`] have the same addresses and sizes, in the same order, and no
    /// contents.
    File(MemoryFileDescriptor),
    /// In a chain: a full memory file and diffs on top of it, the last of which is the diff
    /// file beside the state file (`<state>.mem`), whose layer this is. Restore it with
    /// [`MicrovmState::load_with_memory_chain`], which refuses any other chain.
    Diff(MemoryLayerId),
}

impl MemorySource {
    /// Whether guest memory is outside the state (a memory file or a diff).
    pub fn is_outside(&self) -> bool {
        !matches!(self, MemorySource::Inline)
    }
}

impl MicrovmState {
    /// The `ser_fn` of `memory_source`: an app version before 4 cannot say that memory is in
    /// a file, so such a state is refused rather than written as one whose memory is missing.
    fn refuse_memory_outside(&mut self, _type_version: u16) -> versionize::VersionizeResult<()> {
        if self.memory_source.is_outside() {
            return Err(versionize::VersionizeError::Semantic(
                "guest memory is in a memory file, which app versions before 4 cannot record"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Refuses to write a state whose memory is outside it at an app version before 4.
    fn check_writable_at(&self, app_version: u16) -> Result<()> {
        if app_version < APP_VERSION_6 && self.memory_source.is_outside() {
            return Err(KvmStateError::MemoryOutsideState { app_version });
        }
        Ok(())
    }

    /// Writes the state to a snapshot file at `path`, atomically, at `app_version` of
    /// [`version_map`] ([`CURRENT_APP_VERSION`], or older for an older build).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::MemoryOutsideState`] for a state whose memory is in a file at an app
    /// version before 4 (use [`save_with_memory`](Self::save_with_memory));
    /// [`KvmStateError::Snapshot`] if the app version is not in the map, encoding fails, or
    /// the file cannot be written.
    pub fn save_to_file(&self, path: impl AsRef<Path>, app_version: u16) -> Result<()> {
        self.check_writable_at(app_version)?;
        Snapshot::new(version_map(), app_version)
            .save_to_file(path, self)
            .map_err(|source| KvmStateError::Snapshot {
                action: "save",
                source,
            })
    }

    /// Encodes the state as a snapshot (magic, header, state, CRC-64) in memory.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::MemoryOutsideState`] as [`save_to_file`](Self::save_to_file);
    /// [`KvmStateError::Snapshot`] if the app version is not in the map or encoding fails.
    pub fn to_snapshot_bytes(&self, app_version: u16) -> Result<Vec<u8>> {
        self.check_writable_at(app_version)?;
        let mut out = Vec::new();
        Snapshot::new(version_map(), app_version)
            .save(&mut out, self)
            .map_err(|source| KvmStateError::Snapshot {
                action: "save",
                source,
            })?;
        Ok(out)
    }

    /// Reads a snapshot file written by this build or an older one; returns the state and
    /// the app version it was written at. At most 10 MiB of state (see [`version_map`]).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Snapshot`] if the file cannot be read, is not a snapshot, fails its
    /// CRC, is of a newer app version than this build knows, or is malformed.
    pub fn load_file(path: impl AsRef<Path>) -> Result<(Self, u16)> {
        Self::load(path.as_ref(), version_map(), &LoadOptions::default())
    }

    /// As [`load_file`](Self::load_file), accepting up to `max_state_len` bytes of state
    /// (and allowing the decoder to allocate that much).
    ///
    /// # Errors
    ///
    /// As [`load_file`](Self::load_file).
    pub fn load_file_with_cap(path: impl AsRef<Path>, max_state_len: u64) -> Result<(Self, u16)> {
        let limits = Limits::default()
            .with_budget(max_state_len)
            .with_max_collection_len(max_state_len);
        Self::load(
            path.as_ref(),
            version_map().with_limits(limits),
            &LoadOptions::default().with_max_state_len(max_state_len),
        )
    }

    pub(crate) fn load(path: &Path, map: VersionMap, options: &LoadOptions) -> Result<(Self, u16)> {
        Snapshot::load_file_with(path, map, options).map_err(|source| KvmStateError::Snapshot {
            action: "load",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::QueueState;
    use crate::test_util::{at_app_version, through_bytes};
    use crate::vcpu::Regs;

    fn sample() -> MicrovmState {
        MicrovmState {
            vm: VmState {
                clock: ClockState {
                    clock: 1,
                    flags: kvm_bindings::KVM_CLOCK_REALTIME,
                    realtime: 2,
                    host_tsc: 3,
                },
                ..Default::default()
            },
            vcpus: vec![
                VcpuState {
                    regs: Regs {
                        rip: 0x8000,
                        ..Default::default()
                    },
                    tsc_khz: Some(3_000_000),
                    ..Default::default()
                };
                2
            ],
            devices: DevicesState {
                serial: vec![SerialState {
                    line_status: 0x60,
                    in_buffer: b"ok".to_vec(),
                    ..Default::default()
                }],
                virtio_mmio: vec![MmioTransportState {
                    device_status: 0xf,
                    queues: vec![QueueState {
                        size: 256,
                        ready: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            },
            memory: vec![MemoryRegionState::with_contents(0, vec![0xa5; 4096])],
            host: HostFacts {
                cpu_vendor: "AuthenticAMD".to_owned(),
                cpu_family: 0x19,
                cpu_model: 0x11,
                cpu_stepping: 1,
                tsc_khz: Some(3_000_000),
                kvm_capabilities: vec![0, 33],
                kernel_release: "6.18.0".to_owned(),
            },
            memory_source: MemorySource::Inline,
        }
    }

    #[test]
    fn test_microvm_state_roundtrip_through_bytes() {
        let state = sample();
        assert_eq!(through_bytes(&state), state);
    }

    #[test]
    fn test_microvm_state_rollback_to_app_version_1() {
        let state = sample();
        let (v1, v1_len) = at_app_version(&state, APP_VERSION_1);
        let (_, v2_len) = at_app_version(&state, APP_VERSION_2);
        // Two vCPUs lose `tsc_khz` (5 bytes each), the clock loses 16 bytes.
        assert_eq!(v2_len - v1_len, 2 * 5 + 16);
        let mut expected = state.clone();
        for vcpu in &mut expected.vcpus {
            vcpu.tsc_khz = None;
        }
        expected.vm.clock = ClockState {
            clock: 1,
            ..Default::default()
        };
        expected.host = HostFacts::default();
        assert_eq!(v1, expected);
    }

    #[test]
    fn test_microvm_state_rollback_to_app_version_2_drops_host_facts() {
        let state = sample();
        assert!(state.host.is_known());
        let (v2, _) = at_app_version(&state, APP_VERSION_2);
        let (v3, _) = at_app_version(&state, APP_VERSION_3);
        assert_eq!(v3, state);
        assert_eq!(v2.host, HostFacts::default());
        let mut expected = state.clone();
        expected.host = HostFacts::default();
        assert_eq!(v2, expected);
        assert_eq!(MicrovmState::version(), 3);
    }

    /// The newest app version maps every type to its latest version: a type whose layout
    /// changed without an entry in `version_map` fails here.
    #[test]
    fn test_version_map_covers_latest_type_versions() {
        use crate::*;

        fn check<T: Versionize + 'static>(map: &VersionMap, name: &str) {
            assert_eq!(
                map.get_type_version(CURRENT_APP_VERSION, T::type_id()),
                T::version(),
                "{name}"
            );
        }
        let map = version_map();
        assert_eq!(map.latest_version(), CURRENT_APP_VERSION);
        macro_rules! check_all {
            ($($t:ty),* $(,)?) => { $(check::<$t>(&map, stringify!($t));)* };
        }
        check_all!(
            MicrovmState,
            MemoryRegionState,
            MemorySource,
            MemoryFileDescriptor,
            MemoryFileRegion,
            MemoryLayerId,
            DevicesState,
            SerialState,
            MmioTransportState,
            QueueState,
            VmState,
            PicState,
            IoapicState,
            IrqchipState,
            PitState,
            PitChannelState,
            ClockState,
            VcpuState,
            Regs,
            Sregs,
            Segment,
            DTable,
            Xsave,
            Xcrs,
            Xcr,
            DebugRegs,
            Lapic,
            MpState,
            VcpuEvents,
            ExceptionEvent,
            InterruptEvent,
            NmiEvent,
            SmiEvent,
            TripleFaultEvent,
            Cpuid,
            CpuidEntry,
            Msrs,
            MsrEntry,
        );
    }

    #[test]
    fn test_snapshot_file_roundtrip_every_app_version() {
        let dir = std::env::temp_dir().join(format!("kvm-state-microvm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = sample();
        for app_version in [
            APP_VERSION_1,
            APP_VERSION_2,
            APP_VERSION_3,
            APP_VERSION_4,
            APP_VERSION_5,
            APP_VERSION_6,
        ] {
            let path = dir.join(format!("v{app_version}.snap"));
            state.save_to_file(&path, app_version).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes, state.to_snapshot_bytes(app_version).unwrap());
            let (loaded, version) = MicrovmState::load_file(&path).unwrap();
            assert_eq!(version, app_version);
            assert_eq!(loaded, at_app_version(&state, app_version).0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_snapshot_errors() {
        let dir = std::env::temp_dir().join(format!("kvm-state-errors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = sample();
        // An app version this build does not know.
        let unknown = CURRENT_APP_VERSION + 1;
        assert!(matches!(
            state.save_to_file(dir.join("unknown.snap"), unknown),
            Err(KvmStateError::Snapshot {
                action: "save",
                source: snapshot::SnapshotError::InvalidDataVersion { found, .. }
            }) if found == unknown
        ));
        // A file over the cap, which the raised cap accepts.
        let big = MicrovmState {
            memory: vec![MemoryRegionState::with_contents(0, vec![1; 11 << 20])],
            ..Default::default()
        };
        let path = dir.join("big.snap");
        big.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
        assert!(matches!(
            MicrovmState::load_file(&path),
            Err(KvmStateError::Snapshot {
                action: "load",
                source: snapshot::SnapshotError::StateTooLarge { .. }
            })
        ));
        let (loaded, _) = MicrovmState::load_file_with_cap(&path, 12 << 20).unwrap();
        assert_eq!(loaded, big);
        // A missing file.
        assert!(matches!(
            MicrovmState::load_file(dir.join("missing.snap")),
            Err(KvmStateError::Snapshot { action: "load", .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_memory_region_check() {
        let region = MemoryRegionState::with_contents(0x1000, vec![0; 16]);
        assert!(region.check(0x1000, 16).is_ok());
        assert!(matches!(
            region.check(0, 16),
            Err(KvmStateError::MemoryRegion {
                reason: "guest physical address differs",
                ..
            })
        ));
        assert!(region.check(0x1000, 32).is_err());
        let torn = MemoryRegionState {
            contents: vec![0; 8],
            ..region.clone()
        };
        assert!(torn.check(0x1000, 16).is_err());
        let elsewhere = MemoryRegionState {
            contents: Vec::new(),
            ..region
        };
        assert!(!elsewhere.has_contents());
        assert!(elsewhere.check(0x1000, 16).is_ok());
        assert_eq!(
            format!(
                "{:?}",
                MemoryRegionState::with_contents(0x1000, vec![0; 16])
            ),
            "MemoryRegionState { guest_phys_addr: 0x1000, size: 16, contents: <16 bytes> }"
        );
    }
}
