#![cfg(target_arch = "x86_64")]
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm};

#[test]
fn experiment() {
    let kvm = Kvm::new().unwrap();
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    let vm = kvm.create_vm().unwrap();
    println!("xsave2 size {}", vm.check_extension_int(Cap::Xsave2));
    vm.create_irq_chip().unwrap();
    for e in supported.as_slice() {
        println!("supported {:#x}.{} flags {} eax {:#x} ebx {:#x} ecx {:#x} edx {:#x}", e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx);
    }
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<kvm_bindings::kvm_cpuid_entry2>)>)> = vec![
        ("leaf7 ebx all ones", Box::new(|v| { for e in v.iter_mut() { if e.function == 7 && e.index == 0 { e.ebx = u32::MAX; e.ecx = u32::MAX; e.edx = u32::MAX; } } })),
        ("leaf1 ecx all ones", Box::new(|v| { for e in v.iter_mut() { if e.function == 1 { e.ecx = u32::MAX; e.edx = u32::MAX; } } })),
        ("vaddr 52", Box::new(|v| { for e in v.iter_mut() { if e.function == 0x8000_0008 { e.eax = (e.eax & !0xff00) | (52 << 8); } } })),
        ("extra leaf 0x4fff_0000", Box::new(|v| { v.push(kvm_bindings::kvm_cpuid_entry2 { function: 0x4fff_0000, eax: 1, ..Default::default() }); })),
        ("xcr0 amx", Box::new(|v| { for e in v.iter_mut() { if e.function == 0xd && e.index == 0 { e.eax |= 0x60000; } } })),
        ("xcr0 all", Box::new(|v| { for e in v.iter_mut() { if e.function == 0xd && e.index == 0 { e.eax = u32::MAX; e.edx = u32::MAX; } } })),
    ];
    for (i, (name, f)) in cases.iter().enumerate() {
        let vcpu = vm.create_vcpu(i as u64).unwrap();
        let mut entries = supported.as_slice().to_vec();
        f(&mut entries);
        let cpuid = CpuId::from_entries(&entries).unwrap();
        println!("{name}: {:?}", vcpu.set_cpuid2(&cpuid));
        let back = vcpu.get_cpuid2(KVM_MAX_CPUID_ENTRIES).unwrap();
        for e in back.as_slice() { if e.function == 7 && e.index == 0 || e.function == 1 || e.function == 0xd && e.index == 0 { println!("   back {:#x}.{} eax {:#x} ebx {:#x} ecx {:#x} edx {:#x}", e.function, e.index, e.eax, e.ebx, e.ecx, e.edx); } }
        let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index: 0x1234_5678, data: 1, ..Default::default() }]).unwrap();
        println!("   bogus msr: {:?}", vcpu.set_msrs(&msrs));
        let _ = &mut msrs;
    }
}
