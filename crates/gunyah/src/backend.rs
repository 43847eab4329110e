//! Every call the library makes into lendvm (`vmm`, `gmem`, `binding`),
//! in one place: the rest of the library handles descriptors, mappings and
//! the program's memory, and reaches lendvm only through these functions
//! and the types they name. Errors come back as the errno lendvm's rules
//! attach to them.

use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::Mutex;

use uapi::{
    gunyah_fn_desc, gunyah_map_mem_args, gunyah_userspace_memory_region, gunyah_vcpu_run,
    gunyah_vm_dtb_config, gunyah_vm_firmware_config,
};

use crate::compat::{self, BootReg};
use crate::guard::Errno;

/// A lendvm VM.
pub(crate) type Vm = vmm::Vm;
/// A lendvm vCPU handle.
pub(crate) type Vcpu = vmm::Vcpu;
/// A lendvm guest memory file registered with the VM manager.
pub(crate) type GuestMem = vmm::GuestMem;
/// A program's own mapping of a guest memory file, registered with lendvm.
pub(crate) type UserView = gmem::UserView;
/// Interrupts a vCPU's run from another thread.
pub(crate) type Kicker = vmm::Kicker;

fn errno(e: vmm::Error) -> Errno {
    Errno(e.errno())
}

fn gmem_errno(e: gmem::Error) -> Errno {
    Errno(e.errno())
}

/// lendvm's device (`/dev/kvm`), opened on first use; an error (e.g. no
/// KVM) is retried next time.
pub(crate) fn device() -> Result<vmm::Device, Errno> {
    static DEVICE: Mutex<Option<vmm::Device>> = Mutex::new(None);
    let mut dev = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = dev.as_ref() {
        return Ok(d.clone());
    }
    let d = vmm::Device::open().map_err(errno)?;
    *dev = Some(d.clone());
    Ok(d)
}

/// CREATE_VM (SPEC B-VM-1), with the platform's MMIO window (DESIGN D13).
pub(crate) fn create_vm(vm_type: u64) -> Result<Vm, Errno> {
    let vm = device()?.create_vm_with_type(vm_type).map_err(errno)?;
    let mmio = compat::PLATFORM_MMIO;
    vm.set_mmio_window(mmio.start, mmio.end - mmio.start)
        .map_err(errno)?;
    Ok(vm)
}

/// CREATE_GUEST_MEM (SPEC GM-1, GM-2): a resizable file (DESIGN D13).
pub(crate) fn create_guest_mem(size: u64, flags: u64) -> Result<GuestMem, Errno> {
    device()?
        .create_resizable_guest_mem(size, compat::GUEST_MEM_CAPACITY, flags)
        .map_err(errno)
}

/// The descriptor lendvm holds for the file (the one the program's
/// descriptors are duplicates of).
pub(crate) fn guest_mem_fd(mem: &GuestMem) -> RawFd {
    mem.fd()
}

/// `ftruncate` (SPEC GM-7 with resizing).
pub(crate) fn resize(mem: &GuestMem, size: u64) -> Result<(), Errno> {
    mem.resize(size).map_err(errno)
}

/// `fallocate` (SPEC §2.2 against the current size).
pub(crate) fn fallocate(mem: &GuestMem, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
    mem.fallocate_current(mode, offset, len).map_err(errno)
}

/// The most bytes of the file lendvm tracks (its capacity).
pub(crate) fn capacity(mem: &GuestMem) -> u64 {
    mem.file().size()
}

/// Register a program mapping of `[offset, offset + len)` (whole pages).
pub(crate) fn add_user_view(
    mem: &GuestMem,
    offset: u64,
    len: u64,
    shared: bool,
) -> Result<UserView, Errno> {
    mem.file()
        .add_user_view(offset, len, shared)
        .map_err(gmem_errno)
}

/// A piece of an existing view's file (after a partial munmap).
pub(crate) fn split_user_view(view: &UserView, offset: u64, len: u64) -> Result<UserView, Errno> {
    view.file()
        .add_user_view(offset, len, true)
        .map_err(gmem_errno)
}

/// File byte ranges of the view that are lent now.
pub(crate) fn lent_ranges(view: &UserView) -> Vec<Range<u64>> {
    view.lent_ranges()
}

/// MAP_MEM with `flags` in lendvm's encoding and the file resolved.
pub(crate) fn map_mem(
    vm: &Vm,
    mem: &GuestMem,
    guest_addr: u64,
    flags: u32,
    offset: u64,
    size: u64,
) -> Result<(), Errno> {
    vm.map_mem(&gunyah_map_mem_args {
        guest_addr,
        flags,
        guest_mem_fd: mem.fd() as u32,
        offset,
        size,
    })
    .map_err(errno)
}

