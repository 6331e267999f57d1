//! A virtio-mmio device of the demo's own, on `virtio-queue`: one queue whose requests each
//! carry a 32-bit payload (a device-readable descriptor) and get a 32-bit response (a chained
//! device-writable descriptor). The device hands each payload to the host, as a console or
//! network device transmits what it is given, and answers with the payload's bytes swapped.
//!
//! The VMM completes one request at a time on a worker thread (see [`crate::DemoVm::run`]), so
//! requests stay in flight for a while after the driver submits them: a snapshot then holds
//! requests the device has not consumed, and the restored device completes them. Its state is
//! saved as a [`MmioTransportState`] whose queue is the `virtio_queue::QueueState` as a
//! [`QueueState`].

use kvm_state::{MmioTransportState, QueueState};
use virtio_queue::{Queue, QueueT};
use vm_memory::Bytes;

use crate::error::{DemoVmError, Result};
use crate::memory::Memory;

/// Guest physical address of the device's MMIO registers (outside guest memory, so every
/// access exits to the VMM).
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of the MMIO register window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The DeviceID register: not a standard virtio device type, so no guest OS binds a driver
/// to it; only the demo guest's driver does.
pub const VIRTIO_DEVICE_ID: u32 = 0x2a;
/// The largest queue the device offers (QueueNumMax).
pub const VIRTIO_QUEUE_MAX_SIZE: u16 = 16;

const MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4f4d_4544; // "DEMO"
/// The only feature the device offers: VIRTIO_F_VERSION_1 (bit 32).
const DEVICE_FEATURES: u64 = 1 << 32;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const INTERRUPT_USED_BUFFER: u32 = 1;

/// What the device did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Completed {
    /// The request's payload, if it had a readable descriptor of at least 4 bytes.
    pub(crate) payload: Option<u32>,
}

/// The device: transport registers and its queue.
#[derive(Debug)]
pub(crate) struct VirtioDevice {
    device_status: u32,
    features_select: u32,
    acked_features_select: u32,
    acked_features: u64,
    queue_select: u32,
    interrupt_status: u32,
    config_generation: u32,
    queue: Queue,
}

impl VirtioDevice {
    /// The device after reset.
    pub(crate) fn new() -> Result<Self> {
        let queue = Queue::new(VIRTIO_QUEUE_MAX_SIZE)
            .map_err(|source| DemoVmError::VirtioQueue { queue: 0, source })?;
        Ok(VirtioDevice {
            device_status: 0,
            features_select: 0,
            acked_features_select: 0,
            acked_features: 0,
            queue_select: 0,
            interrupt_status: 0,
            config_generation: 0,
            queue,
        })
    }

    /// The device's state as `kvm-state` saves it.
    pub(crate) fn state(&self) -> MmioTransportState {
        MmioTransportState {
            device_status: self.device_status,
            features_select: self.features_select,
            acked_features_select: self.acked_features_select,
            acked_features: self.acked_features,
            queue_select: self.queue_select,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            queues: vec![QueueState::from(self.queue.state())],
        }
    }

    /// A device with a saved state; refuses a state this device cannot have.
    pub(crate) fn from_state(state: &MmioTransportState) -> Result<Self> {
        let [saved] = state.queues.as_slice() else {
            return Err(DemoVmError::VirtioQueueCount(state.queues.len()));
        };
        let invalid = |source| DemoVmError::VirtioQueue { queue: 0, source };
        if saved.max_size != VIRTIO_QUEUE_MAX_SIZE {
            return Err(invalid(virtio_queue::Error::InvalidMaxSize));
        }
        let queue = Queue::try_from(virtio_queue::QueueState::from(saved)).map_err(invalid)?;
        Ok(VirtioDevice {
            device_status: state.device_status,
            features_select: state.features_select,
            acked_features_select: state.acked_features_select,
            acked_features: state.acked_features & DEVICE_FEATURES,
            queue_select: state.queue_select,
            interrupt_status: state.interrupt_status,
            config_generation: state.config_generation,
            queue,
        })
    }

