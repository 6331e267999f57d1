//! The XSAVE area ([`Xsave`]: x87, SSE, AVX and other extended state) and the extended
//! control registers ([`Xcrs`]), with the host's xsave size and their save and restore steps.

use kvm_bindings::{kvm_xcr, kvm_xcrs, kvm_xsave};
use kvm_ioctls::{Cap, VcpuFd, VmFd};
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

/// Size in bytes of the legacy `kvm_xsave` area (`KVM_GET_XSAVE` without `KVM_CAP_XSAVE2`).
pub const LEGACY_XSAVE_SIZE: usize = size_of::<kvm_xsave>();

/// Number of 32-bit words in the legacy `kvm_xsave` region.
const XSAVE_REGION_WORDS: usize = LEGACY_XSAVE_SIZE / 4;

/// The XSAVE area: x87, SSE (XMM registers), AVX and other extended state (`kvm_xsave`).
///
/// `region` is the legacy 4 KiB area (1024 words); `extra` is the part beyond it that
/// `KVM_GET_XSAVE2` returns when the kernel's `KVM_CAP_XSAVE2` size exceeds 4 KiB (for
/// example AMX tile data), empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xsave {
    /// The first 4096 bytes of the area, as 1024 native-endian words.
    pub region: Vec<u32>,
    /// Words past the first 4096 bytes (the `kvm_xsave` flexible array member).
    pub extra: Vec<u32>,
}

impl Xsave {
    /// Size in bytes of the saved area up to its last non-zero word (at least 4096).
    pub fn used_size(&self) -> usize {
        let extra_used = self
            .extra
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i + 1);
        LEGACY_XSAVE_SIZE + extra_used * 4
    }

    /// Checks that `region` has the 1024 words of the legacy area.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] naming `xsave region`.
    pub fn check(&self) -> Result<()> {
        if self.region.len() == XSAVE_REGION_WORDS {
            return Ok(());
        }
        Err(KvmStateError::BadLength {
            what: "xsave region",
            found: self.region.len(),
            expected: XSAVE_REGION_WORDS,
        })
    }

    /// Builds the kernel structure for a host whose `KVM_SET_XSAVE` reads `host_size` bytes.
    ///
    /// The flexible array is sized so the buffer holds at least `host_size` bytes; missing
    /// words are zero (the "init" state of the components they belong to).
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] if `region` is not 1024 words,
    /// [`KvmStateError::XsaveTooLarge`] if non-zero saved words do not fit in `host_size`.
    pub fn to_kvm(&self, host_size: usize) -> Result<kvm_bindings::Xsave> {
        self.check()?;
        let extra_words = host_size.saturating_sub(LEGACY_XSAVE_SIZE).div_ceil(4);
        let used = self.used_size();
        if used > LEGACY_XSAVE_SIZE + extra_words * 4 {
            return Err(KvmStateError::XsaveTooLarge {
                saved: used,
                host: host_size.max(LEGACY_XSAVE_SIZE),
            });
        }
        let mut xsave = kvm_bindings::Xsave::new(extra_words).map_err(|source| {
            KvmStateError::TooManyEntries {
                what: "kvm_xsave",
                entries: extra_words,
                source,
            }
        })?;
        // SAFETY: the reference is used only to write the fixed-size `region` array of the
        // header; the `len` field, which must keep matching the allocation, is left alone.
        let header = unsafe { &mut xsave.as_mut_fam_struct().xsave };
        header.region.copy_from_slice(&self.region);
        let n = self.extra.len().min(extra_words);
        xsave.as_mut_slice()[..n].copy_from_slice(&self.extra[..n]);
        Ok(xsave)
    }
}

impl From<&kvm_xsave> for Xsave {
    fn from(x: &kvm_xsave) -> Self {
        Xsave {
            region: x.region.to_vec(),
            extra: Vec::new(),
        }
    }
}

impl From<&kvm_bindings::Xsave> for Xsave {
    fn from(x: &kvm_bindings::Xsave) -> Self {
        Xsave {
            region: x.as_fam_struct_ref().xsave.region.to_vec(),
            extra: x.as_slice().to_vec(),
        }
    }
}

impl TryFrom<&Xsave> for kvm_xsave {
    type Error = KvmStateError;

    /// Converts to the legacy 4 KiB structure; fails if `extra` holds non-zero words.
    fn try_from(x: &Xsave) -> Result<Self> {
        let wrapper = x.to_kvm(LEGACY_XSAVE_SIZE)?;
        Ok(kvm_xsave {
            region: wrapper.as_fam_struct_ref().xsave.region,
            ..Default::default()
        })
    }
}

/// One extended control register (`kvm_xcr`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xcr {
    /// Register number (0 for XCR0).
    pub xcr: u32,
    /// Register value.
    pub value: u64,
}

