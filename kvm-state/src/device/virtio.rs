//! Virtqueue and virtio-mmio transport state.

use versionize::prelude::Versionize;

/// A virtqueue, with the fields of `virtio_queue::QueueState`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct QueueState {
    /// Largest size the device supports.
    pub max_size: u16,
    /// Next available-ring index the device will read.
    pub next_avail: u16,
    /// Next used-ring index the device will write.
    pub next_used: u16,
    /// `VIRTIO_F_RING_EVENT_IDX` was negotiated.
    pub event_idx_enabled: bool,
    /// Queue size set by the driver.
    pub size: u16,
    /// The driver marked the queue ready.
    pub ready: bool,
    /// Guest physical address of the descriptor table.
    pub desc_table: u64,
    /// Guest physical address of the available ring.
    pub avail_ring: u64,
    /// Guest physical address of the used ring.
    pub used_ring: u64,
}

/// A virtio-mmio transport: the registers the driver programmed, and its queues.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MmioTransportState {
    /// Device status register (`VIRTIO_CONFIG_S_*` bits).
    pub device_status: u32,
    /// Selected 32-bit word of the device features (DeviceFeaturesSel).
    pub features_select: u32,
    /// Selected 32-bit word of the driver features (DriverFeaturesSel).
    pub acked_features_select: u32,
    /// Features the driver acknowledged.
    pub acked_features: u64,
    /// Selected queue (QueueSel).
    pub queue_select: u32,
    /// Interrupt status register.
    pub interrupt_status: u32,
    /// Configuration generation counter.
    pub config_generation: u32,
    /// The device's queues.
    pub queues: Vec<QueueState>,
}

#[cfg(feature = "virtio-queue")]
impl From<&virtio_queue::QueueState> for QueueState {
    fn from(q: &virtio_queue::QueueState) -> Self {
        QueueState {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

#[cfg(feature = "virtio-queue")]
impl From<virtio_queue::QueueState> for QueueState {
    fn from(q: virtio_queue::QueueState) -> Self {
        QueueState::from(&q)
    }
}

#[cfg(feature = "virtio-queue")]
impl From<&QueueState> for virtio_queue::QueueState {
    fn from(q: &QueueState) -> Self {
        virtio_queue::QueueState {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::through_bytes;

    fn sample_queue(i: u16) -> QueueState {
        QueueState {
            max_size: 256,
            next_avail: 17 + i,
            next_used: 15 + i,
            event_idx_enabled: true,
            size: 128,
            ready: true,
            desc_table: 0x1000_0000 + u64::from(i) * 0x1_0000,
            avail_ring: 0x1000_1000 + u64::from(i) * 0x1_0000,
            used_ring: 0x1000_2000 + u64::from(i) * 0x1_0000,
        }
    }

    #[test]
    fn test_queue_state_roundtrip_through_bytes() {
        let q = sample_queue(1);
        assert_eq!(through_bytes(&q), q);
        // Nine fields, no tags: 2+2+2+1+2+1+8+8+8 bytes.
        let mut bytes = Vec::new();
        q.serialize(&mut bytes, &versionize::VersionMap::new(), 1)
            .unwrap();
        assert_eq!(bytes.len(), 34);
    }

    #[test]
    fn test_mmio_transport_state_roundtrip_through_bytes() {
        let t = MmioTransportState {
            device_status: 0xf,
            features_select: 1,
            acked_features_select: 1,
            acked_features: 0x1_3000_0020,
            queue_select: 1,
            interrupt_status: 1,
            config_generation: 3,
            queues: vec![sample_queue(0), sample_queue(1)],
        };
        assert_eq!(through_bytes(&t), t);
    }

    #[cfg(feature = "virtio-queue")]
    #[test]
    fn test_queue_state_virtio_queue_roundtrip() {
        use virtio_queue::{Queue, QueueT};

        // A queue configured the way a driver does it, then read back from the device model.
        let mut queue = Queue::new(256).unwrap();
        queue.set_size(128);
        // Addresses as the driver writes them: low and high 32-bit halves.
        queue.set_desc_table_address(Some(0x1000_0000), Some(0));
        queue.set_avail_ring_address(Some(0x1000_1000), Some(0));
        queue.set_used_ring_address(Some(0x1000_2000), Some(0));
        queue.set_event_idx(true);
        queue.set_next_avail(7);
        queue.set_next_used(5);
        queue.set_ready(true);
        let theirs = queue.state();

        let ours = through_bytes(&QueueState::from(theirs));
        assert_eq!(ours.next_avail, 7);
        assert_eq!(ours.desc_table, 0x1000_0000);
        let back = virtio_queue::QueueState::from(&ours);
        assert_eq!(back, theirs);
        // The converted state brings up an equal queue.
        let restored = Queue::try_from(back).unwrap();
        assert_eq!(restored.state(), theirs);
    }

    #[test]
    fn test_mmio_transport_state_clone() {
        let t = MmioTransportState {
            device_status: 0xf,
            acked_features: 1 << 32,
            queues: vec![QueueState {
                size: 256,
                ready: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(t.clone(), t);
        assert_ne!(t, MmioTransportState::default());
    }
}
