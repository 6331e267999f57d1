//! Virtqueue and virtio-mmio transport state.

/// A virtqueue, with the fields of `virtio_queue::QueueState`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
