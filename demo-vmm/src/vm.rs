//! The demo VM: KVM objects, guest memory, the UART, and whole-VM save and restore.

use std::sync::Mutex;
use std::time::Duration;

use kvm_bindings::{
    kvm_mp_state, kvm_pit_config, kvm_segment, kvm_userspace_memory_region, CpuId,
    KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_state::{
    check_restore, savable_msr_indices, CheckedRestore, DevicesState, GuestRegion, HostSupport,
    KvmStateError, MemoryRegionState, MicrovmState, MmioTransportState, SerialState, VmLayout,
};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{DemoVmError, Result};
use crate::guest::{self, COM1_GSI, MEM_SIZE, SERIAL_INPUT, VCPU_COUNT};
use crate::memory::GuestRam;
use crate::run::{run_vcpus, Devices, RunOutput, StopWhen};
use crate::virtio::VirtioDevice;

/// Default limit on how long the guest may go without any vCPU reporting before a run fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many bytes of pending input the UART's FIFO holds (`vm_superio`'s 16550A).
pub const SERIAL_FIFO_SIZE: usize = 64;

/// The UART's interrupt line: an eventfd registered with KVM as an irqfd for [`COM1_GSI`].
#[derive(Debug)]
pub(crate) struct IrqLine(EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The emulated UART: `vm_superio`'s 16550A; what the guest transmits is dropped.
pub(crate) type Uart = Serial<IrqLine, NoEvents, std::io::Sink>;

/// An SMP VM with an in-kernel irqchip and PIT, [`VCPU_COUNT`] vCPUs, 2 MiB of memory (or
/// more, see [`DemoVm::with_memory_size`]), a
/// `vm_superio` UART on COM1 and a virtio-mmio device on `virtio-queue` (see
/// [`crate::virtio`]), able to run the demo guest (see [`crate::guest`]).
pub struct DemoVm {
    // Field order is drop order: the vCPUs and the VM go before the memory they use.
    vcpus: Vec<VcpuFd>,
    vm: VmFd,
    msr_indices: Vec<u32>,
    host: HostSupport,
    memory: GuestRam,
    uart: Mutex<Uart>,
    virtio: Mutex<VirtioDevice>,
    uart_irq: EventFd,
    timeout: Duration,
}

impl std::fmt::Debug for DemoVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoVm")
            .field("vcpus", &self.vcpus.len())
            .field("mem_size", &self.memory.size())
            .field("msr_indices", &self.msr_indices)
            .field("serial", &self.serial_state())
            .finish_non_exhaustive()
    }
}

