//! The error type of the demo VMM.

use std::time::Duration;

use kvm_state::KvmStateError;

/// Result alias of the demo VMM.
pub type Result<T> = std::result::Result<T, DemoVmError>;

/// Everything that can go wrong while building, running, saving or restoring the demo VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoVmError {
    /// Saving or restoring KVM state, or a snapshot file, failed in `kvm-state`.
    #[error(transparent)]
    State(#[from] KvmStateError),
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A KVM ioctl the VMM makes itself (creating or setting up the VM) failed.
    #[error("ioctl {ioctl} failed")]
    Ioctl {
        /// Name of the ioctl, e.g. `KVM_CREATE_VCPU`.
        ioctl: &'static str,
        /// The errno returned by the kernel.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The eventfd of the UART's interrupt line could not be created.
    #[error("cannot create the uart interrupt eventfd")]
    EventFd(#[source] std::io::Error),
    /// The signal handler that kicks vCPU threads out of `KVM_RUN` could not be installed.
    #[error("cannot install the vcpu kick signal handler")]
    KickSignal(#[source] vmm_sys_util::errno::Error),
    /// A vCPU thread or the virtio worker thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name: `vcpu0`, ..., or `virtio`.
        name: String,
        /// Why the thread could not be spawned.
        #[source]
        source: std::io::Error,
    },
    /// Mapping guest memory failed.
    #[error("cannot map {size} bytes of guest memory")]
    GuestMemory {
        /// Size of the mapping asked for.
        size: usize,
        /// Why `vm-memory` could not map it.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// A guest memory access fell outside the guest memory.
    #[error("guest memory access of {len} bytes at {offset:#x} is out of bounds")]
    GuestMemoryBounds {
        /// Guest physical address of the access.
        offset: u64,
        /// Length of the access.
        len: usize,
    },
    /// The emulated UART failed to handle a guest write.
    #[error("uart failed")]
    Serial(#[source] vm_superio::serial::Error<std::io::Error>),
    /// A vCPU stopped in a way the guest never does when all is well.
    #[error("vcpu {vcpu} stopped unexpectedly: {reason}")]
    UnexpectedExit {
        /// Index of the vCPU.
        vcpu: usize,
        /// What happened, e.g. `guest exception, vector 0xd`.
        reason: String,
    },
    /// No vCPU reported anything for this long: the guest hangs.
    #[error("no vcpu reported within {0:?}")]
    Timeout(Duration),
    /// A virtqueue state the device model refuses (size, addresses).
    #[error("virtio queue {queue}: invalid state")]
    VirtioQueue {
        /// Index of the queue.
        queue: usize,
        /// Why `virtio-queue` refused it.
        #[source]
        source: virtio_queue::Error,
    },
    /// The virtio device could not complete a request in guest memory.
    #[error("virtio device: cannot complete request {head}")]
    VirtioRequest {
        /// Head descriptor index of the request.
        head: u16,
        /// Why `virtio-queue` failed.
        #[source]
        source: virtio_queue::Error,
    },
    /// The state has another number of queues for the virtio device than it has (one).
    #[error("the saved virtio device has {0} queues, the demo device has 1")]
    VirtioQueueCount(usize),
    /// The state has more virtio-mmio devices than the demo VM (one).
    #[error("the state has {0} virtio-mmio devices, the demo vm has 1")]
    VirtioCount(usize),
    /// The state has another number of vCPUs than the demo VM.
    #[error("the state has {saved} vcpus, the demo vm has {target}")]
    VcpuCount {
        /// vCPUs in the saved state.
        saved: usize,
        /// vCPUs of the demo VM.
        target: usize,
    },
    /// The state of a vCPU belongs to another vCPU (its LAPIC id says so): states out of order.
    #[error("the state of vcpu {vcpu} has lapic id {lapic_id}")]
    VcpuOrder {
        /// Index of the vCPU the state is restored into.
        vcpu: usize,
        /// The APIC id in the state's LAPIC page.
        lapic_id: u32,
    },
    /// The state has another number of memory regions than the demo VM (one).
    #[error("the state has {0} memory regions, the demo vm has 1")]
    MemoryRegionCount(usize),
    /// The state has more UARTs than the demo VM (one).
    #[error("the state has {0} uarts, the demo vm has 1")]
    SerialCount(usize),
    /// The saved UART holds more pending input than its FIFO can.
    #[error("the saved uart holds {found} input bytes, its fifo holds {capacity}")]
    SerialInput {
        /// Pending input bytes in the state.
        found: usize,
        /// Capacity of the UART's FIFO.
        capacity: usize,
    },
}
