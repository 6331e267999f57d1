//! State of emulated devices that VMMs commonly snapshot alongside KVM state.

mod serial;
mod virtio;

pub use serial::SerialState;
pub use virtio::{MmioTransportState, QueueState};
