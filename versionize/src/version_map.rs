//! Map from application (data) versions to the version of each type.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::limits::Limits;
use crate::{VersionizeError, VersionizeResult};

/// A hasher for [`TypeId`] keys: a `TypeId` is already a well-mixed hash, so folding its
/// words is enough and much cheaper than SipHash.
#[derive(Default)]
struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Which version of each type belongs to which application version.
///
/// An application version (also called the data version) names one build's whole state
/// layout. App version 1 exists from [`VersionMap::new`]; each [`new_version`] call opens
/// the next one, and [`set_type_version`] records that a type changed in the newest one.
/// A type never mentioned is at version 1 everywhere. [`adopt`] takes up, in the newest app
/// version, every type version of one app version of a library's map.
///
/// Lookups cost one hash of the `TypeId` and one index, whatever the number of app
/// versions: each type keeps a dense table of its version per app version.
///
/// The map also carries the [`Limits`] that decoding with it enforces, and the build's
/// *support window*: the oldest app version it still reads and writes
/// ([`set_oldest_supported`]), 1 unless set. The window is checked where an app version
/// comes from outside the build (a snapshot's header, a migration peer, a save target):
/// [`check_supported`] names an older one [`VersionizeError::AppVersionUnsupported`].
///
/// # Example
/// ```
/// use versionize::prelude::*;
///
/// struct Regs;
/// let mut map = VersionMap::new();
/// map.new_version().set_type_version(std::any::TypeId::of::<Regs>(), 2);
/// assert_eq!(map.latest_version(), 2);
/// assert_eq!(map.get_type_version(1, std::any::TypeId::of::<Regs>()), 1);
/// assert_eq!(map.get_type_version(2, std::any::TypeId::of::<Regs>()), 2);
/// ```
///
/// [`new_version`]: VersionMap::new_version
/// [`set_type_version`]: VersionMap::set_type_version
/// [`adopt`]: VersionMap::adopt
/// [`set_oldest_supported`]: VersionMap::set_oldest_supported
/// [`check_supported`]: VersionMap::check_supported
#[derive(Clone, Debug)]
pub struct VersionMap {
    latest: u16,
    /// The oldest app version this build reads and writes (`1..=latest`).
    oldest: u16,
    /// `types[id][i]` is the type's version at app version `i + 1`; app versions past the
    /// end of the table use its last entry.
    types: HashMap<TypeId, Vec<u16>, BuildHasherDefault<TypeIdHasher>>,
    limits: Limits,
}

impl Default for VersionMap {
    fn default() -> Self {
        Self::new()
    }
}

impl VersionMap {
    /// A map with one app version (1) in which every type is at version 1.
    #[must_use]
    pub fn new() -> Self {
        VersionMap {
            latest: 1,
            oldest: 1,
            types: HashMap::default(),
            limits: Limits::default(),
        }
    }

    /// Opens the next app version; later [`set_type_version`](Self::set_type_version) calls
    /// apply to it. The map stops growing at app version 65535.
    pub fn new_version(&mut self) -> &mut Self {
        self.latest = self.latest.saturating_add(1);
        self
    }

    /// Records that, from the newest app version on, the type `type_id` is at `type_version`.
    pub fn set_type_version(&mut self, type_id: TypeId, type_version: u16) -> &mut Self {
        let latest = usize::from(self.latest);
        let table = self.types.entry(type_id).or_default();
        let carried = table.last().copied().unwrap_or(1);
        table.resize(latest, carried);
        if let Some(slot) = table.last_mut() {
            *slot = type_version;
        }
        self
    }