/// Extended control registers, e.g. XCR0 (`kvm_xcrs`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Xcrs {
    /// The `flags` field of `kvm_xcrs`.
    pub flags: u32,
    /// The valid registers (the first `nr_xcrs` entries, at most 16).
    pub xcrs: Vec<Xcr>,
}

impl From<&kvm_xcrs> for Xcrs {
    fn from(x: &kvm_xcrs) -> Self {
        let n = (x.nr_xcrs as usize).min(x.xcrs.len());
        Xcrs {
            flags: x.flags,
            xcrs: x.xcrs[..n]
                .iter()
                .map(|r| Xcr {
                    xcr: r.xcr,
                    value: r.value,
                })
                .collect(),
        }
    }
}

impl TryFrom<&Xcrs> for kvm_xcrs {
    type Error = KvmStateError;

    fn try_from(x: &Xcrs) -> Result<Self> {
        let mut out = kvm_xcrs::default();
        if x.xcrs.len() > out.xcrs.len() {
            return Err(KvmStateError::BadLength {
                what: "xcrs",
                found: x.xcrs.len(),
                expected: out.xcrs.len(),
            });
        }
        for (slot, r) in out.xcrs.iter_mut().zip(&x.xcrs) {
            *slot = kvm_xcr {
                xcr: r.xcr,
                reserved: 0,
                value: r.value,
            };
        }
        // At most 16 entries (checked above), so the count fits in u32.
        out.nr_xcrs = x.xcrs.len() as u32;
        out.flags = x.flags;
        Ok(out)
    }
}

/// Size in bytes of the xsave area that `KVM_GET_XSAVE2`/`KVM_SET_XSAVE` use for the vCPUs of
/// `vm` (`KVM_CAP_XSAVE2`), at least 4096; `None` when the kernel predates `KVM_CAP_XSAVE2`
/// (and so always uses the legacy 4096 bytes).
///
/// The size grows when the process is granted more dynamic XSTATE features (`arch_prctl`), never
/// shrinks, so a value queried now covers every vCPU buffer of the process.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_CHECK_EXTENSION` fails.
pub fn xsave_size(vm: &VmFd) -> Result<Option<usize>> {
    let size = vm.check_extension_int(Cap::Xsave2);
    match usize::try_from(size) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n.max(LEGACY_XSAVE_SIZE))),
        Err(_) => Err(KvmStateError::Ioctl {
            ioctl: "KVM_CHECK_EXTENSION",
            source: kvm_ioctls::Error::last(),
        }),
    }
}

/// Save step: the xsave area, through `KVM_GET_XSAVE2` with a buffer of `xsave_size` bytes
/// (see [`xsave_size`]), or `KVM_GET_XSAVE` when that is `None`.
pub(super) fn save_xsave(vcpu: &VcpuFd, xsave_size: Option<usize>) -> Result<Xsave> {
    let Some(size) = xsave_size else {
        let x = vcpu
            .get_xsave()
            .map_err(KvmStateError::ioctl("KVM_GET_XSAVE"))?;
        return Ok(Xsave::from(&x));
    };
    let extra = size.saturating_sub(LEGACY_XSAVE_SIZE).div_ceil(4);
    let mut buf =
        kvm_bindings::Xsave::new(extra).map_err(|source| KvmStateError::TooManyEntries {
            what: "kvm_xsave",
            entries: extra,
            source,
        })?;
    // SAFETY: `buf` holds 4096 bytes plus `extra` words, at least the KVM_CAP_XSAVE2 size the
    // caller queried (`xsave_size`), which bounds the vCPU's xsave size (it only grows with
    // the process's XSTATE permissions, which the query already reflects); so the kernel
    // writes inside `buf`.
    unsafe { vcpu.get_xsave2(&mut buf) }.map_err(KvmStateError::ioctl("KVM_GET_XSAVE2"))?;
    Ok(Xsave::from(&buf))
}

/// Save step: `KVM_GET_XCRS`.
pub(super) fn save_xcrs(vcpu: &VcpuFd) -> Result<Xcrs> {
    let xcrs = vcpu
        .get_xcrs()
        .map_err(KvmStateError::ioctl("KVM_GET_XCRS"))?;
    Ok(Xcrs::from(&xcrs))
}

/// Restore step: `KVM_SET_XSAVE`, after CPUID and sregs (KVM accepts only the XSAVE
/// components the guest CPUID allows). `xsave` comes from [`Xsave::to_kvm`] with the host's
/// [`xsave_size`].
pub(super) fn restore_xsave(vcpu: &VcpuFd, xsave: &kvm_bindings::Xsave) -> Result<()> {
    // SAFETY: `to_kvm` sized `xsave` to at least the KVM_CAP_XSAVE2 size of this host (or
    // 4096 bytes on kernels without it, which read exactly `struct kvm_xsave`). KVM_SET_XSAVE
    // reads the vCPU's xsave size, which that size bounds (it only grows with the process's
    // XSTATE permissions, already reflected in the query), so the kernel reads inside `xsave`.
    unsafe { vcpu.set_xsave2(xsave) }.map_err(KvmStateError::ioctl("KVM_SET_XSAVE"))
}