    /// Handles a guest read of `data.len()` bytes at `offset` in the register window.
    pub(crate) fn read(&self, offset: u64, data: &mut [u8]) {
        let selected = self.queue_select == 0;
        let value = match offset {
            0x000 => MAGIC,
            0x004 => MMIO_VERSION,
            0x008 => VIRTIO_DEVICE_ID,
            0x00c => VENDOR_ID,
            0x010 => match self.features_select {
                0 => DEVICE_FEATURES as u32,
                1 => (DEVICE_FEATURES >> 32) as u32,
                _ => 0,
            },
            0x034 if selected => u32::from(self.queue.max_size()),
            0x044 if selected => u32::from(self.queue.ready()),
            0x060 => self.interrupt_status,
            0x070 => self.device_status,
            0x0fc => self.config_generation,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = bytes.get(i).copied().unwrap_or(0);
        }
    }

    /// Handles a guest write of `data` at `offset` in the register window. Accesses other
    /// than 32-bit ones are ignored, as the virtio-mmio specification allows.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        let selected = self.queue_select == 0;
        match offset {
            0x014 => self.features_select = value,
            0x020 => {
                let shift = match self.acked_features_select {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let offered = (DEVICE_FEATURES >> shift) as u32;
                let word = u64::from(value & offered) << shift;
                self.acked_features = (self.acked_features & !(0xffff_ffff << shift)) | word;
            }
            0x024 => self.acked_features_select = value,
            0x030 => self.queue_select = value,
            0x038 if selected => self.queue.set_size(value as u16),
            0x044 if selected => self.queue.set_ready(value == 1),
            0x050 => {} // QueueNotify: the worker polls the queue.
            0x064 => self.interrupt_status &= !value,
            0x070 if value == 0 => self.reset(),
            0x070 => {
                // FEATURES_OK only sticks if the driver accepted VIRTIO_F_VERSION_1.
                let mut status = value;
                if status & STATUS_FEATURES_OK != 0 && self.acked_features & DEVICE_FEATURES == 0 {
                    status &= !STATUS_FEATURES_OK;
                }
                self.device_status = status;
            }
            0x080 if selected => self.queue.set_desc_table_address(Some(value), None),
            0x084 if selected => self.queue.set_desc_table_address(None, Some(value)),
            0x090 if selected => self.queue.set_avail_ring_address(Some(value), None),
            0x094 if selected => self.queue.set_avail_ring_address(None, Some(value)),
            0x0a0 if selected => self.queue.set_used_ring_address(Some(value), None),
            0x0a4 if selected => self.queue.set_used_ring_address(None, Some(value)),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.device_status = 0;
        self.features_select = 0;
        self.acked_features_select = 0;
        self.acked_features = 0;
        self.queue_select = 0;
        self.interrupt_status = 0;
        self.queue.reset();
    }

    /// Completes the oldest request the driver has made available, if the driver is ready
    /// and there is one: reads its payload, writes the response, puts it in the used ring.
    ///
    /// A request without a readable 4-byte payload or a writable 4-byte response is completed
    /// with what could be done (used length 0 when no response was written).
    pub(crate) fn process_one(&mut self, memory: &Memory) -> Result<Option<Completed>> {
        if self.device_status & STATUS_DRIVER_OK == 0 || !self.queue.ready() {
            return Ok(None);
        }
        let Some(chain) = self.queue.pop_descriptor_chain(memory) else {
            return Ok(None);
        };
        let head = chain.head_index();
        let mut payload = None;
        let mut written = 0;
        for descriptor in chain {
            if descriptor.len() < 4 {
                continue;
            }
            if descriptor.is_write_only() {
                if let (Some(p), 0) = (payload, written) {
                    let p: u32 = p;
                    if memory.write_obj(p.swap_bytes(), descriptor.addr()).is_ok() {
                        written = 4;
                    }
                }
            } else if payload.is_none() {
                payload = memory.read_obj::<u32>(descriptor.addr()).ok();
            }
        }
        self.queue
            .add_used(memory, head, written)
            .map_err(|source| DemoVmError::VirtioRequest { head, source })?;
        self.interrupt_status |= INTERRUPT_USED_BUFFER;
        Ok(Some(Completed { payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write32(device: &mut VirtioDevice, offset: u64, value: u32) {
        device.write(offset, &value.to_le_bytes());
    }

    fn read32(device: &VirtioDevice, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        device.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    /// A driver's set-up of queue 0 at `base` with 8 entries, and one request: payload at
    /// `base + 0x300`, response at `base + 0x340`.
    fn ready_device_with_request(memory: &Memory, payload: u32) -> VirtioDevice {
        let mut device = VirtioDevice::new().unwrap();
        assert_eq!(read32(&device, 0), MAGIC);
        write32(&mut device, 0x070, 3);
        write32(&mut device, 0x024, 1);
        write32(&mut device, 0x020, 1);
        write32(&mut device, 0x070, 0xb);
        assert_eq!(read32(&device, 0x070), 0xb);
        write32(&mut device, 0x038, 8);
        for (offset, addr) in [(0x080, 0x1000), (0x090, 0x1100), (0x0a0, 0x1200)] {
            write32(&mut device, offset, addr);
        }
        write32(&mut device, 0x044, 1);
        write32(&mut device, 0x070, 0xf);
        // Descriptor 0: payload, NEXT -> 1; descriptor 1: response, WRITE.
        let desc = |addr: u64, len: u32, flags: u16, next: u16| {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..].copy_from_slice(&next.to_le_bytes());
            d
        };
        crate::memory::write(memory, 0x1000, &desc(0x1300, 4, 1, 1)).unwrap();
        crate::memory::write(memory, 0x1010, &desc(0x1340, 4, 2, 0)).unwrap();
        crate::memory::write(memory, 0x1300, &payload.to_le_bytes()).unwrap();
        // Avail ring: entry 0 = head 0, idx 1.
        crate::memory::write(memory, 0x1104, &0u16.to_le_bytes()).unwrap();
        crate::memory::write(memory, 0x1102, &1u16.to_le_bytes()).unwrap();
        device
    }

    #[test]
    fn test_virtio_device_completes_a_request() {
        let memory = crate::memory::new(0x10000).unwrap();
        let mut device = ready_device_with_request(&memory, 0x1122_3344);
        let done = device.process_one(&memory).unwrap();
        assert_eq!(
            done,
            Some(Completed {
                payload: Some(0x1122_3344)
            })
        );
        let response: u32 = memory.read_obj(vm_memory::GuestAddress(0x1340)).unwrap();
        assert_eq!(response, 0x4433_2211);
        let used_idx: u16 = memory.read_obj(vm_memory::GuestAddress(0x1202)).unwrap();
        assert_eq!(used_idx, 1);
        assert_eq!(read32(&device, 0x060), INTERRUPT_USED_BUFFER);
        // Nothing more available.
        assert_eq!(device.process_one(&memory).unwrap(), None);
        // The state round-trips through kvm-state's types.
        let state = device.state();
        assert_eq!(state.queues[0].next_avail, 1);
        assert_eq!(state.queues[0].next_used, 1);
        let back = VirtioDevice::from_state(&state).unwrap();
        assert_eq!(back.state(), state);
    }

    #[test]
    fn test_virtio_device_refuses_features_and_states_it_cannot_have() {
        let mut device = VirtioDevice::new().unwrap();
        // FEATURES_OK without VIRTIO_F_VERSION_1 does not stick.
        write32(&mut device, 0x070, 0xb);
        assert_eq!(read32(&device, 0x070), 0x3);
        // Not ready: nothing is processed.
        let memory = crate::memory::new(0x10000).unwrap();
        assert_eq!(device.process_one(&memory).unwrap(), None);

        let mut state = device.state();
        state.queues.push(state.queues[0].clone());
        assert!(matches!(
            VirtioDevice::from_state(&state),
            Err(DemoVmError::VirtioQueueCount(2))
        ));
        state.queues.truncate(1);
        state.queues[0].size = 3; // not a power of two
        assert!(matches!(
            VirtioDevice::from_state(&state),
            Err(DemoVmError::VirtioQueue { queue: 0, .. })
        ));
        state.queues[0].size = 8;
        state.queues[0].max_size = 256;
        assert!(matches!(
            VirtioDevice::from_state(&state),
            Err(DemoVmError::VirtioQueue { queue: 0, .. })
        ));
    }
}
