//! Where a destination stores the guest memory it receives.

use std::io;

/// Stores chunks of guest memory as they arrive.
///
/// A chunk's address and length come from the peer: an implementation refuses (returns an
/// error) a chunk that does not fall inside guest memory. [`GuestRegions`] does that for
/// memory held in byte slices; a closure `FnMut(u64, &[u8]) -> io::Result<()>` is a sink
/// too.
pub trait MemorySink {
    /// Stores `bytes` at guest address `address`.
    ///
    /// # Errors
    /// Any error refuses the chunk; the destination reports it as
    /// [`MigrationError::MemorySink`](crate::MigrationError::MemorySink).
    fn write_memory(&mut self, address: u64, bytes: &[u8]) -> io::Result<()>;
}

impl<F: FnMut(u64, &[u8]) -> io::Result<()>> MemorySink for F {
    fn write_memory(&mut self, address: u64, bytes: &[u8]) -> io::Result<()> {
        self(address, bytes)
    }
}

/// Guest memory as byte slices at guest addresses: a chunk is stored only if it lies
/// entirely inside one region (a source sends each region with its own
/// [`Source::send_memory`](crate::Source::send_memory) call, so its chunks never straddle
/// two).
///
/// # Example
/// ```
/// use migration::{GuestRegions, MemorySink};
///
/// let mut low = vec![0u8; 4096];
/// let mut high = vec![0u8; 4096];
/// let mut regions = [(0x0, low.as_mut_slice()), (0x10_0000, high.as_mut_slice())];
/// let mut sink = GuestRegions::new(&mut regions);
/// sink.write_memory(0x10_0010, &[1, 2]).unwrap();
/// assert!(sink.write_memory(0x0ffe, &[1, 2, 3]).is_err()); // crosses the end of `low`
/// assert!(sink.write_memory(0x8000, &[1]).is_err()); // in no region
/// assert_eq!(&high[0x10..0x12], &[1, 2]);
/// ```
#[derive(Debug)]
pub struct GuestRegions<'r, 'm> {
    regions: &'r mut [(u64, &'m mut [u8])],
}

impl<'r, 'm> GuestRegions<'r, 'm> {
    /// A sink over `regions`, each a guest address and the memory there.
    pub fn new(regions: &'r mut [(u64, &'m mut [u8])]) -> Self {
        GuestRegions { regions }
    }
}

impl MemorySink for GuestRegions<'_, '_> {
    fn write_memory(&mut self, address: u64, bytes: &[u8]) -> io::Result<()> {
        for (start, memory) in self.regions.iter_mut() {
            let Some(offset) = address.checked_sub(*start) else {
                continue;
            };
            let Ok(offset) = usize::try_from(offset) else {
                continue;
            };
            if offset >= memory.len() && !(offset == memory.len() && bytes.is_empty()) {
                continue;
            }
            let end = offset.checked_add(bytes.len());
            return match end.and_then(|end| memory.get_mut(offset..end)) {
                Some(target) => {
                    target.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "chunk crosses the end of a guest memory region",
                )),
            };
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "address is in no guest memory region",
        ))
    }
}
