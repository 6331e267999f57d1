//! State of emulated devices that VMMs commonly snapshot alongside KVM state.

pub mod serial;
pub mod virtio;
