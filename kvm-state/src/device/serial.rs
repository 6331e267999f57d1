//! 16550 UART state, with the fields of `vm_superio::SerialState`.

/// Registers and pending input of a 16550 UART.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