    /// Adopts a library's version history: from the newest app version of `self` on, every
    /// type that `library` maps is at the version `library` gives it at its app version
    /// `library_version`. A VMM whose state embeds a library's types calls it once per
    /// library release it takes up, in the app version that takes it up; types of its own
    /// keep their versions.
    ///
    /// # Errors
    /// [`VersionizeError::InvalidAppVersion`] when `library` has no app version
    /// `library_version` (`self` is then unchanged).
    ///
    /// # Example
    /// ```
    /// use versionize::prelude::*;
    ///
    /// /// A library's state types and its published version map.
    /// mod lib {
    ///     use versionize::prelude::Versionize;
    ///
    ///     #[derive(Versionize)]
    ///     pub struct Regs {
    ///         pub rip: u64,
    ///         #[version(start = 2)]
    ///         pub rflags: u64,
    ///     }
    ///     pub fn version_map() -> versionize::VersionMap {
    ///         let mut map = versionize::VersionMap::new();
    ///         map.new_version().set_type_version(Regs::type_id(), 2);
    ///         map
    ///     }
    /// }
    ///
    /// #[derive(Versionize)]
    /// struct Vmm {
    ///     regs: lib::Regs,
    ///     #[version(start = 2)]
    ///     uptime: u64,
    /// }
    ///
    /// # fn main() -> versionize::VersionizeResult<()> {
    /// let library = lib::version_map();
    /// let mut map = VersionMap::new(); // app 1: the library's app version 1
    /// map.new_version().set_type_version(Vmm::type_id(), 2); // app 2: our own change
    /// map.new_version().adopt(&library, 2)?; // app 3: the library's release 2
    ///
    /// let regs = |app| map.get_type_version(app, lib::Regs::type_id());
    /// assert_eq!([regs(1), regs(2), regs(3)], [1, 1, 2]);
    /// assert_eq!(map.get_type_version(3, Vmm::type_id()), 2);
    /// versionize::schema::check_latest::<Vmm>(&map).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn adopt(
        &mut self,
        library: &VersionMap,
        library_version: u16,
    ) -> VersionizeResult<&mut Self> {
        if library_version == 0 || library_version > library.latest {
            return Err(VersionizeError::InvalidAppVersion {
                app_version: library_version,
                latest: library.latest,
            });
        }
        for &type_id in library.types.keys() {
            let version = library.lookup(library_version, type_id);
            self.set_type_version(type_id, version);
        }
        Ok(self)
    }

    /// The version of `type_id` at `app_version`: the newest mapping at or below it, or 1
    /// if the type was never mapped.
    ///
    /// This never fails: app version 0 reads as 1 and versions above
    /// [`latest_version`](Self::latest_version) read as the latest. Generated code uses
    /// [`try_type_version`](Self::try_type_version), which rejects both.
    #[must_use]
    #[inline]
    pub fn get_type_version(&self, app_version: u16, type_id: TypeId) -> u16 {
        let app_version = app_version.clamp(1, self.latest);
        self.lookup(app_version, type_id)
    }

    /// Like [`get_type_version`](Self::get_type_version), but checked.
    ///
    /// # Errors
    /// [`VersionizeError::InvalidAppVersion`] when `app_version` is 0 or above
    /// [`latest_version`](Self::latest_version).
    #[inline]
    pub fn try_type_version(&self, app_version: u16, type_id: TypeId) -> VersionizeResult<u16> {
        if app_version == 0 || app_version > self.latest {
            return Err(VersionizeError::InvalidAppVersion {
                app_version,
                latest: self.latest,
            });
        }
        Ok(self.lookup(app_version, type_id))
    }

    #[inline]
    fn lookup(&self, app_version: u16, type_id: TypeId) -> u16 {
        match self.types.get(&type_id) {
            Some(table) => {
                let index = usize::from(app_version) - 1;
                table
                    .get(index)
                    .or_else(|| table.last())
                    .copied()
                    .unwrap_or(1)
            }
            None => 1,
        }
    }

    /// The newest app version of the map.
    #[must_use]
    pub fn latest_version(&self) -> u16 {
        self.latest
    }

    /// Declares the oldest app version this build still reads and writes: snapshots and
    /// migration peers below it are refused by [`check_supported`](Self::check_supported)
    /// before anything is decoded or encoded. App versions `1..oldest` stay in the map (their
    /// rows never change); they are only out of the window. Later
    /// [`new_version`](Self::new_version) calls keep the oldest version as it is.
    ///
    /// # Errors
    /// [`VersionizeError::InvalidAppVersion`] when `oldest` is 0 or above
    /// [`latest_version`](Self::latest_version) (the map is then unchanged).
    ///
    /// # Example
    /// ```
    /// use versionize::prelude::*;
    /// use versionize::VersionizeError;
    ///
    /// # fn main() -> VersionizeResult<()> {
    /// let mut map = VersionMap::new();
    /// map.new_version().new_version().new_version(); // app versions 1..=4
    /// map.set_oldest_supported(2)?; // this build no longer reads or writes app version 1
    /// assert_eq!(map.supported_range(), 2..=4);
    /// assert!(map.check_supported(3).is_ok());
    /// assert!(matches!(
    ///     map.check_supported(1),
    ///     Err(VersionizeError::AppVersionUnsupported { app_version: 1, oldest: 2, latest: 4 })
    /// ));
    /// assert!(matches!(
    ///     map.check_supported(5),
    ///     Err(VersionizeError::InvalidAppVersion { app_version: 5, latest: 4 })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_oldest_supported(&mut self, oldest: u16) -> VersionizeResult<&mut Self> {
        if oldest == 0 || oldest > self.latest {
            return Err(VersionizeError::InvalidAppVersion {
                app_version: oldest,
                latest: self.latest,
            });
        }
        self.oldest = oldest;
        Ok(self)
    }

    /// The oldest app version this build reads and writes (1 unless
    /// [`set_oldest_supported`](Self::set_oldest_supported) raised it).
    #[must_use]
    pub fn oldest_supported(&self) -> u16 {
        self.oldest
    }

    /// The app versions this build reads and writes: oldest supported to latest.
    #[must_use]
    pub fn supported_range(&self) -> std::ops::RangeInclusive<u16> {
        self.oldest..=self.latest
    }

    /// Checks that `app_version` is in the support window, before a snapshot or a migration
    /// peer's state is decoded, or before state is encoded for an older build.
    ///
    /// # Errors
    /// [`VersionizeError::InvalidAppVersion`] for 0 or a version newer than
    /// [`latest_version`](Self::latest_version) (data from a newer build);
    /// [`VersionizeError::AppVersionUnsupported`] for a version older than
    /// [`oldest_supported`](Self::oldest_supported) (data of, or for, a build this one no
    /// longer supports).
    pub fn check_supported(&self, app_version: u16) -> VersionizeResult<()> {
        if app_version == 0 || app_version > self.latest {
            return Err(VersionizeError::InvalidAppVersion {
                app_version,
                latest: self.latest,
            });
        }
        if app_version < self.oldest {
            return Err(VersionizeError::AppVersionUnsupported {
                app_version,
                oldest: self.oldest,
                latest: self.latest,
            });
        }
        Ok(())
    }

    /// The decoding limits enforced by decodes that use this map.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the decoding limits.
    pub fn set_limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Builder form of [`set_limits`](Self::set_limits).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    fn id<T: 'static>() -> TypeId {
        TypeId::of::<T>()
    }

    #[test]
    fn test_version_map_defaults_to_one() {
        let map = VersionMap::new();
        assert_eq!(map.latest_version(), 1);
        assert_eq!(map.get_type_version(1, id::<A>()), 1);
        assert_eq!(map.try_type_version(1, id::<A>()).ok(), Some(1));
    }

    #[test]
    fn test_version_map_newest_mapping_at_or_below() {
        let mut map = VersionMap::new();
        map.new_version()
            .set_type_version(id::<A>(), 2)
            .new_version()
            .set_type_version(id::<B>(), 3)
            .new_version()
            .new_version()
            .set_type_version(id::<A>(), 4);
        assert_eq!(map.latest_version(), 5);
        let a: Vec<u16> = (1..=5)
            .map(|v| map.get_type_version(v, id::<A>()))
            .collect();
        let b: Vec<u16> = (1..=5)
            .map(|v| map.get_type_version(v, id::<B>()))
            .collect();
        assert_eq!(a, [1, 2, 2, 2, 4]);
        assert_eq!(b, [1, 1, 3, 3, 3]);
    }

    #[test]
    fn test_version_map_set_twice_in_one_version_keeps_last() {
        let mut map = VersionMap::new();
        map.set_type_version(id::<A>(), 2)
            .set_type_version(id::<A>(), 3);
        assert_eq!(map.get_type_version(1, id::<A>()), 3);
    }

    #[test]
    fn test_version_map_rejects_out_of_range_app_versions() {
        let mut map = VersionMap::new();
        map.new_version();
        for bad in [0u16, 3, u16::MAX] {
            match map.try_type_version(bad, id::<A>()) {
                Err(VersionizeError::InvalidAppVersion {
                    app_version,
                    latest: 2,
                }) => assert_eq!(app_version, bad),
                other => panic!("unexpected {other:?}"),
            }
            // The unchecked form clamps instead of panicking.
            let _ = map.get_type_version(bad, id::<A>());
        }
    }

    #[test]
    fn test_version_map_many_versions() {
        let mut map = VersionMap::new();
        for v in 2..=1000u16 {
            map.new_version();
            if v % 10 == 0 {
                map.set_type_version(id::<A>(), v / 10);
            }
        }
        assert_eq!(map.get_type_version(9, id::<A>()), 1);
        assert_eq!(map.get_type_version(10, id::<A>()), 1);
        assert_eq!(map.get_type_version(20, id::<A>()), 2);
        assert_eq!(map.get_type_version(999, id::<A>()), 99);
        assert_eq!(map.get_type_version(1000, id::<A>()), 100);
    }

    #[test]
    fn test_version_map_saturates_at_u16_max() {
        let mut map = VersionMap::new();
        for _ in 0..70_000u32 {
            map.new_version();
        }
        assert_eq!(map.latest_version(), u16::MAX);
        map.set_type_version(id::<A>(), 7);
        assert_eq!(map.get_type_version(u16::MAX, id::<A>()), 7);
    }

    #[test]
    fn test_version_map_adopt_takes_the_library_versions_in_the_newest_app_version() {
        let mut library = VersionMap::new();
        library
            .new_version()
            .set_type_version(id::<A>(), 2)
            .new_version()
            .set_type_version(id::<A>(), 3)
            .set_type_version(id::<B>(), 2);
        let mut map = VersionMap::new();
        map.new_version().adopt(&library, 2).unwrap();
        map.new_version();
        map.new_version().adopt(&library, 3).unwrap();
        let a: Vec<u16> = (1..=4)
            .map(|v| map.get_type_version(v, id::<A>()))
            .collect();
        let b: Vec<u16> = (1..=4)
            .map(|v| map.get_type_version(v, id::<B>()))
            .collect();
        assert_eq!(a, [1, 2, 2, 3]);
        assert_eq!(b, [1, 1, 1, 2]);
    }

    #[test]
    fn test_version_map_adopt_rejects_an_unknown_library_version() {
        let library = VersionMap::new();
        let mut map = VersionMap::new();
        map.set_type_version(id::<A>(), 2);
        for bad in [0u16, 2] {
            match map.adopt(&library, bad) {
                Err(VersionizeError::InvalidAppVersion {
                    app_version,
                    latest: 1,
                }) => assert_eq!(app_version, bad),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(map.get_type_version(1, id::<A>()), 2);
    }

    #[test]
    fn test_version_map_support_window_defaults_to_every_version() {
        let mut map = VersionMap::new();
        map.new_version().new_version();
        assert_eq!(map.oldest_supported(), 1);
        assert_eq!(map.supported_range(), 1..=3);
        for v in 1..=3 {
            assert!(map.check_supported(v).is_ok(), "app version {v}");
        }
    }

    #[test]
    fn test_version_map_support_window_names_older_and_newer_versions() {
        let mut map = VersionMap::new();
        for _ in 0..4 {
            map.new_version();
        }
        map.set_oldest_supported(3).unwrap();
        assert_eq!(map.supported_range(), 3..=5);
        for v in 0..=7u16 {
            match (v, map.check_supported(v)) {
                (3..=5, Ok(())) => {}
                (
                    1..=2,
                    Err(VersionizeError::AppVersionUnsupported {
                        app_version,
                        oldest: 3,
                        latest: 5,
                    }),
                ) => assert_eq!(app_version, v),
                (
                    0 | 6..,
                    Err(VersionizeError::InvalidAppVersion {
                        app_version,
                        latest: 5,
                    }),
                ) => assert_eq!(app_version, v),
                (v, other) => panic!("app version {v}: unexpected {other:?}"),
            }
        }
        let message = map.check_supported(2).unwrap_err().to_string();
        assert_eq!(
            message,
            "app version 2 is older than the oldest this build supports (3..=5)"
        );
        // The rows below the window are still there.
        assert_eq!(map.try_type_version(1, id::<A>()).ok(), Some(1));
    }

    #[test]
    fn test_version_map_support_window_survives_new_versions() {
        let mut map = VersionMap::new();
        map.new_version();
        map.set_oldest_supported(2).unwrap();
        map.new_version();
        assert_eq!(map.supported_range(), 2..=3);
    }

    #[test]
    fn test_version_map_set_oldest_supported_rejects_versions_outside_the_map() {
        let mut map = VersionMap::new();
        map.new_version();
        for bad in [0u16, 3, u16::MAX] {
            match map.set_oldest_supported(bad) {
                Err(VersionizeError::InvalidAppVersion {
                    app_version,
                    latest: 2,
                }) => assert_eq!(app_version, bad),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(map.supported_range(), 1..=2);
        map.set_oldest_supported(2).unwrap();
        map.set_oldest_supported(1).unwrap();
        assert_eq!(map.supported_range(), 1..=2);
    }

    #[test]
    fn test_version_map_is_send_sync_unwind_safe() {
        fn check<
            T: Send
                + Sync
                + std::panic::UnwindSafe
                + std::panic::RefUnwindSafe
                + Clone
                + std::fmt::Debug,
        >() {
        }
        check::<VersionMap>();
    }
}
