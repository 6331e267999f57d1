//! A state struct that gained a field between two builds: written by the new build in the
//! old layout (rollback), read back by the new build (upgrade), with the bytes shown.

use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

/// A virtio block device's state as of app version 2.
#[derive(Clone, Debug, PartialEq, Versionize)]
struct BlockState {
    /// Sectors of the backing file.
    capacity: u64,
    /// Added in type version 2; app version 1 builds derive it from `capacity`.
    #[version(
        start = 2,
        default_fn = "default_block_size",
        ser_fn = "fold_block_size"
    )]
    block_size: u32,
}

impl BlockState {
    fn default_block_size(_type_version: u16) -> u32 {
        512
    }

    /// Writing for a build without `block_size`: express capacity in 512-byte sectors.
    fn fold_block_size(&mut self, _type_version: u16) -> VersionizeResult<()> {
        self.capacity = self.capacity * u64::from(self.block_size) / 512;
        Ok(())
    }
}

fn main() -> VersionizeResult<()> {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(BlockState::type_id(), 2);

    let state = BlockState {
        capacity: 1000,
        block_size: 4096,
    };
    for app_version in 1..=map.latest_version() {
        let mut bytes = Vec::new();
        state.serialize(&mut bytes, &map, app_version)?;
        let back = BlockState::deserialize(&mut bytes.as_slice(), &map, app_version)?;
        println!("app version {app_version}: {bytes:02x?} -> {back:?}");
    }
    Ok(())
}
