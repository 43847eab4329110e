//! Every call the library makes into lendvm, in one place: the rest of the
//! library handles descriptors, mappings and the program's memory, and
//! reaches lendvm only through these functions and the types they name.
//! Raw arguments go to lendvm's Gunyah ABI front (`gunyah-abi`) with the
//! compat profile (DESIGN D13): the library holds no Gunyah rule itself.
//! Errors come back as the errno lendvm's rules attach to them.

use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use gunyah_abi::{Descriptors, Profile};
use uapi::{
    gunyah_create_mem_args, gunyah_fn_desc, gunyah_map_mem_args, gunyah_userspace_memory_region,
    gunyah_vcpu_run, gunyah_vm_boot_context, gunyah_vm_dtb_config, gunyah_vm_firmware_config,
};

use crate::compat;
use crate::guard::Errno;
use crate::table::{self, Object};

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

/// Every Gunyah request is served with the compat profile.
const PROFILE: Profile = Profile::Compat;

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
    gunyah_abi::create_vm(&device()?, vm_type, PROFILE).map_err(errno)
}

/// CREATE_GUEST_MEM (SPEC GM-1..3): a resizable file (DESIGN D13).
pub(crate) fn create_guest_mem(args: &gunyah_create_mem_args) -> Result<GuestMem, Errno> {
    gunyah_abi::create_guest_mem(&device()?, args, PROFILE).map_err(errno)
}

/// The descriptor lendvm holds for the file (the one the program's
/// descriptors are duplicates of).
pub(crate) fn guest_mem_fd(mem: &GuestMem) -> RawFd {
    mem.as_raw_fd()
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

/// The program's descriptors, as MAP_MEM names files: by (device, inode)
/// of the stand-in (B-ADD-2: not open, EBADF; B-ADD-3: not guest memory,
/// EINVAL).
struct ProgramFiles;

impl Descriptors for ProgramFiles {
    fn guest_mem(&self, fd: u32) -> vmm::Result<Arc<GuestMem>> {
        let bad = || vmm::Error::BadFd(fd as i32);
        let fd = i32::try_from(fd).map_err(|_| bad())?;
        match table::lookup(fd) {
            Some(Object::Mem(m)) => Ok(m.guest_mem().clone()),
            Some(_) => Err(vmm::Error::WrongFdKind {
                fd,
                wanted: "a Gunyah guest memory descriptor",
            }),
            None if table::key_of(fd).is_some() => Err(vmm::Error::WrongFdKind {
                fd,
                wanted: "a Gunyah guest memory descriptor",
            }),
            None => Err(bad()),
        }
    }
}

/// MAP_MEM in the program's flag encoding (DESIGN D13).
pub(crate) fn map_mem(vm: &Vm, args: &gunyah_map_mem_args) -> Result<(), Errno> {
    gunyah_abi::map_mem(vm, args, &ProgramFiles, compat::encoding()).map_err(errno)
}

/// SET_DTB_CONFIG (SPEC B-VM-4).
pub(crate) fn set_dtb_config(vm: &Vm, cfg: &gunyah_vm_dtb_config) -> Result<(), Errno> {
    gunyah_abi::set_dtb_config(vm, cfg).map_err(errno)
}

/// ANDROID_SET_FW_CONFIG (SPEC B-VM-5).
pub(crate) fn set_fw_config(vm: &Vm, cfg: &gunyah_vm_firmware_config) -> Result<(), Errno> {
    gunyah_abi::set_fw_config(vm, cfg).map_err(errno)
}

/// SET_BOOT_CONTEXT in the aarch64 namespace (SPEC B-VM-6, DESIGN D13).
pub(crate) fn set_boot_context(vm: &Vm, ctx: &gunyah_vm_boot_context) -> Result<(), Errno> {
    gunyah_abi::set_boot_context(vm, ctx, PROFILE).map_err(errno)
}

/// START (SPEC B-VM-3) with the resource manager's rules (DESIGN D13).
pub(crate) fn start(vm: &Vm) -> Result<(), Errno> {
    gunyah_abi::start(vm, PROFILE).map_err(errno)
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
    match gunyah_abi::add_function(vm, desc).map_err(errno)? {
        vmm::Function::Vcpu(v) => Ok(Added::Vcpu(v)),
        vmm::Function::Irqfd | vmm::Function::Ioeventfd => Ok(Added::Other),
    }
}

/// REMOVE_FUNCTION (SPEC F-2).
pub(crate) fn remove_function(vm: &Vm, desc: &gunyah_fn_desc) -> Result<(), Errno> {
    gunyah_abi::remove_function(vm, desc).map_err(errno)
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

/// VCPU_RUN (SPEC R-1..R-11) on the program's run page.
pub(crate) fn run(vcpu: &mut Vcpu, page: &mut gunyah_vcpu_run) -> Result<(), Errno> {
    gunyah_abi::vcpu_run(vcpu, page).map_err(errno)
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
    unsafe { gunyah_abi::set_user_mem_region(vm, region, lend) }.map_err(errno)
}
