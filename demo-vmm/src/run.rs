//! Running the vCPUs, one thread each, and stopping them all at a consistent point.
//!
//! Each vCPU thread loops on `KVM_RUN` and handles the exits (the UART's port I/O, the virtio
//! device's MMIO, reports); a worker thread completes the virtio device's requests, one every
//! [`VIRTIO_REQUEST_INTERVAL`].
//! To stop, the VMM sets a flag and kicks each vCPU thread once with its
//! [`kvm_state::VcpuKick`] (a thread-directed signal that KVM alone unblocks, so a kick that
//! lands while the thread is outside `KVM_RUN` makes its next `KVM_RUN` return at once: no kick
//! is lost and none needs re-sending, and no signal handler is installed); a thread that sees
//! the flag calls [`kvm_state::pause_vcpu`], which completes a pending I/O instruction without
//! running further guest code, and ends. After [`crate::DemoVm::run`] returns, every vCPU is
//! paused and its state can be saved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::KVM_EXIT_INTERNAL_ERROR;
use kvm_ioctls::{VcpuExit, VcpuFd};
use kvm_state::VcpuKick;

use crate::error::{DemoVmError, Result};
use crate::guest::{COM1_BASE, DONE_PORT, FAULT_PORT, REPORT_PORT};
use crate::memory::Memory;
use crate::virtio::{VirtioDevice, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::vm::Uart;

/// How often the virtio worker completes one request.
pub const VIRTIO_REQUEST_INTERVAL: Duration = Duration::from_micros(300);

/// When a run of the guest stops.
#[derive(Clone, Copy, Debug)]
pub enum StopWhen {
    /// When the BSP has written [`crate::DONE_MARKER`]: the guest has finished.
    Done,
    /// When the vCPUs together have made at least this many reports in this run. The vCPU whose
    /// report reaches the count stops at that I/O exit; the others wherever the kick finds them.
    Reports(usize),
    /// When this much time has passed since the run started: every vCPU is kicked by a signal
    /// wherever it is (in the middle of guest code, or halted).
    After(Duration),
    /// When the reports of this run so far (one list per vCPU) satisfy the condition; checked
    /// at every report.
    Condition(fn(&[Vec<u32>]) -> bool),
}

/// What a run of the guest did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The values each vCPU reported in this run, in order; index 0 is the BSP.
    pub reports: Vec<Vec<u32>>,
    /// The payloads the virtio device received in this run, in order (what it "transmitted").
    pub virtio: Vec<u32>,
    /// Whether the guest finished (the BSP wrote [`crate::DONE_MARKER`]).
    pub finished: bool,
}

/// The signal that kicks a vCPU thread out of `KVM_RUN` ([`VcpuKick`]); nothing else in the
/// demo uses it. It is blocked in the vCPU threads and never delivered to a handler.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

/// A vCPU thread as the kicker sees it.
#[derive(Default)]
struct ThreadSlot {
    /// The thread's kick, once it has started and set it up.
    kick: Option<VcpuKick>,
    /// Whether this stop's kick was sent.
    kicked: bool,
    /// Set by the thread just before it ends; after that it must not be signalled (its
    /// thread id could be reused).
    ended: bool,
}

/// The devices and memory the vCPU threads and the virtio worker use.
pub(crate) struct Devices<'a> {
    pub(crate) uart: &'a Mutex<Uart>,
    pub(crate) virtio: &'a Mutex<VirtioDevice>,
    pub(crate) memory: &'a Memory,
}

/// What the vCPU threads and the VMM thread share during a run.
struct Shared<'a> {
    stop_when: StopWhen,
    stop: AtomicBool,
    progress: Mutex<Progress>,
    changed: Condvar,
    threads: Vec<Mutex<ThreadSlot>>,
    devices: Devices<'a>,
}

/// Reports so far, guarded by one lock.
struct Progress {
    reports: Vec<Vec<u32>>,
    virtio: Vec<u32>,
    finished: bool,
    last_report: Instant,
    running: usize,
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    fn report(&self, vcpu: usize, value: u32) {
        let mut progress = self.lock();
        progress.reports[vcpu].push(value);
        progress.last_report = Instant::now();
        let total: usize = progress.reports.iter().map(Vec::len).sum();
        let stop = match self.stop_when {
            StopWhen::Reports(n) => total >= n,
            StopWhen::Condition(condition) => condition(&progress.reports),
            StopWhen::Done | StopWhen::After(_) => false,
        };
        drop(progress);
        if stop {
            self.request_stop();
        }
    }

    fn transmitted(&self, payload: u32) {
        let mut progress = self.lock();
        progress.virtio.push(payload);
        progress.last_report = Instant::now();
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.request_stop();
    }