/// Restore step: `KVM_SET_XCRS` (XCR0 is checked against the guest CPUID, so after it).
pub(super) fn restore_xcrs(vcpu: &VcpuFd, xcrs: &kvm_xcrs) -> Result<()> {
    vcpu.set_xcrs(xcrs)
        .map_err(KvmStateError::ioctl("KVM_SET_XCRS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{patterned, through_bytes};

    #[test]
    fn test_xsave_legacy_roundtrip() {
        let orig: kvm_xsave = patterned();
        let ours = through_bytes(&Xsave::from(&orig));
        assert_eq!(ours.region.len(), 1024);
        assert!(ours.extra.is_empty());
        let back = kvm_xsave::try_from(&ours).unwrap();
        assert_eq!(back.region, orig.region);
    }

    #[test]
    fn test_xsave2_roundtrip_with_extra() {
        let mut orig = kvm_bindings::Xsave::new(300).unwrap();
        // SAFETY: only the fixed-size region is written, `len` is untouched.
        unsafe { orig.as_mut_fam_struct() }.xsave = patterned();
        for (i, w) in orig.as_mut_slice().iter_mut().enumerate() {
            *w = 0x8000_0000 | i as u32;
        }
        let ours = through_bytes(&Xsave::from(&orig));
        assert_eq!(ours.extra.len(), 300);
        assert_eq!(ours.used_size(), 4096 + 1200);
        let back = ours.to_kvm(4096 + 1200).unwrap();
        assert_eq!(back.as_slice(), orig.as_slice());
        assert_eq!(
            back.as_fam_struct_ref().xsave.region,
            orig.as_fam_struct_ref().xsave.region
        );
        // A larger host area is zero-filled.
        let bigger = ours.to_kvm(8192).unwrap();
        assert_eq!(bigger.as_slice().len(), 1024);
        assert_eq!(&bigger.as_slice()[..300], orig.as_slice());
        assert!(bigger.as_slice()[300..].iter().all(|&w| w == 0));
    }

    #[test]
    fn test_xsave_too_large_for_host() {
        let ours = Xsave {
            region: vec![1; 1024],
            extra: vec![0, 0, 7, 0],
        };
        assert_eq!(ours.used_size(), 4096 + 12);
        assert!(matches!(
            kvm_xsave::try_from(&ours),
            Err(KvmStateError::XsaveTooLarge {
                saved: 4108,
                host: 4096
            })
        ));
        // Trailing zero words are not state: they fit anywhere.
        let zeros = Xsave {
            region: vec![1; 1024],
            extra: vec![0; 64],
        };
        assert!(kvm_xsave::try_from(&zeros).is_ok());
    }

    #[test]
    fn test_xsave_bad_region_length() {
        let ours = Xsave {
            region: vec![0; 10],
            extra: Vec::new(),
        };
        assert!(matches!(
            ours.to_kvm(4096),
            Err(KvmStateError::BadLength {
                what: "xsave region",
                found: 10,
                expected: 1024
            })
        ));
    }

    #[test]
    fn test_xcrs_roundtrip() {
        let mut orig: kvm_xcrs = patterned();
        orig.nr_xcrs = 16;
        orig.padding = [0; 16];
        for x in &mut orig.xcrs {
            x.reserved = 0;
        }
        let ours = through_bytes(&Xcrs::from(&orig));
        assert_eq!(ours.xcrs.len(), 16);
        let back = kvm_xcrs::try_from(&ours).unwrap();
        assert_eq!(back.nr_xcrs, orig.nr_xcrs);
        assert_eq!(back.flags, orig.flags);
        for (b, o) in back.xcrs.iter().zip(&orig.xcrs) {
            assert_eq!((b.xcr, b.reserved, b.value), (o.xcr, o.reserved, o.value));
        }
        assert_eq!(back.padding, orig.padding);
    }

    #[test]
    fn test_xcrs_only_valid_entries_kept() {
        let mut orig: kvm_xcrs = patterned();
        orig.nr_xcrs = 1;
        let ours = Xcrs::from(&orig);
        assert_eq!(ours.xcrs.len(), 1);
        let back = kvm_xcrs::try_from(&ours).unwrap();
        assert_eq!(back.nr_xcrs, 1);
        assert_eq!(back.xcrs[0].value, orig.xcrs[0].value);
        assert_eq!(back.xcrs[1].value, 0);
        // A corrupt count is clamped to the array.
        orig.nr_xcrs = 1000;
        assert_eq!(Xcrs::from(&orig).xcrs.len(), 16);
        let too_many = Xcrs {
            flags: 0,
            xcrs: vec![Xcr::default(); 17],
        };
        assert!(kvm_xcrs::try_from(&too_many).is_err());
    }
}