impl DemoVm {
    /// Opens `/dev/kvm` and creates the VM: irqchip, PIT, memory, the UART and its interrupt
    /// line, and [`VCPU_COUNT`] vCPUs with the CPUID KVM supports (each with its own APIC id).
    /// No guest is loaded (see [`DemoVm::load_guest`]); the vCPUs are as KVM creates them
    /// (the APs wait for INIT/SIPI).
    ///
    /// # Errors
    ///
    /// [`DemoVmError::OpenKvm`] if `/dev/kvm` cannot be opened, [`DemoVmError::Ioctl`] naming
    /// the ioctl that failed, [`DemoVmError::GuestMemory`] if memory cannot be mapped.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(DemoVmError::OpenKvm)?;
        Self::with_kvm(&kvm)
    }

    /// Like [`DemoVm::new`] with an already open `/dev/kvm`.
    ///
    /// # Errors
    ///
    /// As [`DemoVm::new`].
    pub fn with_kvm(kvm: &Kvm) -> Result<Self> {
        Self::with_ram(kvm, GuestRam::anonymous(MEM_SIZE as u64)?)
    }

    /// Like [`DemoVm::with_kvm`] with the given guest memory (at guest address 0).
    pub(crate) fn with_ram(kvm: &Kvm, memory: GuestRam) -> Result<Self> {
        crate::memory_files::check_memory_size(memory.size())?;
        let ioctl = |ioctl| move |source| DemoVmError::Ioctl { ioctl, source };
        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        // Needed by VMX hosts for real-mode emulation; the address is above guest memory.
        vm.set_tss_address(0xfffb_d000)
            .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(ioctl("KVM_CREATE_PIT2"))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: memory.size(),
            userspace_addr: memory.host_addr(),
        };
        // SAFETY: the region is exactly the live mapping of `memory` (one readable and
        // writable region of `memory.size()` bytes at guest address 0), which is dropped only after
        // `vm` (field order of `DemoVm`), so the kernel never accesses it after it is unmapped.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        let uart_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(DemoVmError::EventFd)?;
        vm.register_irqfd(&uart_irq, COM1_GSI)
            .map_err(ioctl("KVM_IRQFD"))?;
        let uart = Mutex::new(Uart::new(
            IrqLine(uart_irq.try_clone().map_err(DemoVmError::EventFd)?),
            std::io::sink(),
        ));
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpus = Vec::with_capacity(VCPU_COUNT);
        for index in 0..VCPU_COUNT {
            let vcpu = vm
                .create_vcpu(index as u64)
                .map_err(ioctl("KVM_CREATE_VCPU"))?;
            vcpu.set_cpuid2(&cpuid_for_vcpu(&supported, index as u32))
                .map_err(ioctl("KVM_SET_CPUID2"))?;
            vcpus.push(vcpu);
        }
        let msr_indices = savable_msr_indices(kvm)?;
        // Once per VM: what this host offers (CPUID, xsave size) and its facts, which every
        // save records and every restore checks.
        let host = HostSupport::query(kvm, &vm)?;
        Ok(DemoVm {
            vcpus,
            vm,
            msr_indices,
            host,
            memory,
            uart,
            virtio: Mutex::new(VirtioDevice::new()?),
            uart_irq,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Guest memory.
    pub(crate) fn ram(&self) -> &GuestRam {
        &self.memory
    }

    /// The VM fd.
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// The vCPU fds; index 0 is the BSP.
    pub fn vcpus(&self) -> &[VcpuFd] {
        &self.vcpus
    }

    /// The MSRs to save on this host ([`savable_msr_indices`]).
    pub fn msr_indices(&self) -> &[u32] {
        &self.msr_indices
    }

    /// What this host offers a vCPU and its facts, queried once when the VM was created
    /// ([`HostSupport::query`]).
    pub fn host(&self) -> &HostSupport {
        &self.host
    }

    /// The VM as [`kvm_state::check_restore`] compares a state with it: [`VCPU_COUNT`] vCPUs,
    /// vCPU `i` with APIC id `i`, one memory region of [`MEM_SIZE`] bytes at 0, one UART and
    /// one virtio-mmio device.
    pub fn layout(&self) -> VmLayout {
        VmLayout {
            vcpus: self.vcpus.len(),
            memory: vec![GuestRegion {
                guest_phys_addr: 0,
                size: self.memory.size(),
            }],
            serial: 1,
            virtio_mmio: 1,
            // `cpuid_for_vcpu` gives vCPU id `i` the initial APIC id `i`, as KVM's LAPIC does.
            apic_ids: Vec::new(),
        }
    }

    /// Sets how long the guest may go without any report before a run fails (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A copy of all guest memory.
    pub fn read_memory(&self) -> Vec<u8> {
        self.memory.read_all()
    }

    /// Copies `data` into guest memory at guest physical address `offset`.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::GuestMemoryBounds`] if the range is outside guest memory.
    pub fn write_memory(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.memory.write(offset, data)
    }

    /// The guest memory as a saved region: guest physical address 0, [`MEM_SIZE`] bytes.
    pub fn memory_region(&self) -> MemoryRegionState {
        MemoryRegionState::with_contents(0, self.read_memory())
    }

    /// Queues bytes the UART has received; the guest reads them from its receive FIFO.
    /// Returns how many fitted.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::Serial`] if the FIFO is full or the interrupt cannot be raised.
    pub fn queue_serial_input(&mut self, bytes: &[u8]) -> Result<usize> {
        self.uart_mut()
            .enqueue_raw_bytes(bytes)
            .map_err(DemoVmError::Serial)
    }

    /// The state of the UART, as `kvm-state` saves it.
    pub fn serial_state(&self) -> SerialState {
        let uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        SerialState::from(&uart.state())
    }

    fn uart_mut(&mut self) -> &mut Uart {
        self.uart.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of the virtio-mmio device and its queue, as `kvm-state` saves it.
    pub fn virtio_state(&self) -> MmioTransportState {
        let device = self.virtio.lock().unwrap_or_else(|e| e.into_inner());
        device.state()
    }

    /// The state of the emulated devices: the UART and the virtio-mmio device.
    pub fn devices_state(&self) -> DevicesState {
        DevicesState {
            serial: vec![self.serial_state()],
            virtio_mmio: vec![self.virtio_state()],
        }
    }

    /// Writes the guest (code, page tables, GDT, IDT, data) into memory, points each vCPU at
    /// its program in 64-bit long mode with its own stack, makes the APs runnable, and resets
    /// the UART with [`SERIAL_INPUT`] queued.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::Ioctl`] if reading or writing vCPU state fails.
    pub fn load_guest(&mut self) -> Result<()> {
        for (addr, bytes) in guest::memory_image(self.memory.size()) {
            self.memory.write(addr, &bytes)?;
        }
        let ioctl = |ioctl| move |source| DemoVmError::Ioctl { ioctl, source };
        for (index, vcpu) in self.vcpus.iter().enumerate() {
            let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
            long_mode_sregs(&mut sregs);
            vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
            let (rip, rsp) = guest::entry(index);
            let regs = kvm_bindings::kvm_regs {
                rip,
                rsp,
                rflags: 0x2,
                ..Default::default()
            };
            vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
            // KVM creates APs waiting for INIT/SIPI; these start directly in long mode.
            vcpu.set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            })
            .map_err(ioctl("KVM_SET_MP_STATE"))?;
        }
        let trigger = IrqLine(self.uart_irq.try_clone().map_err(DemoVmError::EventFd)?);
        *self.uart_mut() = Uart::new(trigger, std::io::sink());
        self.queue_serial_input(SERIAL_INPUT)?;
        *self.virtio.get_mut().unwrap_or_else(|e| e.into_inner()) = VirtioDevice::new()?;
        Ok(())
    }

    /// Runs every vCPU on its own thread until `stop_when`, then pauses them all (see
    /// [`kvm_state::pause_vcpu`]): afterwards the VM can be saved or run again.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::UnexpectedExit`] on a guest exception or an exit the guest never
    /// causes, [`DemoVmError::Timeout`] when no vCPU reports within the timeout (see
    /// [`DemoVm::set_timeout`]), [`DemoVmError::Ioctl`] if `KVM_RUN` fails,
    /// [`DemoVmError::Serial`], [`DemoVmError::Thread`], or a [`DemoVmError::State`] error
    /// of [`kvm_state::VcpuKick`] (`Kick`) or [`kvm_state::pause_vcpu`].
    pub fn run(&mut self, stop_when: StopWhen) -> Result<RunOutput> {
        let devices = Devices {
            uart: &self.uart,
            virtio: &self.virtio,
            memory: self.memory.view(),
        };
        run_vcpus(&mut self.vcpus, devices, stop_when, self.timeout)
    }

    /// Runs the guest until it finishes, returning what each vCPU reported.
    ///
    /// # Errors
    ///
    /// As [`DemoVm::run`].
    pub fn run_to_end(&mut self) -> Result<Vec<Vec<u32>>> {
        Ok(self.run(StopWhen::Done)?.reports)
    }

    /// Saves the complete state of the paused VM (after [`DemoVm::run`], or before the first
    /// run) with [`kvm_state::save_microvm`]: VM-wide state, every vCPU, the UART and the
    /// virtio device, guest memory and the facts of this host.
    ///
    /// Each vCPU is paused again first ([`kvm_state::pause_vcpu`] is idempotent), so a pending
    /// I/O instruction is complete in the saved registers.
    ///
    /// # Errors
    ///
    /// Any error of [`kvm_state::pause_vcpu`] or [`kvm_state::save_microvm`].
    pub fn save_microvm(&mut self) -> Result<MicrovmState> {
        let memory = vec![self.memory_region()];
        self.save_microvm_with(memory)
    }

    /// [`DemoVm::save_microvm`] with `memory` as the state's memory regions.
    pub(crate) fn save_microvm_with(
        &mut self,
        memory: Vec<MemoryRegionState>,
    ) -> Result<MicrovmState> {
        for vcpu in &mut self.vcpus {
            kvm_state::pause_vcpu(vcpu)?;
        }
        let vcpus: Vec<&VcpuFd> = self.vcpus.iter().collect();
        Ok(kvm_state::save_microvm(
            &self.vm,
            &vcpus,
            &self.host,
            &self.msr_indices,
            self.devices_state(),
            memory,
        )?)
    }

    /// Restores a saved state into this VM, which must not have run.
    ///
    /// First every check, before anything is written: [`kvm_state::check_restore`] with this
    /// VM's [`DemoVm::layout`] (vCPU count and APIC ids, memory region, device counts, the
    /// host's facts, CPUID and xsave size, the sizes of each vCPU's areas), then the demo's
    /// own devices (the UART's pending input fits its FIFO; the virtio device has one queue
    /// that `virtio-queue` accepts). A state refused there leaves the VM untouched.
    ///
    /// Then, in the order KVM needs ([`CheckedRestore`]): guest memory, the VM-wide state
    /// ([`CheckedRestore::restore_vm`]), each vCPU on a thread of its own
    /// ([`CheckedRestore::restore_vcpu`] with its index), and the devices. A state that KVM
    /// itself refuses half-way (`KVM_SET_CPUID2`, an MSR) leaves the VM partly restored:
    /// discard it (see `docs/SECURITY.md`).
    ///
    /// # Errors
    ///
    /// A [`DemoVmError::State`] error of [`kvm_state::check_restore`] (`VcpuCount`, `ApicId`,
    /// `ApicIdDuplicate`, `DeviceCount`, `MemoryRegion`, `CpuidNotOffered`, `XsaveTooLarge`,
    /// `BadLength`, ...), [`DemoVmError::SerialInput`], [`DemoVmError::VirtioQueueCount`],
    /// [`DemoVmError::VirtioQueue`], [`DemoVmError::MemoryOutsideState`] for a state whose
    /// memory is in a memory file (see [`DemoVm::restore_from_files`]); then any error of
    /// [`CheckedRestore::restore_vm`] and
    /// [`CheckedRestore::restore_vcpu`], [`DemoVmError::Thread`], [`DemoVmError::Serial`].
    pub fn restore_microvm(&mut self, state: &MicrovmState) -> Result<()> {
        if state.memory_source.is_outside() {
            return Err(DemoVmError::MemoryOutsideState);
        }
        self.restore_state(state)
    }

    /// [`DemoVm::restore_microvm`] without refusing a state whose memory is outside it: the
    /// caller has put that memory in place.
    pub(crate) fn restore_state(&mut self, state: &MicrovmState) -> Result<()> {
        let checked = check_restore(state, &self.host, &self.layout())?;
        // `check_restore` compared these with the layout: one UART, one virtio device, one
        // memory region; the `else` branches are never taken.
        let count = |kind, saved| KvmStateError::DeviceCount {
            kind,
            saved,
            target: 1,
        };
        let [serial] = state.devices.serial.as_slice() else {
            return Err(count("serial", state.devices.serial.len()).into());
        };
        let [virtio] = state.devices.virtio_mmio.as_slice() else {
            return Err(count("virtio-mmio", state.devices.virtio_mmio.len()).into());
        };
        let [region] = state.memory.as_slice() else {
            return Err(KvmStateError::BadLength {
                what: "memory regions",
                found: state.memory.len(),
                expected: 1,
            }
            .into());
        };
        check_serial(serial)?;
        let virtio = VirtioDevice::from_state(virtio)?;

        if region.has_contents() {
            self.memory.write(0, &region.contents)?;
        }
        // The irqchips before the vCPUs: each LAPIC's state refers to them.
        checked.restore_vm(&self.vm)?;
        restore_vcpus_on_threads(&checked, &self.vcpus)?;
        *self.virtio.get_mut().unwrap_or_else(|e| e.into_inner()) = virtio;
        self.restore_serial(serial)
    }

    /// The UART gets the saved state.
    fn restore_serial(&mut self, saved: &SerialState) -> Result<()> {
        let trigger = IrqLine(self.uart_irq.try_clone().map_err(DemoVmError::EventFd)?);
        let uart = Uart::from_state(&saved.into(), trigger, NoEvents, std::io::sink())
            .map_err(DemoVmError::Serial)?;
        *self.uart_mut() = uart;
        Ok(())
    }
}

