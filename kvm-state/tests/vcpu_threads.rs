//! A VMM's view of the library on `/dev/kvm`: three vCPUs, each run by its own thread, paused
//! from a controller thread with `VcpuKick` (one in an I/O loop, one halted with interrupts
//! off, one in a loop that never exits), saved on their threads, restored into a fresh VM on
//! threads with `check_restore`/`CheckedRestore`, and again through `save_microvm` /
//! `restore_microvm` with lent fds. The guest is a few real-mode instructions of this file.

#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;

use common::{kvm_available, TempDir};
use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use kvm_state::{
    check_restore, pause_vcpu, restore_microvm, savable_msr_indices, save_microvm, save_vcpu,
    save_vm, CheckedRestore, GuestRegion, HostSupport, KvmStateError, MemoryRegionState,
    MicrovmState, VcpuKick, VcpuState, VmLayout, CURRENT_APP_VERSION,
};

const MEM_SIZE: usize = 0x10000;
/// vCPU 0: `inc eax; out 0x10, eax; jmp` — reports 1, 2, 3, ... to port 0x10.
const IO_LOOP: u64 = 0x1000;
const IO_LOOP_CODE: &[u8] = &[0x66, 0x40, 0x66, 0xe7, 0x10, 0xeb, 0xf9];
/// vCPU 1: `mov byte [0x600], 1; cli; hlt; jmp hlt` — halted for good; only a kick gets its
/// thread out.
const HALT: u64 = 0x2000;
const HALT_CODE: &[u8] = &[0xc6, 0x06, 0x00, 0x06, 0x01, 0xfa, 0xf4, 0xeb, 0xfd];
const HALTING: usize = 0x600;
/// vCPU 2: `inc dword [0x500]; jmp` — counts in memory, never exits.
const COUNT_LOOP: u64 = 0x3000;
const COUNT_LOOP_CODE: &[u8] = &[0x66, 0xff, 0x06, 0x00, 0x05, 0xeb, 0xf9];
const COUNTER: usize = 0x500;
const REPORT_PORT: u16 = 0x10;
const ENTRIES: [u64; 3] = [IO_LOOP, HALT, COUNT_LOOP];

fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 3
}

/// Anonymous memory backing the guest; declare it before the VM so the VM is dropped first.
struct GuestMemory(*mut u8);

impl GuestMemory {
    fn new() -> Self {
        // SAFETY: a fresh anonymous private mapping; the result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        GuestMemory(addr.cast())
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= MEM_SIZE);
        // SAFETY: the range is inside the mapping (checked above); no vCPU runs yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.add(offset), bytes.len()) };
    }

    fn read_all(&self) -> Vec<u8> {
        let mut out = vec![0; MEM_SIZE];
        // SAFETY: the whole mapping is readable; the vCPUs are paused when this is called.
        unsafe { std::ptr::copy_nonoverlapping(self.0, out.as_mut_ptr(), MEM_SIZE) };
        out
    }

    /// The counter vCPU 2 increments, read while it may be running.
    fn counter(&self) -> u32 {
        // SAFETY: `COUNTER` is 4-byte aligned inside the page-aligned mapping; the guest only
        // writes it with aligned 4-byte stores, so an atomic load sees whole values.
        unsafe { (*self.0.add(COUNTER).cast::<AtomicU32>()).load(Ordering::Relaxed) }
    }
}

impl GuestMemory {
    /// Whether vCPU 1 has reached its `hlt` (or is about to: the flag is set two
    /// instructions before it).
    fn halting(&self) -> bool {
        // SAFETY: `HALTING` is inside the mapping; the guest writes it with one byte store.
        unsafe {
            (*self.0.add(HALTING).cast::<std::sync::atomic::AtomicU8>()).load(Ordering::Relaxed)
                == 1
        }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; its VM was dropped before.
        unsafe { libc::munmap(self.0.cast(), MEM_SIZE) };
    }
}

