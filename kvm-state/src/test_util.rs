//! Helpers shared by the unit tests.

/// A value of a plain C structure whose bytes are all non-zero (`i * 7 + 1` mod 251, plus 1).
///
/// Only for kvm-bindings structures made of integers, arrays and unions of integers, for which
/// every bit pattern is valid.
pub(crate) fn patterned<T>() -> T {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let bytes = value.as_mut_ptr().cast::<u8>();
    for i in 0..size_of::<T>() {
        // SAFETY: `i < size_of::<T>()`, so the write stays inside `value`.
        unsafe { bytes.add(i).write((i * 7 % 251) as u8 + 1) };
    }
    // SAFETY: every byte was written, and the callers only use types made of integers, for
    // which every bit pattern is a valid value.
    unsafe { value.assume_init() }
}

/// The app version map the tests encode with: the crate's [`version_map`] where it exists.
///
/// [`version_map`]: crate::microvm::version_map
pub(crate) fn app_map() -> versionize::VersionMap {
    #[cfg(target_arch = "x86_64")]
    {
        crate::microvm::version_map()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        versionize::VersionMap::new()
    }
}

/// Encodes `value` at `app_version` of [`app_map`], decodes the bytes, checks that the decode
/// used every byte, and returns the decoded value with the encoded length.
pub(crate) fn at_app_version<T: versionize::Versionize>(value: &T, app_version: u16) -> (T, usize) {
    let map = app_map();
    let mut bytes = Vec::new();
    value
        .serialize(&mut bytes, &map, app_version)
        .unwrap_or_else(|e| panic!("encode at app version {app_version}: {e}"));
    let mut rest = bytes.as_slice();
    let back = T::deserialize(&mut rest, &map, app_version)
        .unwrap_or_else(|e| panic!("decode at app version {app_version}: {e}"));
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    (back, bytes.len())
}

/// `value` through `Versionize` bytes at the newest app version of [`app_map`]; every older
/// app version is also encoded and decoded (its result may lack newer fields).
pub(crate) fn through_bytes<T: versionize::Versionize>(value: &T) -> T {
    let latest = app_map().latest_version();
    for app_version in 1..latest {
        at_app_version(value, app_version);
    }
    at_app_version(value, latest).0
}
