//! Stopping vCPUs that run on the VMM's own threads at a consistent point: a kick out of
//! `KVM_RUN` by a thread-directed signal that KVM alone unblocks ([`VcpuKick`]), and the
//! `immediate_exit` run that completes pending I/O ([`pause_vcpu`]).

use std::os::raw::c_int;

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::error::{KvmStateError, Result};

/// `KVM_SET_SIGNAL_MASK`: `_IOW(KVMIO = 0xae, 0x8b, struct kvm_signal_mask)`, the structure
/// being 4 bytes (`len` and a flexible array).
const KVM_SET_SIGNAL_MASK: libc::c_ulong = 0x4004_ae8b;

/// Size of the kernel's `sigset_t` on x86_64, the `len` `KVM_SET_SIGNAL_MASK` requires.
const KERNEL_SIGSET_LEN: u32 = 8;

/// `struct kvm_signal_mask` followed by the 8-byte kernel signal set it describes.
#[repr(C)]
struct KvmSignalMask {
    len: u32,
    sigset: [u8; KERNEL_SIGSET_LEN as usize],
}

/// A handle that kicks one vCPU thread out of `KVM_RUN`, from any thread.
///
/// The library owns no thread and installs no signal handler. [`VcpuKick::for_current_thread`],
/// called on the vCPU's own thread, blocks `signal` in that thread only and tells KVM
/// (`KVM_SET_SIGNAL_MASK`) to unblock it while the vCPU runs. So:
///
/// - a kick while the vCPU is in `KVM_RUN` (running guest code, or halted) makes `KVM_RUN`
///   return `EINTR` at once;
/// - a kick while the thread is outside `KVM_RUN` (handling an exit) stays pending, and the
///   next `KVM_RUN` returns `EINTR` before entering the guest: no kick is lost, whatever the
///   timing;
/// - the signal is never delivered to a handler (it is blocked whenever the thread is in user
///   space), so none is needed; the vCPU thread takes it with [`VcpuKick::take_pending`].
///
/// Pick a signal nothing else in the process uses, for example `SIGRTMIN() + 2` (see
/// `vmm_sys_util::signal::SIGRTMIN`).
///
/// # Pausing every vCPU at a consistent point
///
/// 1. The controller sets a pause flag the vCPU threads share, then calls [`kick`] on each
///    vCPU's handle.
/// 2. Each vCPU thread's `KVM_RUN` returns `EINTR` (at once, or when the thread gets back to
///    it); the thread sees the flag and calls [`take_pending`]. That `KVM_RUN` completed the
///    I/O instruction of the exit handled before it, and ran no guest code after the kick;
///    [`pause_vcpu`] makes sure of it whatever path led the thread there. The vCPU's state is
///    now consistent: save it on the thread ([`save_vcpu`]) or hand the fd to the controller.
/// 3. When every vCPU thread has acknowledged, the controller saves the VM-wide state
///    ([`save_vm`]), device state and memory.
///
/// [`kick`]: VcpuKick::kick
/// [`take_pending`]: VcpuKick::take_pending
/// [`save_vcpu`]: crate::save_vcpu
/// [`save_vm`]: crate::save_vm
///
/// # Example
///
/// An application processor that was never started waits in `KVM_RUN` for a SIPI, as a halted
/// vCPU waits for an interrupt; a kick gets its thread out and the thread saves the vCPU.
///
/// ```
/// # #[cfg(target_arch = "x86_64")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::mpsc;
///
/// use kvm_state::{pause_vcpu, save_vcpu, savable_msr_indices, VcpuKick};
///
/// if !std::path::Path::new("/dev/kvm").exists() {
///     return Ok(());
/// }
/// let kvm = kvm_ioctls::Kvm::new()?;
/// let vm = kvm.create_vm()?;
/// vm.create_irq_chip()?;
/// let _bsp = vm.create_vcpu(0)?;
/// let mut ap = vm.create_vcpu(1)?;
/// let msr_indices = savable_msr_indices(&kvm)?;
/// let pause = AtomicBool::new(false);
/// let signal = vmm_sys_util::signal::SIGRTMIN() + 2;
///
/// let (kick_tx, kick_rx) = mpsc::channel();
/// let saved = std::thread::scope(|s| {
///     let vcpu_thread = s.spawn(|| -> kvm_state::Result<_> {
///         // On the vCPU thread, before its first KVM_RUN.
///         let kick = VcpuKick::for_current_thread(&ap, signal)?;
///         kick_tx.send(kick.clone()).unwrap();
///         loop {
///             match ap.run() {
///                 Err(e) if e.errno() == libc::EINTR => {
///                     kick.take_pending()?;
///                     if pause.load(Ordering::Acquire) {
///                         pause_vcpu(&mut ap)?;
///                         return save_vcpu(&vm, &ap, &msr_indices);
///                     }
///                 }
///                 Err(e) => panic!("KVM_RUN: {e}"),
///                 Ok(exit) => panic!("unexpected exit {exit:?}"),
///             }
///         }
///     });
///     // The controller.
///     let kick: VcpuKick = kick_rx.recv().unwrap();
///     pause.store(true, Ordering::Release);
///     kick.kick().unwrap();
///     vcpu_thread.join().unwrap()
/// })?;
/// assert_eq!(saved.mp_state.mp_state, kvm_bindings::KVM_MP_STATE_UNINITIALIZED);
/// # Ok(())
/// # }
/// # #[cfg(not(target_arch = "x86_64"))]
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuKick {
    pid: libc::pid_t,
    tid: libc::pid_t,
    signal: c_int,
}