/// A VM with an in-kernel irqchip and PIT, the memory, and `n` vCPUs given the CPUID this host offers.
fn create_vm(kvm: &Kvm, memory: &GuestMemory, n: u64) -> (VmFd, Vec<VcpuFd>) {
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    vm.create_pit2(kvm_bindings::kvm_pit_config {
        flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: memory.0 as u64,
    };
    // SAFETY: the region is the live mapping of `memory`, which outlives the VM (declared
    // before it by every caller).
    unsafe { vm.set_user_memory_region(region) }.unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    let vcpus = (0..n)
        .map(|id| {
            let vcpu = vm.create_vcpu(id).unwrap();
            vcpu.set_cpuid2(&cpuid).unwrap();
            vcpu
        })
        .collect();
    (vm, vcpus)
}

/// Loads the guest and points vCPU `i` at its loop in real mode; starts the APs.
fn boot(memory: &GuestMemory, vcpus: &[VcpuFd]) {
    memory.write(IO_LOOP as usize, IO_LOOP_CODE);
    memory.write(HALT as usize, HALT_CODE);
    memory.write(COUNT_LOOP as usize, COUNT_LOOP_CODE);
    for (vcpu, &entry) in vcpus.iter().zip(&ENTRIES) {
        let mut sregs = vcpu.get_sregs().unwrap();
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs).unwrap();
        let regs = kvm_bindings::kvm_regs {
            rip: entry,
            rflags: 0x2,
            ..Default::default()
        };
        vcpu.set_regs(&regs).unwrap();
        vcpu.set_mp_state(kvm_bindings::kvm_mp_state { mp_state: 0 })
            .unwrap();
    }
}

/// What the vCPU threads share with the controller.
struct Control {
    pause: AtomicBool,
    /// The last value vCPU 0 reported.
    reported: AtomicU32,
}

/// What a vCPU thread hands back once paused: its fd, its state saved on the thread, and the
/// values it saw the guest report.
struct Paused {
    vcpu: VcpuFd,
    state: VcpuState,
    reports: Vec<u32>,
}

/// The loop of a VMM's vCPU thread: run, handle exits, and on a kick with the pause flag set
/// complete pending I/O (`pause_vcpu`) and save the vCPU.
fn vcpu_thread(
    vm: &VmFd,
    mut vcpu: VcpuFd,
    control: &Control,
    msr_indices: &[u32],
    kicks: mpsc::Sender<VcpuKick>,
) -> Paused {
    let kick = VcpuKick::for_current_thread(&vcpu, kick_signal()).unwrap();
    kicks.send(kick).unwrap();
    let mut reports = Vec::new();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(REPORT_PORT, data)) => {
                let value = u32::from_le_bytes(data.try_into().unwrap());
                reports.push(value);
                control.reported.store(value, Ordering::Release);
            }
            Ok(exit) => panic!("unexpected exit {exit:?}"),
            Err(e) if e.errno() == libc::EINTR => {
                kick.take_pending().unwrap();
                if control.pause.load(Ordering::Acquire) {
                    pause_vcpu(&mut vcpu).unwrap();
                    let state = save_vcpu(vm, &vcpu, msr_indices).unwrap();
                    return Paused {
                        vcpu,
                        state,
                        reports,
                    };
                }
            }
            Err(e) => panic!("KVM_RUN: {e}"),
        }
    }
}

