//! CRC-64/REDIS reader and writer: catalogue check value, agreement with a bitwise
//! reference, and exact counting of the bytes that pass through.

use std::io::{self, Read, Write};

use versionize::crc::{crc64, CRC64Reader, CRC64Writer};

/// Bit-at-a-time reference of CRC-64/REDIS (reflected polynomial, init 0, xorout 0).
fn reference_crc(bytes: &[u8]) -> u64 {
    const POLY_REFLECTED: u64 = 0xad93_d235_94c9_35a9u64.reverse_bits();
    let mut crc = 0u64;
    for &byte in bytes {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 % 256) as u8 ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn test_crc_catalogue_check_value() {
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(reference_crc(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(crc64(b""), 0);
}

#[test]
fn test_crc_matches_bitwise_reference() {
    for len in [1, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 4099] {
        let data = pattern(len);
        assert_eq!(crc64(&data), reference_crc(&data), "len {len}");
    }
}

#[test]
fn test_crc_matches_crc_crate_catalogue() {
    let catalogue = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);
    for len in [
        0,
        1,
        15,
        16,
        63,
        64,
        127,
        128,
        255,
        256,
        511,
        512,
        4095,
        65_537,
        1 << 20,
    ] {
        let data = pattern(len);
        assert_eq!(crc64(&data), catalogue.checksum(&data), "len {len}");
    }
}

#[test]
fn test_crc_writer_mixed_write_sizes() {
    // Small writes are collected and summed in blocks, large ones in place: every mix must
    // give the one-call checksum, at every point.
    let data = pattern(200_000);
    for sizes in [
        &[1usize, 7, 600][..],
        &[511, 512, 513],
        &[8191, 1, 8193],
        &[3, 9000, 2],
    ] {
        let mut writer = CRC64Writer::new(Vec::new());
        let mut at = 0;
        let mut turn = 0;
        while at < data.len() {
            let end = (at + sizes[turn % sizes.len()]).min(data.len());
            writer.write_all(&data[at..end]).unwrap();
            at = end;
            turn += 1;
            if turn % 97 == 0 {
                assert_eq!(
                    writer.checksum(),
                    crc64(&data[..at]),
                    "sizes {sizes:?} at {at}"
                );
            }
        }
        assert_eq!(writer.checksum(), crc64(&data), "sizes {sizes:?}");
        assert_eq!(writer.get_ref(), &data);
    }
}

#[test]
fn test_crc_writer_sums_written_bytes() {
    let data = pattern(10_000);
    let mut out = Vec::new();
    let mut writer = CRC64Writer::new(&mut out);
    for chunk in data.chunks(333) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(writer.checksum(), crc64(&data));
    assert_eq!(out, data);
}

#[test]
fn test_crc_reader_sums_read_bytes() {
    let data = pattern(10_000);
    let mut reader = CRC64Reader::new(data.as_slice());
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(reader.checksum(), crc64(&data));
}

/// A writer that accepts at most `step` bytes per call and fails after `limit` bytes.
struct ShortWriter {
    taken: Vec<u8>,
    step: usize,
    limit: usize,
}

impl Write for ShortWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken.len() >= self.limit {
            return Err(io::Error::other("disk full"));
        }
        let count = buf.len().min(self.step).min(self.limit - self.taken.len());
        self.taken.extend_from_slice(&buf[..count]);
        Ok(count)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_crc_writer_counts_only_accepted_bytes_on_short_writes() {
    let data = pattern(1000);
    for (step, limit) in [(1, 1000), (7, 500), (64, 999), (1000, 0), (3, 2)] {
        let mut writer = CRC64Writer::new(ShortWriter {
            taken: Vec::new(),
            step,
            limit,
        });
        let result = writer.write_all(&data);
        assert_eq!(
            result.is_ok(),
            limit >= data.len(),
            "step {step} limit {limit}"
        );
        let taken = writer.get_ref().taken.clone();
        assert_eq!(taken, data[..taken.len()]);
        assert_eq!(
            writer.checksum(),
            crc64(&taken),
            "step {step} limit {limit}"
        );
    }
}

/// A reader that returns at most `step` bytes per call, interleaves `Interrupted`, and
/// fails after `limit` bytes.
struct ShortReader<'a> {
    data: &'a [u8],
    step: usize,
    limit: usize,
    given: usize,
    interrupt: bool,
}

impl Read for ShortReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.given >= self.limit {
            return Err(io::Error::other("device gone"));
        }
        let count = buf
            .len()
            .min(self.step)
            .min(self.data.len())
            .min(self.limit - self.given);
        buf[..count].copy_from_slice(&self.data[..count]);
        self.data = &self.data[count..];
        self.given += count;
        Ok(count)
    }
}

#[test]
fn test_crc_reader_counts_only_returned_bytes_on_short_reads() {
    let data = pattern(1000);
    for (step, limit) in [(1, 2000), (13, 400), (1000, 999), (5, 0)] {
        let mut reader = CRC64Reader::new(ShortReader {
            data: &data,
            step,
            limit,
            given: 0,
            interrupt: false,
        });
        let mut buffer = vec![0u8; data.len()];
        let result = reader.read_exact(&mut buffer);
        let given = reader.get_ref().given;
        assert_eq!(result.is_ok(), given == data.len());
        assert_eq!(
            reader.checksum(),
            crc64(&data[..given]),
            "step {step} limit {limit}"
        );
    }
}
