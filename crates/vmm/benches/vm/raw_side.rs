//! The raw-KVM reference of each comparison.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use kvm_bindings::{CpuId, kvm_create_guest_memfd, kvm_userspace_memory_region2};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vmm::GuestMemFile;
use vmm::native_abi::{SYSTEM_REGION_BASE, SYSTEM_REGION_SIZE};

use crate::*;

// ----- raw side --------------------------------------------------------------------

/// A `MAP_SHARED` mapping of a descriptor, unmapped on drop.
pub(crate) struct Mapping {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

impl Mapping {
    pub(crate) fn new(fd: RawFd, len: u64) -> Mapping {
        let len = usize::try_from(len).expect("mapping length");
        // SAFETY: a fresh mapping placed by the kernel (no MAP_FIXED), so no
        // existing memory is affected; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            ptr: ptr.cast(),
            len,
        }
    }

    pub(crate) fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub(crate) fn read(&self, at: usize) -> u8 {
        assert!(at < self.len);
        // SAFETY: `at` lies inside the live mapping of a fixed-size file.
        unsafe { self.ptr.add(at).read_volatile() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mapped in `new`; nothing borrows it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A raw guest_memfd (MMAP | INIT_SHARED) with a `MAP_SHARED` mapping for
/// the slot's `userspace_addr`.
pub(crate) struct RawGmem {
    pub(crate) map: Mapping,
    pub(crate) fd: OwnedFd,
}

impl RawGmem {
    pub(crate) fn new(vm: &VmFd, size: u64) -> RawGmem {
        let raw = vm
            .create_guest_memfd(kvm_create_guest_memfd {
                size,
                flags: 3, // GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
                reserved: [0; 6],
            })
            .expect("KVM_CREATE_GUEST_MEMFD");
        // SAFETY: KVM just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let map = Mapping::new(fd.as_raw_fd(), size);
        RawGmem { map, fd }
    }
}

/// KVM_SET_USER_MEMORY_REGION2: create (`size > 0`) or delete (`size == 0`).
pub(crate) fn raw_slot(vm: &VmFd, slot: u32, gpa: u64, size: u64, uaddr: u64, gmem: Option<RawFd>) {
    let mut region = kvm_userspace_memory_region2 {
        slot,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uaddr,
        ..Default::default()
    };
    if let Some(fd) = gmem {
        region.flags = kvm_bindings::KVM_MEM_GUEST_MEMFD;
        region.guest_memfd = fd as u32;
        region.guest_memfd_offset = 0;
    }
    // SAFETY: every caller passes the address of a live mapping of at least
    // `size` bytes that outlives the slot (the slot is deleted, or the VM
    // closed, before the mapping is dropped: see the field order of
    // `RawVm`); deleting (size 0) passes no memory.
    unsafe { vm.set_user_memory_region2(region) }.expect("KVM_SET_USER_MEMORY_REGION2");
}

/// The raw reference VM: what a VMM written directly on KVM does to run the
/// same guest in the same mode. Fields drop in order: vCPU, VM, memory.
pub(crate) struct RawVm {
    pub(crate) vcpu: VcpuFd,
    pub(crate) vm: VmFd,
    pub(crate) gmem: Vec<RawGmem>,
    /// The raw side's own mappings of the system-region and code files.
    pub(crate) _maps: [Mapping; 2],
    pub(crate) _system: GuestMemFile,
    pub(crate) _code: GuestMemFile,
}

/// Raw slot numbers.
pub(crate) const SLOT_SYSTEM: u32 = 0;
pub(crate) const SLOT_CODE: u32 = 1;
pub(crate) const SLOT_DATA: u32 = 2;

impl RawVm {
    /// VM, irqchip, system-region and code slots (plus a guest_memfd slot
    /// of `data` bytes at `DATA_GPA` if nonzero), vCPU with CPUID, sregs
    /// and regs.
    pub(crate) fn new(kvm: &Kvm, cpuid: &CpuId, entry: &Entry, data: u64) -> RawVm {
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        vm.create_irq_chip().expect("KVM_CREATE_IRQCHIP");
        let system = GuestMemFile::memfd(SYSTEM_REGION_SIZE, 0).expect("system memfd");
        vmm::x86::build_system_region(&system).expect("system region");
        let system_map = Mapping::new(system.as_raw_fd(), SYSTEM_REGION_SIZE);
        raw_slot(
            &vm,
            SLOT_SYSTEM,
            SYSTEM_REGION_BASE,
            SYSTEM_REGION_SIZE,
            system_map.addr(),
            None,
        );
        let code = GuestMemFile::memfd(CODE_SIZE, 0).expect("code memfd");
        code.write_at(0, &guest_code()).expect("load code");
        let code_map = Mapping::new(code.as_raw_fd(), CODE_SIZE);
        raw_slot(&vm, SLOT_CODE, CODE_GPA, CODE_SIZE, code_map.addr(), None);
        let mut gmem = Vec::new();
        if data > 0 {
            let g = RawGmem::new(&vm, data);
            raw_slot(
                &vm,
                SLOT_DATA,
                DATA_GPA,
                data,
                g.map.addr(),
                Some(g.fd.as_raw_fd()),
            );
            gmem.push(g);
        }
        let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        vcpu.set_cpuid2(cpuid).expect("KVM_SET_CPUID2");
        let mut sregs = vcpu.get_sregs().expect("KVM_GET_SREGS");
        vmm::x86::native_sregs(&mut sregs);
        vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        vcpu.set_regs(&entry.regs()).expect("KVM_SET_REGS");
        RawVm {
            vcpu,
            vm,
            gmem,
            _maps: [system_map, code_map],
            _system: system,
            _code: code,
        }
    }

    /// Run to the guest's `out 0xf4`.
    pub(crate) fn run_to_exit(&mut self) {
        match self.vcpu.run() {
            Ok(VcpuExit::IoOut(EXIT_PORT, _)) => {}
            other => panic!("raw: expected the guest's out 0xf4, got {other:?}"),
        }
    }

    /// Run to the next MMIO write at `addr`.
    pub(crate) fn run_to_mmio(&mut self, addr: u64) {
        match self.vcpu.run() {
            Ok(VcpuExit::MmioWrite(a, _)) if a == addr => {}
            other => panic!("raw: expected an MMIO write at {addr:#x}, got {other:?}"),
        }
    }
}