/// Runs `vcpus` on threads (restoring each from `restore` first, on its thread, when given)
/// until vCPU 0 has reported a value past `until`, vCPU 1 is halting and vCPU 2's counter has
/// moved, then kicks
/// every thread and returns what each handed back.
fn run_then_pause(
    vm: &VmFd,
    vcpus: Vec<VcpuFd>,
    memory: &GuestMemory,
    msr_indices: &[u32],
    restore: Option<&CheckedRestore<'_>>,
    until: u32,
) -> Vec<Paused> {
    let control = Control {
        pause: AtomicBool::new(false),
        reported: AtomicU32::new(0),
    };
    let counter_before = memory.counter();
    std::thread::scope(|s| {
        let (kick_tx, kick_rx) = mpsc::channel();
        let threads: Vec<_> = vcpus
            .into_iter()
            .enumerate()
            .map(|(index, vcpu)| {
                let (control, kick_tx) = (&control, kick_tx.clone());
                s.spawn(move || {
                    if let Some(checked) = restore {
                        checked.restore_vcpu(index, &vcpu).unwrap();
                    }
                    vcpu_thread(vm, vcpu, control, msr_indices, kick_tx)
                })
            })
            .collect();
        let kicks: Vec<VcpuKick> = (0..threads.len())
            .map(|_| kick_rx.recv().unwrap())
            .collect();
        while control.reported.load(Ordering::Acquire) <= until
            || memory.counter() == counter_before
            || !memory.halting()
        {
            std::thread::yield_now();
        }
        control.pause.store(true, Ordering::Release);
        for kick in &kicks {
            kick.kick().unwrap();
        }
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
fn test_vcpu_threads_pause_save_restore() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let msr_indices = savable_msr_indices(&kvm).unwrap();

    // Run three vCPUs on their threads, pause them from here, save each on its thread.
    let memory = GuestMemory::new();
    let (vm, vcpus) = create_vm(&kvm, &memory, 3);
    boot(&memory, &vcpus);
    let paused = run_then_pause(&vm, vcpus, &memory, &msr_indices, None, 20);
    let last = *paused[0].reports.last().unwrap();
    assert_eq!(paused[0].reports, (1..=last).collect::<Vec<_>>());
    // vCPU 1 is halted, or was kicked in the two instructions before its `hlt`.
    let halt = &paused[1].state;
    assert!(
        halt.mp_state.mp_state == KVM_MP_STATE_HALTED
            || (HALT + 5..=HALT + 6).contains(&halt.regs.rip),
        "vcpu 1: mp_state {}, rip {:#x}",
        halt.mp_state.mp_state,
        halt.regs.rip
    );
    assert!(paused[2].reports.is_empty());
    let counter = memory.counter();
    assert!(counter > 0);
    let mut state = MicrovmState {
        vm: save_vm(&vm).unwrap(),
        vcpus: paused.into_iter().map(|p| p.state).collect(),
        memory: vec![MemoryRegionState::with_contents(0, memory.read_all())],
        ..Default::default()
    };
    state.host = HostSupport::query(&kvm, &vm).unwrap().facts().clone();
    // Paused for good: the counter no longer moves.
    assert_eq!(memory.counter(), counter);
    drop(vm);
    drop(memory);

    // Through a snapshot file, into a fresh VM: checks first, then memory, the VM-wide state,
    // and each vCPU on its own thread.
    let dir = TempDir::new("vcpu-threads");
    let path = dir.path().join("smp.snap");
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    let (loaded, _) = MicrovmState::load_file(&path).unwrap();
    assert_eq!(loaded, state);

    let memory = GuestMemory::new();
    let (vm, vcpus) = create_vm(&kvm, &memory, 3);
    let host = HostSupport::query(&kvm, &vm).unwrap();
    let layout = VmLayout {
        vcpus: 3,
        memory: vec![GuestRegion {
            guest_phys_addr: 0,
            size: MEM_SIZE as u64,
        }],
        ..Default::default()
    };
    let checked = check_restore(&loaded, &host, &layout).unwrap();
    memory.write(0, &loaded.memory[0].contents);
    checked.restore_vm(&vm).unwrap();
    let resumed = run_then_pause(&vm, vcpus, &memory, &msr_indices, Some(&checked), last + 10);
    // vCPU 0 goes on where it stopped: no value lost, none repeated.
    let next = *resumed[0].reports.last().unwrap();
    assert_eq!(resumed[0].reports, (last + 1..=next).collect::<Vec<_>>());
    // vCPU 1 is halted (it had all of the run to get there), vCPU 2 counts on from the saved
    // counter.
    assert_eq!(resumed[1].state.mp_state.mp_state, KVM_MP_STATE_HALTED);
    assert!(memory.counter() > counter);

    // The same VM again with fds the VMM lends: save_microvm, then restore_microvm into a
    // third VM, where vCPU 0 alone runs on this thread.
    let counter = memory.counter();
    let fds: Vec<VcpuFd> = resumed.into_iter().map(|p| p.vcpu).collect();
    let lent: Vec<&VcpuFd> = fds.iter().collect();
    let again = save_microvm(
        &vm,
        &lent,
        &host,
        &msr_indices,
        Default::default(),
        vec![MemoryRegionState::with_contents(0, memory.read_all())],
    )
    .unwrap();
    drop(fds);
    drop(vm);
    drop(memory);

    let memory = GuestMemory::new();
    let (vm, mut vcpus) = create_vm(&kvm, &memory, 3);
    let host = HostSupport::query(&kvm, &vm).unwrap();
    assert_eq!(&again.host, host.facts());
    memory.write(0, &again.memory[0].contents);
    let lent: Vec<&VcpuFd> = vcpus.iter().collect();
    restore_microvm(&vm, &lent, &again, &host, &VmLayout::of_state(&again)).unwrap();
    assert_eq!(memory.counter(), counter);
    let mut reports = Vec::new();
    while reports.len() < 3 {
        match vcpus[0].run().unwrap() {
            VcpuExit::IoOut(REPORT_PORT, data) => {
                reports.push(u32::from_le_bytes(data.try_into().unwrap()));
            }
            exit => panic!("unexpected exit {exit:?}"),
        }
    }
    assert_eq!(reports, vec![next + 1, next + 2, next + 3]);
}

#[test]
fn test_vcpu_kick_before_run_is_not_lost() {
    if !kvm_available() {
        return;
    }
    // A kick sent while the thread is outside KVM_RUN stays pending and makes the next
    // KVM_RUN return EINTR before the guest runs (the halted vCPU would otherwise block
    // forever).
    let kvm = Kvm::new().unwrap();
    let memory = GuestMemory::new();
    let (vm, mut vcpus) = create_vm(&kvm, &memory, 2);
    boot(&memory, &vcpus);
    let halted = &mut vcpus[1];
    let kick = VcpuKick::for_current_thread(halted, kick_signal()).unwrap();
    assert!(!kick.take_pending().unwrap());
    kick.kick().unwrap();
    kick.kick().unwrap();
    let err = halted.run().unwrap_err();
    assert_eq!(err.errno(), libc::EINTR);
    assert!(kick.take_pending().unwrap());
    assert!(!kick.take_pending().unwrap());
    pause_vcpu(halted).unwrap();
    drop(vcpus);
    drop(vm);
}

#[test]
fn test_vcpu_kick_bad_signal() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    for bad in [0, 65, -1] {
        assert!(matches!(
            VcpuKick::for_current_thread(&vcpu, bad),
            Err(KvmStateError::Kick { action: "use", .. })
        ));
    }
}

#[test]
fn test_checked_restore_refuses_other_fd_counts_and_indices() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let memory = GuestMemory::new();
    let (vm, vcpus) = create_vm(&kvm, &memory, 2);
    let msr_indices = savable_msr_indices(&kvm).unwrap();
    let host = HostSupport::query(&kvm, &vm).unwrap();
    let lent: Vec<&VcpuFd> = vcpus.iter().collect();
    let state = save_microvm(
        &vm,
        &lent,
        &host,
        &msr_indices,
        Default::default(),
        Vec::new(),
    )
    .unwrap();
    let checked = check_restore(&state, &host, &VmLayout::of_state(&state)).unwrap();
    assert!(matches!(
        checked.restore(&vm, &lent[..1]),
        Err(KvmStateError::VcpuCount {
            saved: 2,
            target: 1
        })
    ));
    assert!(matches!(
        checked.restore_vcpu(2, lent[0]),
        Err(KvmStateError::NoSuchVcpu { index: 2, vcpus: 2 })
    ));
    // A layout with another vCPU count is refused by the checks.
    let three = VmLayout {
        vcpus: 3,
        ..VmLayout::of_state(&state)
    };
    assert!(matches!(
        check_restore(&state, &host, &three),
        Err(KvmStateError::VcpuCount {
            saved: 2,
            target: 3
        })
    ));
    checked.restore(&vm, &lent).unwrap();
}
