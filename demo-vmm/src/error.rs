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
        size: u64,
        /// Why it could not be mapped.
        #[source]
        source: Box<kvm_state::MemoryError>,
    },
    /// A guest memory size the demo guest cannot use.
    #[error("guest memory of {size} bytes: the demo guest needs a multiple of 2 MiB from 2 MiB to 1 GiB")]
    MemorySize {
        /// The size asked for, in bytes.
        size: u64,
    },
    /// A state whose guest memory is in a memory file or a diff, given to a restore that
    /// takes memory from the state.
    #[error("the state's guest memory is in a memory file: restore it with DemoVm::restore_from_files or restore_from_chain")]
    MemoryOutsideState,
    /// Saving, reading or combining guest memory files failed (boxed, as in
    /// [`kvm_state::KvmStateError::Memory`]).
    #[error(transparent)]
    MemoryFile(Box<kvm_state::MemoryError>),
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
    /// The saved UART holds more pending input than its FIFO can.
    #[error("the saved uart holds {found} input bytes, its fifo holds {capacity}")]
    SerialInput {
        /// Pending input bytes in the state.
        found: usize,
        /// Capacity of the UART's FIFO.
        capacity: usize,
    },
}

impl From<kvm_state::MemoryError> for DemoVmError {
    fn from(error: kvm_state::MemoryError) -> Self {
        DemoVmError::MemoryFile(Box::new(error))
    }
}