/// Writes each vCPU's checked state into its fd, each on a thread of its own named after the
/// vCPU, as a VMM whose vCPU fds live on their threads does: vCPU `i` of the state into
/// `vcpus[i]`.
fn restore_vcpus_on_threads(checked: &CheckedRestore<'_>, vcpus: &[VcpuFd]) -> Result<()> {
    std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(vcpus.len());
        for (index, vcpu) in vcpus.iter().enumerate() {
            let name = format!("vcpu{index}");
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(scope, move || checked.restore_vcpu(index, vcpu));
            threads.push(spawned.map_err(|source| DemoVmError::Thread { name, source }));
        }
        // Join every thread that started before reporting the first error.
        let mut first = Ok(());
        for thread in threads {
            let outcome = match thread {
                Ok(handle) => match handle.join() {
                    Ok(result) => result.map_err(DemoVmError::from),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(e) => Err(e),
            };
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    })
}

/// The demo's own check of a saved UART: its pending input fits the FIFO (`vm_superio` would
/// refuse it only half-way through a restore).
fn check_serial(serial: &SerialState) -> Result<()> {
    if serial.in_buffer.len() > SERIAL_FIFO_SIZE {
        return Err(DemoVmError::SerialInput {
            found: serial.in_buffer.len(),
            capacity: SERIAL_FIFO_SIZE,
        });
    }
    Ok(())
}