impl VcpuKick {
    /// Prepares the calling thread, which runs `vcpu`, to be kicked with `signal`: blocks
    /// `signal` in this thread (no other thread's mask and no handler change) and sets the
    /// vCPU's `KVM_SET_SIGNAL_MASK` to this thread's mask without `signal`, so KVM unblocks it
    /// only while the vCPU runs. Call it on the vCPU thread before its first `KVM_RUN`, and
    /// again if the thread's signal mask changes.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Kick`] if `signal` is not a valid signal or cannot be blocked,
    /// [`KvmStateError::Ioctl`] if `KVM_SET_SIGNAL_MASK` fails.
    pub fn for_current_thread(vcpu: &VcpuFd, signal: c_int) -> Result<VcpuKick> {
        let error = |action| {
            move |source| KvmStateError::Kick {
                action,
                signal,
                source,
            }
        };
        if !(1..=64).contains(&signal) {
            return Err(error("use")(std::io::Error::from_raw_os_error(
                libc::EINVAL,
            )));
        }
        let only = signal_set(signal).map_err(error("use"))?;
        let mut old = empty_signal_set().map_err(error("block"))?;
        // SAFETY: `only` and `old` are initialised signal sets owned by this frame; the call
        // reads the first and writes the second, nothing else.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &only, &mut old) };
        if rc != 0 {
            return Err(error("block")(std::io::Error::from_raw_os_error(rc)));
        }
        let mut mask = KvmSignalMask {
            len: KERNEL_SIGSET_LEN,
            sigset: [0; KERNEL_SIGSET_LEN as usize],
        };
        let mut bits = 0u64;
        for signo in 1..=64 {
            // SAFETY: `old` is an initialised signal set; `sigismember` only reads it.
            if signo != signal && unsafe { libc::sigismember(&old, signo) } == 1 {
                bits |= 1 << (signo - 1);
            }
        }
        mask.sigset = bits.to_le_bytes();
        // SAFETY: `vcpu` is a live vCPU fd; KVM_SET_SIGNAL_MASK reads the 4-byte header and,
        // as `len` says, the 8 bytes after it, which are the `sigset` of `mask` (a `repr(C)`
        // struct of 12 bytes, borrowed for the call); it writes nothing.
        let rc = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(vcpu, KVM_SET_SIGNAL_MASK, &mask) };
        if rc != 0 {
            return Err(KvmStateError::Ioctl {
                ioctl: "KVM_SET_SIGNAL_MASK",
                source: kvm_ioctls::Error::last(),
            });
        }
        // SAFETY: getpid and gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        Ok(VcpuKick { pid, tid, signal })
    }

    /// The signal this handle sends.
    pub fn signal(&self) -> c_int {
        self.signal
    }

    /// Kicks the vCPU thread out of `KVM_RUN` (or makes its next `KVM_RUN` return `EINTR`).
    /// Call it from any thread while the vCPU thread lives.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Kick`] if the signal cannot be sent (the thread has exited).
    pub fn kick(&self) -> Result<()> {
        // SAFETY: tgkill sends a signal to the thread `tid` of this process `pid` and touches no
        // memory of ours. The signal is blocked in the vCPU thread except inside KVM_RUN, where
        // it only interrupts the run.
        let rc = unsafe { libc::tgkill(self.pid, self.tid, self.signal) };
        if rc != 0 {
            return Err(KvmStateError::Kick {
                action: "send",
                signal: self.signal,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Takes the kicks pending on the calling thread (call it on the vCPU thread after
    /// `KVM_RUN` returned `EINTR`), so the next `KVM_RUN` runs the guest again. Returns
    /// whether there was one.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Kick`] if `sigtimedwait` fails.
    pub fn take_pending(&self) -> Result<bool> {
        let error = |source| KvmStateError::Kick {
            action: "take",
            signal: self.signal,
            source,
        };
        let set = signal_set(self.signal).map_err(error)?;
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut taken = false;
        loop {
            // SAFETY: `set` and `zero` are initialised and borrowed for the call; a null
            // `siginfo_t` pointer is allowed and means "do not report it".
            let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
            if rc == self.signal {
                taken = true;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(taken),
                Some(libc::EINTR) => continue,
                _ => return Err(error(err)),
            }
        }
    }
}

fn empty_signal_set() -> std::io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is given.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: initialised by sigemptyset above.
    Ok(unsafe { set.assume_init() })
}

fn signal_set(signal: c_int) -> std::io::Result<libc::sigset_t> {
    let mut set = empty_signal_set()?;
    // SAFETY: `set` is an initialised signal set owned by this frame.
    if unsafe { libc::sigaddset(&mut set, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(set)
}

/// Runs the vCPU once with `immediate_exit` set, so that it returns at once with `EINTR`.
///
/// After a port or MMIO exit the instruction is completed by the next `KVM_RUN` only; this
/// call completes it (RIP moves past it) without running any further guest code, so that
/// state read afterwards is consistent. Call it on the vCPU's thread before
/// [`save_vcpu`](crate::save_vcpu) whenever the last `KVM_RUN` returned an exit. After a
/// `KVM_RUN` that returned `EINTR` (a [`VcpuKick`]) the I/O is already complete and this call
/// changes nothing, so a VMM can call it unconditionally.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_RUN` fails with anything but `EINTR`,
/// [`KvmStateError::PauseNotInterrupted`] if it returned an exit instead.
pub fn pause_vcpu(vcpu: &mut VcpuFd) -> Result<()> {
    vcpu.set_kvm_immediate_exit(1);
    let outcome = match vcpu.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(source) => Err(KvmStateError::Ioctl {
            ioctl: "KVM_RUN",
            source,
        }),
        Ok(exit) => Err(KvmStateError::PauseNotInterrupted(exit_name(&exit))),
    };
    vcpu.set_kvm_immediate_exit(0);
    outcome
}

/// Short name of a vCPU exit for error messages.
pub(crate) fn exit_name(exit: &VcpuExit<'_>) -> &'static str {
    match exit {
        VcpuExit::IoOut(..) => "an io-out exit",
        VcpuExit::IoIn(..) => "an io-in exit",
        VcpuExit::MmioRead(..) => "an mmio-read exit",
        VcpuExit::MmioWrite(..) => "an mmio-write exit",
        VcpuExit::Hlt => "a hlt exit",
        VcpuExit::Shutdown => "a shutdown exit",
        VcpuExit::InternalError => "an internal-error exit",
        VcpuExit::FailEntry(..) => "a fail-entry exit",
        VcpuExit::Intr => "an intr exit",
        _ => "an unexpected exit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_kvm_set_signal_mask_number() {
        vmm_sys_util::ioctl_iow_nr!(
            KVM_SET_SIGNAL_MASK_NR,
            0xae,
            0x8b,
            kvm_bindings::kvm_signal_mask
        );
        assert_eq!(KVM_SET_SIGNAL_MASK, KVM_SET_SIGNAL_MASK_NR());
        assert_eq!(size_of::<KvmSignalMask>(), 12);
    }
}
