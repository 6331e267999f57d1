//! The error type of this crate.

/// Result alias used by every fallible function of this crate.
pub type Result<T> = std::result::Result<T, KvmStateError>;

/// Everything that can go wrong while reading state from, or writing state to, KVM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvmStateError {
    /// A KVM ioctl failed; `ioctl` names it and `source` carries the errno.
    #[error("ioctl {ioctl} failed")]
    Ioctl {
        /// Name of the ioctl, e.g. `KVM_GET_REGS`.
        ioctl: &'static str,
        /// The errno returned by the kernel.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// `KVM_GET_MSRS` read fewer MSRs than asked for.
    #[error("KVM_GET_MSRS read {read} of {requested} msrs, first unreadable msr is {index:#x}")]
    MsrRead {
        /// Index of the first MSR the kernel did not read.
        index: u32,
        /// Number of MSRs read.
        read: usize,
        /// Number of MSRs requested.
        requested: usize,
    },
    /// `KVM_SET_MSRS` accepted fewer MSRs than given.
    #[error("KVM_SET_MSRS wrote {written} of {requested} msrs, first refused msr is {index:#x}")]
    MsrWrite {
        /// Index of the first MSR the kernel refused.
        index: u32,
        /// Number of MSRs written.
        written: usize,
        /// Number of MSRs given.
        requested: usize,
    },
    /// A flexible-array KVM structure could not be built for this many entries.
    #[error("cannot build {what} with {entries} entries")]
    TooManyEntries {
        /// Which structure, e.g. `kvm_msrs`.
        what: &'static str,
        /// Number of entries asked for.
        entries: usize,
        /// Why vmm-sys-util refused.
        #[source]
        source: vmm_sys_util::fam::Error,
    },
    /// A state field does not have the length the kernel structure needs.
    #[error("{what} has {found} elements, expected {expected}")]
    BadLength {
        /// Which field, e.g. `lapic registers`.
        what: &'static str,
        /// Length found in the state.
        found: usize,
        /// Length the kernel structure has.
        expected: usize,
    },
    /// The saved xsave area holds non-zero state beyond what this host's KVM accepts.
    #[error("saved xsave area has {saved} bytes of state, this host accepts {host} bytes")]
    XsaveTooLarge {
        /// Size of the non-zero saved area, in bytes.
        saved: usize,
        /// Size `KVM_SET_XSAVE` reads on this host, in bytes.
        host: usize,
    },
    /// A `kvm_irqchip` carried a chip id this crate does not know.
    #[error("unknown irqchip id {0}")]
    UnknownIrqchip(u32),
    /// The saved TSC frequency differs from the host's and cannot be set.
    #[error("saved tsc frequency {saved_khz} kHz differs from the vcpu's {current_khz:?} kHz and cannot be set")]
    TscFrequency {
        /// TSC frequency of the saved vCPU, in kHz.
        saved_khz: u32,
        /// TSC frequency of the target vCPU in kHz, if the kernel reported one.
        current_khz: Option<u32>,
        /// Why `KVM_SET_TSC_KHZ` failed.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A pause (`KVM_RUN` with `immediate_exit` set) did not return `EINTR`.
    #[error("KVM_RUN with immediate_exit set returned {0} instead of EINTR")]
    PauseNotInterrupted(&'static str),
    /// Writing or reading a snapshot file failed; the message names the step, the path and
    /// the cause (`cannot save snapshot: write /vm.snap: no storage space`).
    #[error("cannot {action} snapshot: {source}")]
    Snapshot {
        /// What was being done: `save` or `load`.
        action: &'static str,
        /// Why the snapshot crate failed.
        #[source]
        source: snapshot::SnapshotError,
    },
    /// A saved memory region does not fit the guest memory it is restored into.
    #[error("memory region at {guest_phys_addr:#x} of {size} bytes does not match guest memory: {reason}")]
    MemoryRegion {
        /// Guest physical address of the saved region.
        guest_phys_addr: u64,
        /// Size of the saved region, in bytes.
        size: u64,
        /// What does not match.
        reason: &'static str,
    },
    /// The state has another number of vCPUs than the VM it is restored into.
    #[error("the state has {saved} vcpus, the target vm has {target}")]
    VcpuCount {
        /// vCPUs in the saved state.
        saved: usize,
        /// vCPUs of the target VM.
        target: usize,
    },
    /// The saved CPUID sets feature bits that this host does not offer to its guests.
    #[error("cpuid leaf {function:#x} index {index} {register} sets bits {bits:#010x} that this host does not offer")]
    CpuidNotOffered {
        /// Leaf (EAX input).
        function: u32,
        /// Sub-leaf (ECX input).
        index: u32,
        /// Output register holding the bits: `eax`, `ebx`, `ecx` or `edx`.
        register: &'static str,
        /// The saved bits the host does not offer.
        bits: u32,
    },
    /// Two CPUID entries of the saved table answer the same `CPUID` query (same function, and
    /// the same index or one of them without `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`).
    #[error("cpuid leaf {function:#x} index {index} duplicates an earlier entry")]
    CpuidDuplicate {
        /// Leaf (EAX input) of the second entry.
        function: u32,
        /// Sub-leaf (ECX input) of the second entry.
        index: u32,
    },
    /// The state has another number of devices of a kind than the VM it is restored into.
    #[error("the state has {saved} {kind} device(s), the target vm has {target}")]
    DeviceCount {
        /// Kind of device: `serial` or `virtio-mmio`.
        kind: &'static str,
        /// Devices of that kind in the saved state.
        saved: usize,
        /// Devices of that kind in the target VM.
        target: usize,
    },
    /// A vCPU's saved LAPIC holds another APIC id than the target VM gives that vCPU
    /// ([`VmLayout::apic_ids`](crate::VmLayout::apic_ids)): vCPU states out of order, or
    /// restored into other vCPU ids.
    #[error("the state of vcpu {index} has apic id {saved}, the target vm gives vcpu {index} apic id {expected}")]
    ApicId {
        /// Index of the vCPU in the state.
        index: usize,
        /// The APIC id in the vCPU's saved LAPIC page.
        saved: u32,
        /// The APIC id of the target VM's vCPU `index`.
        expected: u32,
    },
    /// Two vCPUs of the state hold the same APIC id in their LAPIC pages.
    #[error("vcpus {first} and {index} of the state have the same apic id {apic_id}")]
    ApicIdDuplicate {
        /// Index of the first vCPU with that id.
        first: usize,
        /// Index of the second vCPU with that id.
        index: usize,
        /// The APIC id both hold.
        apic_id: u32,
    },
    /// The state of one vCPU is refused; `source` says why.
    #[error("vcpu {index}")]
    Vcpu {
        /// Index of the vCPU in the state (its vCPU id).
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<KvmStateError>,
    },
    /// A vCPU index past the vCPUs of the state.
    #[error("the state has no vcpu {index}, it has {vcpus}")]
    NoSuchVcpu {
        /// The index asked for.
        index: usize,
        /// Number of vCPUs in the state.
        vcpus: usize,
    },
    /// Setting up or sending the signal that kicks a vCPU thread out of `KVM_RUN` failed.
    #[error("cannot {action} the vcpu kick signal {signal}")]
    Kick {
        /// What failed: `use`, `block`, `send` or `take`.
        action: &'static str,
        /// The signal number.
        signal: i32,
        /// The error of the system call.
        #[source]
        source: std::io::Error,
    },
    /// The state was saved on a CPU of another vendor than this host's.
    #[error("the state was saved on a {saved} cpu, this host's is {host}")]
    HostVendor {
        /// Vendor recorded in the state.
        saved: String,
        /// This host's vendor.
        host: String,
    },
    /// This host's KVM lacks a capability that the state's host had and a restore relies on.
    #[error("this host's kvm lacks {capability}, which the state relies on")]
    HostCapability {
        /// Name of the capability, e.g. `KVM_CAP_PIT2`.
        capability: &'static str,
    },
    /// The saved TSC frequency is below this host's, which cannot scale the TSC.
    #[error(
        "saved tsc frequency {saved_khz} kHz is below this host's {host_khz} kHz, which kvm \
         cannot scale without KVM_CAP_TSC_CONTROL"
    )]
    TscNotSettable {
        /// TSC frequency of the saved vCPU, in kHz.
        saved_khz: u32,
        /// TSC frequency of this host's vCPUs, in kHz.
        host_khz: u32,
    },
    /// A state whose guest memory is in a memory file or a diff was to be written for an app
    /// version that only knows memory inside the state.
    #[error(
        "guest memory is outside the state, which app version {app_version} cannot record: \
         save with save_with_memory, which writes it inline"
    )]
    MemoryOutsideState {
        /// The app version asked for.
        app_version: u16,
    },
    /// Guest memory written inline for an older app version makes the state larger than
    /// that version loads.
    #[error(
        "guest memory inline makes a state of {state_len} bytes, over the {cap} bytes app \
         version {app_version} loads; write app version 6 or newer, which keeps memory in a file"
    )]
    MemoryTooLargeForAppVersion {
        /// The app version asked for.
        app_version: u16,
        /// Length the snapshot would have.
        state_len: u64,
        /// The most that app version loads by default.
        cap: u64,
    },
    /// A memory file, diff or chunk store could not be saved, read or applied (boxed: the
    /// memory errors carry paths and layer ids, and would make every result of this crate
    /// larger).
    #[error(transparent)]
    Memory(Box<crate::memory::MemoryError>),
    /// The state's memory is not where the call expects it: a diff snapshot given to a
    /// load that takes a memory file, a base of a chain that is not a full memory file, or a
    /// chain that ends at another memory layer than the state records.
    #[error("{path}: {reason}", path = path.display())]
    MemorySource {
        /// The state file.
        path: std::path::PathBuf,
        /// What does not match.
        reason: String,
    },
}

impl From<crate::memory::MemoryError> for KvmStateError {
    fn from(error: crate::memory::MemoryError) -> Self {
        KvmStateError::Memory(Box::new(error))
    }
}

impl KvmStateError {
    /// Builds the error for a failed ioctl.
    pub(crate) fn ioctl(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |source| KvmStateError::Ioctl { ioctl, source }
    }
}