    /// Kicks, once, every vCPU thread that has started and not ended. A thread that has not
    /// set up its kick yet sees the stop flag before its first `KVM_RUN`.
    fn kick_all(&self) -> Result<()> {
        for slot in &self.threads {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let (Some(kick), false, false) = (slot.kick, slot.kicked, slot.ended) {
                // The thread marks itself ended under this lock before it returns, so it is
                // alive while the kick is sent.
                kick.kick()?;
                slot.kicked = true;
            }
        }
        Ok(())
    }
}

/// Runs every vCPU on its own thread until `stop_when` or an error, then pauses them all.
pub(crate) fn run_vcpus(
    vcpus: &mut [VcpuFd],
    devices: Devices<'_>,
    stop_when: StopWhen,
    timeout: Duration,
) -> Result<RunOutput> {
    let shared = Shared {
        stop_when,
        stop: AtomicBool::new(false),
        progress: Mutex::new(Progress {
            reports: vec![Vec::new(); vcpus.len()],
            virtio: Vec::new(),
            finished: false,
            last_report: Instant::now(),
            running: vcpus.len(),
        }),
        changed: Condvar::new(),
        threads: vcpus.iter().map(|_| Mutex::default()).collect(),
        devices,
    };
    let mut errors = Vec::new();
    std::thread::scope(|scope| {
        let shared = &shared;
        let mut handles = Vec::new();
        for (index, vcpu) in vcpus.iter_mut().enumerate() {
            let name = format!("vcpu{index}");
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(scope, move || vcpu_thread(index, vcpu, shared));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(source) => {
                    errors.push(DemoVmError::Thread { name, source });
                    shared.lock().running -= 1;
                    shared.request_stop();
                }
            }
        }
        let worker = std::thread::Builder::new()
            .name("virtio".into())
            .spawn_scoped(scope, move || virtio_worker(shared));
        match worker {
            Ok(handle) => handles.push(handle),
            Err(source) => {
                errors.push(DemoVmError::Thread {
                    name: "virtio".into(),
                    source,
                });
                shared.request_stop();
            }
        }
        supervise(shared, stop_when, timeout, &mut errors);
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    // The first error is the cause; later ones are usually consequences of the stop.
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    let progress = shared
        .progress
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(RunOutput {
        reports: progress.reports,
        virtio: progress.virtio,
        finished: progress.finished,
    })
}

/// The virtio device's worker: completes one request every [`VIRTIO_REQUEST_INTERVAL`] until
/// the run stops. It holds the device's lock while it completes a request, so the device is
/// never saved half-way through one.
fn virtio_worker(shared: &Shared<'_>) -> Result<()> {
    while !shared.stop.load(Ordering::Acquire) {
        let completed = {
            let mut device = shared
                .devices
                .virtio
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            device.process_one(shared.devices.memory)
        };
        match completed {
            Ok(Some(done)) => {
                if let Some(payload) = done.payload {
                    shared.transmitted(payload);
                }
            }
            Ok(None) => {}
            Err(e) => {
                shared.request_stop();
                return Err(e);
            }
        }
        std::thread::sleep(VIRTIO_REQUEST_INTERVAL);
    }
    Ok(())
}

/// The VMM thread's part of a run: decide when to stop, then kick until every vCPU thread
/// has ended.
fn supervise(
    shared: &Shared<'_>,
    stop_when: StopWhen,
    timeout: Duration,
    errors: &mut Vec<DemoVmError>,
) {
    let started = Instant::now();
    let mut progress = shared.lock();
    while progress.running > 0 {
        if !shared.stop.load(Ordering::Acquire) {
            if matches!(stop_when, StopWhen::After(d) if started.elapsed() >= d) {
                shared.request_stop();
            } else if progress.last_report.elapsed() >= timeout {
                errors.push(DemoVmError::Timeout(timeout));
                shared.request_stop();
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            drop(progress);
            if let Err(e) = shared.kick_all() {
                errors.push(e);
            }
            progress = shared.lock();
        }
        progress = shared
            .changed
            .wait_timeout(progress, Duration::from_millis(1))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// One vCPU thread: sets up its kick, runs, and unregisters.
fn vcpu_thread(index: usize, vcpu: &mut VcpuFd, shared: &Shared<'_>) -> Result<()> {
    let result = VcpuKick::for_current_thread(vcpu, kick_signal())
        .map_err(DemoVmError::from)
        .and_then(|kick| {
            shared.threads[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .kick = Some(kick);
            run_vcpu(index, vcpu, &kick, shared)
        });
    if result.is_err() {
        shared.request_stop();
    }
    shared.threads[index]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ended = true;
    shared.lock().running -= 1;
    shared.changed.notify_all();
    result
}

/// The `KVM_RUN` loop of one vCPU, until the stop flag is seen (then paused) or an error.
fn run_vcpu(index: usize, vcpu: &mut VcpuFd, kick: &VcpuKick, shared: &Shared<'_>) -> Result<()> {
    let unexpected = |reason: String| DemoVmError::UnexpectedExit {
        vcpu: index,
        reason,
    };
    loop {
        if shared.stop.load(Ordering::Acquire) {
            // Completes a pending port I/O (RIP moves past the `in`/`out`), runs nothing else.
            kvm_state::pause_vcpu(vcpu)?;
            return Ok(());
        }
        match vcpu.run() {
            Ok(VcpuExit::MmioRead(addr, data)) => {
                let offset = virtio_offset(addr, data.len())
                    .ok_or_else(|| unexpected(format!("guest read mmio {addr:#x}")))?;
                let device = shared.devices.virtio.lock();
                device.unwrap_or_else(|e| e.into_inner()).read(offset, data);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let offset = virtio_offset(addr, data.len())
                    .ok_or_else(|| unexpected(format!("guest wrote mmio {addr:#x}")))?;
                let device = shared.devices.virtio.lock();
                device
                    .unwrap_or_else(|e| e.into_inner())
                    .write(offset, data);
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                let mut uart = shared
                    .devices
                    .uart
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (i, byte) in (0u16..).zip(data.iter_mut()) {
                    let offset = com1_offset(port.wrapping_add(i))
                        .ok_or_else(|| unexpected(format!("guest read port {port:#x}")))?;
                    *byte = uart.read(offset);
                }
            }
            Ok(VcpuExit::IoOut(port, data)) if com1_offset(port).is_some() => {
                let mut uart = shared
                    .devices
                    .uart
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (i, &byte) in (0u16..).zip(data.iter()) {
                    if let Some(offset) = com1_offset(port.wrapping_add(i)) {
                        uart.write(offset, byte).map_err(DemoVmError::Serial)?;
                    }
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut word = [0u8; 4];
                let n = data.len().min(4);
                word[..n].copy_from_slice(&data[..n]);
                let value = u32::from_le_bytes(word);
                match port {
                    REPORT_PORT => shared.report(index, value),
                    DONE_PORT => shared.finish(),
                    FAULT_PORT => {
                        return Err(unexpected(format!(
                            "guest exception, vector {:#x}",
                            value & 0xff
                        )))
                    }
                    other => {
                        return Err(unexpected(format!(
                            "guest wrote {value:#x} to port {other:#x}"
                        )))
                    }
                }
            }
            Ok(VcpuExit::InternalError) => return Err(unexpected(internal_error(vcpu))),
            Ok(exit) => return Err(unexpected(format!("{exit:?}"))),
            // A kick: take it, so the next KVM_RUN runs the guest again; then check the flag.
            Err(e) if e.errno() == libc::EINTR => {
                kick.take_pending()?;
            }
            // An AP woken while it waits for a SIPI: check the flag, go on.
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(source) => {
                return Err(DemoVmError::Ioctl {
                    ioctl: "KVM_RUN",
                    source,
                })
            }
        }
    }
}

/// Describes a `KVM_EXIT_INTERNAL_ERROR` (KVM's emulator met an instruction it cannot run).
fn internal_error(vcpu: &mut VcpuFd) -> String {
    let run = vcpu.get_kvm_run();
    let suberror = if run.exit_reason == KVM_EXIT_INTERNAL_ERROR {
        // SAFETY: the exit reason says the kernel filled the `internal` member of the union;
        // it is plain integers, valid for any bit pattern.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    } else {
        0
    };
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    format!("internal error, suberror {suberror}, rip {rip:#x}")
}

/// The offset of an MMIO access in the virtio device's register window, if it lies inside.
fn virtio_offset(addr: u64, len: usize) -> Option<u64> {
    let offset = addr.checked_sub(VIRTIO_MMIO_BASE)?;
    let end = offset.checked_add(len as u64)?;
    (end <= VIRTIO_MMIO_SIZE).then_some(offset)
}

/// The UART register offset of `port`, if it is one of COM1's eight.
pub(crate) fn com1_offset(port: u16) -> Option<u8> {
    port.checked_sub(COM1_BASE)
        .filter(|&o| o <= 7)
        .and_then(|o| u8::try_from(o).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_com1_offset_bounds() {
        assert_eq!(com1_offset(0x3f7), None);
        assert_eq!(com1_offset(0x3f8), Some(0));
        assert_eq!(com1_offset(0x3ff), Some(7));
        assert_eq!(com1_offset(0x400), None);
    }

    #[test]
    fn test_virtio_offset_bounds() {
        assert_eq!(virtio_offset(VIRTIO_MMIO_BASE - 1, 4), None);
        assert_eq!(virtio_offset(VIRTIO_MMIO_BASE, 4), Some(0));
        assert_eq!(virtio_offset(VIRTIO_MMIO_BASE + 0xffc, 4), Some(0xffc));
        assert_eq!(virtio_offset(VIRTIO_MMIO_BASE + 0xffd, 4), None);
        assert_eq!(virtio_offset(u64::MAX, 4), None);
    }
}