/// The supported CPUID with the vCPU's initial APIC id (leaf 1 EBX[31:24], leaves 0xb and
/// 0x1f EDX), as a VMM gives each vCPU.
fn cpuid_for_vcpu(supported: &CpuId, apic_id: u32) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (apic_id << 24),
            0xb | 0x1f => entry.edx = apic_id,
            _ => {}
        }
    }
    cpuid
}

/// 64-bit long mode with paging: flat code and data segments, the GDT, IDT and TSS of
/// [`crate::guest`].
fn long_mode_sregs(sregs: &mut kvm_bindings::kvm_sregs) {
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x8,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 0x3, // read/write, accessed
        db: 1,
        l: 0,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: guest::TSS,
        limit: 0x67,
        selector: 0x18,
        type_: 0xb, // busy 64-bit TSS
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.gdt.base = guest::GDT;
    sregs.gdt.limit = 0x27;
    sregs.idt.base = guest::IDT;
    sregs.idt.limit = 256 * 16 - 1;
    sregs.cr3 = guest::PML4;
    sregs.cr4 = 0x620; // PAE | OSFXSR | OSXMMEXCPT
    sregs.cr0 = 0x8001_0033; // PG | WP | NE | ET | MP | PE
    sregs.efer = 0x500; // LMA | LME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_serial_fifo_capacity() {
        let mut serial = SerialState {
            in_buffer: vec![0; SERIAL_FIFO_SIZE],
            ..Default::default()
        };
        check_serial(&serial).unwrap();
        serial.in_buffer.push(0);
        assert!(matches!(
            check_serial(&serial),
            Err(DemoVmError::SerialInput {
                found: 65,
                capacity: 64
            })
        ));
    }
}