/// SET_DTB_CONFIG (SPEC B-VM-4).
pub(crate) fn set_dtb_config(vm: &Vm, cfg: &gunyah_vm_dtb_config) -> Result<(), Errno> {
    vm.set_dtb_config(cfg).map_err(errno)
}

/// ANDROID_SET_FW_CONFIG (SPEC B-VM-5).
pub(crate) fn set_fw_config(vm: &Vm, cfg: &gunyah_vm_firmware_config) -> Result<(), Errno> {
    vm.set_fw_config(cfg).map_err(errno)
}

/// SET_BOOT_CONTEXT for a register x86 has (SPEC B-VM-6: EINVAL after
/// START). [`BootReg::Unmapped`] registers never reach lendvm.
pub(crate) fn set_boot_reg(vm: &Vm, reg: BootReg, value: u64) -> Result<(), Errno> {
    let reg = match reg {
        BootReg::Gpr(i) => vmm::BootReg::Gpr(i),
        BootReg::Pc => vmm::BootReg::Pc,
        BootReg::Sp => vmm::BootReg::Sp,
        BootReg::Unmapped(_) => return Err(Errno::EINVAL),
    };
    vm.set_boot_reg(reg, value).map_err(errno)
}

/// START (SPEC B-VM-3) with the resource manager's rules (DESIGN D13).
pub(crate) fn start(vm: &Vm) -> Result<(), Errno> {
    vm.start_with(|vm| {
        let Some(dtb) = vm.configs().0 else {
            // lendvm's START says EINVAL itself.
            return Ok(());
        };
        let exec = vm
            .bindings()
            .iter()
            .find(|b| b.contains_guest(dtb.guest_phys_addr))
            .map(|b| b.perms().exec);
        compat::check_start(dtb.guest_phys_addr, dtb.size, exec).map_err(vmm::Error::Invalid)
    })
    .map_err(errno)
}

/// What ADD_FUNCTION made.
pub(crate) enum Added {
    /// A vCPU.
    Vcpu(Vcpu),
    /// An irqfd or ioeventfd.
    Other,
}

/// ADD_FUNCTION (SPEC F-1, F-3, F-5, F-6); `desc.arg` points into this
/// process (a bad pointer is EFAULT).
pub(crate) fn add_function(vm: &Vm, desc: &gunyah_fn_desc) -> Result<Added, Errno> {
    match vm.add_function(desc).map_err(errno)? {
        vmm::Function::Vcpu(v) => Ok(Added::Vcpu(v)),
        vmm::Function::Irqfd | vmm::Function::Ioeventfd => Ok(Added::Other),
    }
}

/// REMOVE_FUNCTION (SPEC F-2).
pub(crate) fn remove_function(vm: &Vm, desc: &gunyah_fn_desc) -> Result<(), Errno> {
    vm.remove_function(desc).map_err(errno)
}

/// Take back vCPU `id` after its ADD_FUNCTION could not be completed.
pub(crate) fn forget_vcpu(vm: &Vm, id: u32) {
    let _ = vm.remove_vcpu(id);
}

/// The vCPU's id.
pub(crate) fn vcpu_id(vcpu: &Vcpu) -> u32 {
    vcpu.id()
}

/// A handle that makes the vCPU's current (or next) run return EINTR.
pub(crate) fn kicker(vcpu: &Vcpu) -> Kicker {
    vcpu.kicker()
}

/// Interrupt the run `kicker` belongs to.
pub(crate) fn kick(kicker: &Kicker) {
    kicker.kick();
}

/// VCPU_RUN (SPEC R-1..R-11): `page` is the program's run page, read
/// (immediate_exit, resume actions, MMIO read data) and then rewritten
/// with what lendvm's run page holds after the run.
pub(crate) fn run(vcpu: &mut Vcpu, page: &mut gunyah_vcpu_run) -> Result<(), Errno> {
    *vcpu.page_mut() = *page;
    let ret = vcpu.run_raw();
    *page = *vcpu.page();
    if ret < 0 { Err(Errno(-ret)) } else { Ok(()) }
}

/// SET_USER_MEM_REGION (`lend` false) or ANDROID_LEND_USER_MEM (SPEC
/// B-VM-7).
///
/// # Safety
///
/// The region is the program's own memory, which it must keep mapped (and,
/// lent, not touch) while the VM lives: the contract of these requests.
pub(crate) unsafe fn user_mem_region(
    vm: &Vm,
    region: &gunyah_userspace_memory_region,
    lend: bool,
) -> Result<(), Errno> {
    // SAFETY: forwarded from this function's contract.
    let r = unsafe {
        if lend {
            vm.lend_user_mem(region)
        } else {
            vm.set_user_mem_region(region)
        }
    };
    r.map_err(errno)
}
