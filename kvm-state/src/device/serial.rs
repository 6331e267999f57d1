//! 16550 UART state, with the fields of `vm_superio::SerialState`.

use versionize::prelude::Versionize;

/// Registers and pending input of a 16550 UART.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct SerialState {
    /// Divisor latch, low byte (DLL).
    pub baud_divisor_low: u8,
    /// Divisor latch, high byte (DLM).
    pub baud_divisor_high: u8,
    /// Interrupt enable register (IER).
    pub interrupt_enable: u8,
    /// Interrupt identification register (IIR).
    pub interrupt_identification: u8,
    /// Line control register (LCR).
    pub line_control: u8,
    /// Line status register (LSR).
    pub line_status: u8,
    /// Modem control register (MCR).
    pub modem_control: u8,
    /// Modem status register (MSR).
    pub modem_status: u8,
    /// Scratch register (SCR).
    pub scratch: u8,
    /// Bytes received but not yet read by the guest.
    pub in_buffer: Vec<u8>,
}

#[cfg(feature = "vm-superio")]
impl From<&vm_superio::serial::SerialState> for SerialState {
    fn from(s: &vm_superio::serial::SerialState) -> Self {
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

#[cfg(feature = "vm-superio")]
impl From<&SerialState> for vm_superio::serial::SerialState {
    fn from(s: &SerialState) -> Self {
        vm_superio::serial::SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::through_bytes;

    #[test]
    fn test_serial_state_roundtrip_through_bytes() {
        let s = SerialState {
            baud_divisor_low: 1,
            baud_divisor_high: 2,
            interrupt_enable: 3,
            interrupt_identification: 4,
            line_control: 5,
            line_status: 6,
            modem_control: 7,
            modem_status: 8,
            scratch: 9,
            in_buffer: vec![10, 11, 12],
        };
        let back = through_bytes(&s);
        assert_eq!(back, s);
    }

    #[cfg(feature = "vm-superio")]
    #[test]
    fn test_serial_state_vm_superio_roundtrip() {
        use vm_superio::serial::NoEvents;
        use vm_superio::{Serial, Trigger};

        /// An interrupt line nobody listens to.
        struct NoIrq;
        impl Trigger for NoIrq {
            type E = ();
            fn trigger(&self) -> Result<(), ()> {
                Ok(())
            }
        }

        // A real UART with state set through its registers: DLAB, divisor, LCR, IER,
        // scratch, MCR loopback, and received bytes waiting in the FIFO.
        let mut uart = Serial::new(NoIrq, Vec::new());
        uart.write(3, 0x80).unwrap(); // LCR: DLAB
        uart.write(0, 0x0c).unwrap(); // DLL
        uart.write(1, 0x01).unwrap(); // DLM
        uart.write(3, 0x1b).unwrap(); // LCR: 8 bits, even parity, DLAB off
        uart.write(1, 0x05).unwrap(); // IER
        uart.write(7, 0x5a).unwrap(); // SCR
        uart.write(4, 0x08).unwrap(); // MCR: OUT2
        uart.enqueue_raw_bytes(b"hi").unwrap();
        let theirs = uart.state();

        let ours = through_bytes(&SerialState::from(&theirs));
        assert_eq!(ours.baud_divisor_low, 0x0c);
        assert_eq!(ours.baud_divisor_high, 0x01);
        assert_eq!(ours.line_control, 0x1b);
        assert_eq!(ours.scratch, 0x5a);
        assert_eq!(ours.in_buffer, b"hi");
        let back = vm_superio::serial::SerialState::from(&ours);
        assert_eq!(back, theirs);

        // The converted state brings up an equal device.
        let restored = Serial::from_state(&back, NoIrq, NoEvents, Vec::new()).unwrap();
        assert_eq!(restored.state(), theirs);
    }

    #[test]
    fn test_serial_state_default_and_clone() {
        let s = SerialState {
            line_status: 0x60,
            in_buffer: vec![b'a', b'b'],
            ..Default::default()
        };
        assert_eq!(s.clone(), s);
        assert_ne!(s, SerialState::default());
    }
}
