//! Code written for versionize 0.2 / versionize_derive 0.1.6 compiles unchanged, in the same
//! crate (so with the same, unified, features of `versionize`) as code that uses the
//! one-import `versionize::prelude`.
//!
//! `seed_001` starts with the import lines of Firecracker's `snapshot` crate
//! (`/work/shared/seeds/001_*.txt`, lines 29 to 34), copied verbatim; its tests module
//! imports them again through `use super::*`, as the seed's tests do. `rust_vmm_ser` has
//! the import lines of rust-vmm's `*-ser` crates. Before the derive moved from the crate
//! root of `versionize` to `versionize::prelude`, both failed with E0252 (`Versionize`
//! defined twice in the macro namespace).

/// Firecracker's `snapshot` crate, reduced to what uses each imported name.
mod seed_001 {
    use std::fmt::Debug;
    use std::io::{Read, Write};

    use versionize::crc::{CRC64Reader, CRC64Writer};
    use versionize::{VersionMap, Versionize, VersionizeResult};
    use versionize_derive::Versionize;

    #[derive(Default, Debug, Versionize)]
    pub(crate) struct SnapshotHdr {
        pub(crate) data_version: u16,
    }

    /// Writes `hdr` and `object` followed by the CRC64 of both.
    pub(crate) fn save<W: Write + Debug, O: Versionize + Debug>(
        writer: &mut W,
        hdr: &SnapshotHdr,
        object: &O,
        version_map: &VersionMap,
    ) -> VersionizeResult<()> {
        let mut crc_writer = CRC64Writer::new(writer);
        hdr.serialize(&mut crc_writer, &VersionMap::new(), 1)?;
        object.serialize(&mut crc_writer, version_map, hdr.data_version)?;
        let checksum = crc_writer.checksum();
        checksum.serialize(&mut crc_writer, &VersionMap::new(), 1)
    }

    /// Reads what `save` wrote and checks the CRC.
    pub(crate) fn load<R: Read + Debug, O: Versionize + Debug>(
        reader: &mut R,
        version_map: &VersionMap,
    ) -> VersionizeResult<(O, u16)> {
        let mut crc_reader = CRC64Reader::new(reader);
        let hdr = SnapshotHdr::deserialize(&mut crc_reader, &VersionMap::new(), 1)?;
        let object = O::deserialize(&mut crc_reader, version_map, hdr.data_version)?;
        let computed = crc_reader.checksum();
        let stored: u64 = Versionize::deserialize(&mut crc_reader, &VersionMap::new(), 1)?;
        assert_eq!(computed, stored, "checksum");
        Ok((object, hdr.data_version))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[derive(Clone, Debug, PartialEq, Versionize)]
        struct Test {
            field_x: u64,
            #[version(start = 2, default_fn = "field2_default")]
            field2: u64,
        }

        impl Test {
            fn field2_default(_: u16) -> u64 {
                20
            }
        }

        #[test]
        fn test_drop_in_seed_001_imports_compile_and_run() {
            let mut map = VersionMap::new();
            map.new_version().set_type_version(Test::type_id(), 2);
            let state = Test {
                field_x: 7,
                field2: 9,
            };
            for (app_version, expected) in [(1, 20), (2, 9)] {
                let mut bytes = Vec::new();
                let hdr = SnapshotHdr {
                    data_version: app_version,
                };
                save(&mut bytes, &hdr, &state, &map).unwrap();
                let (loaded, version): (Test, u16) = load(&mut bytes.as_slice(), &map).unwrap();
                assert_eq!(version, app_version);
                assert_eq!(
                    loaded,
                    Test {
                        field_x: 7,
                        field2: expected
                    }
                );
            }
        }
    }
}

/// The import lines of rust-vmm's `*-ser` crates (vm-superio-ser, ...).
mod rust_vmm_ser {
    use versionize::{VersionMap, Versionize, VersionizeError, VersionizeResult};
    use versionize_derive::Versionize;

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct RtcStateSer {
        pub(crate) lr: u32,
        #[version(start = 2, de_fn = "check_lr")]
        pub(crate) offset: i64,
    }

    impl RtcStateSer {
        fn check_lr(&mut self, _: u16) -> VersionizeResult<()> {
            if self.lr == u32::MAX {
                return Err(VersionizeError::Semantic("lr out of range".to_owned()));
            }
            Ok(())
        }
    }

    pub(crate) fn map() -> VersionMap {
        let mut map = VersionMap::new();
        map.new_version()
            .set_type_version(RtcStateSer::type_id(), 2);
        map
    }
}

/// New code in the same crate: one import.
mod new_code {
    use versionize::prelude::*;

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct Uart {
        pub(crate) line_control: u8,
    }

    pub(crate) fn round_trip(uart: &Uart) -> VersionizeResult<Uart> {
        let map = VersionMap::new();
        let mut bytes = Vec::new();
        uart.serialize(&mut bytes, &map, 1)?;
        Uart::deserialize(&mut bytes.as_slice(), &map, 1)
    }
}

#[test]
fn test_drop_in_rust_vmm_ser_imports_compile_and_run() {
    use versionize::Versionize;

    let state = rust_vmm_ser::RtcStateSer { lr: 3, offset: -5 };
    let map = rust_vmm_ser::map();
    let mut bytes = Vec::new();
    state.serialize(&mut bytes, &map, 1).unwrap();
    assert_eq!(bytes, 3u32.to_le_bytes());
    let back = rust_vmm_ser::RtcStateSer::deserialize(&mut bytes.as_slice(), &map, 1).unwrap();
    assert_eq!(back, rust_vmm_ser::RtcStateSer { lr: 3, offset: 0 });
    let hostile = u32::MAX.to_le_bytes();
    let error = rust_vmm_ser::RtcStateSer::deserialize(&mut hostile.as_slice(), &map, 1);
    assert!(error.is_err());
}

#[test]
fn test_drop_in_prelude_next_to_original_imports() {
    let uart = new_code::Uart { line_control: 3 };
    assert_eq!(new_code::round_trip(&uart).unwrap(), uart);
}
