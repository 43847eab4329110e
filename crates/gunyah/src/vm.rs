//! VM descriptors and their requests.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use uapi::{GUNYAH_MEM_UNMAP, gunyah_fn_desc, gunyah_map_mem_args, gunyah_vm_boot_context};

use crate::backend::{self, Added};
use crate::compat::{self, BootReg};
use crate::front::*;
use crate::guard::Errno;
use crate::table::{self, Object};
use crate::vcpu::VcpuObj;
use crate::{mappings, standin};

/// A VM object.
pub(crate) struct VmObj {
    vm: backend::Vm,
    /// START was asked for (lendvm's VM left its configurable state then,
    /// whatever the answer).
    started: AtomicBool,
    /// X16..X31 as the program set them: recorded, never applied (x86 has
    /// no such registers; see [`BootReg::Unmapped`]).
    unmapped_regs: Mutex<[Option<u64>; 16]>,
}

impl VmObj {
    pub(crate) fn new(vm: backend::Vm) -> VmObj {
        VmObj {
            vm,
            started: AtomicBool::new(false),
            unmapped_regs: Mutex::new([None; 16]),
        }
    }
}

/// A request on a VM descriptor.
pub(crate) fn ioctl(vm: &Arc<VmObj>, request: u32, arg: usize) -> Result<c_int, Errno> {
    let v = &vm.vm;
    match request {
        GUNYAH_VM_SET_DTB_CONFIG => backend::set_dtb_config(v, &read_user(arg)?).map(|()| 0),
        GUNYAH_VM_START => {
            vm.started.store(true, Ordering::SeqCst);
            backend::start(v).map(|()| 0)
        }
        GUNYAH_VM_ADD_FUNCTION => add_function(vm, &read_user(arg)?),
        GUNYAH_VM_REMOVE_FUNCTION => {
            let desc: gunyah_fn_desc = read_user(arg)?;
            backend::remove_function(v, &desc).map(|()| 0)
        }
        GUNYAH_VM_MAP_MEM => map_mem(vm, &read_user(arg)?),
        GUNYAH_VM_SET_BOOT_CONTEXT => set_boot_context(vm, &read_user(arg)?),
        GH_VM_SET_USER_MEM_REGION | GH_VM_ANDROID_LEND_USER_MEM => {
            let region = read_user(arg)?;
            let lend = request == GH_VM_ANDROID_LEND_USER_MEM;
            // SAFETY: the program gives its own memory to the VM; keeping
            // it mapped (and, lent, untouched) while the VM lives is the
            // request's contract in Gunyah as here.
            unsafe { backend::user_mem_region(v, &region, lend) }.map(|()| 0)
        }
        GH_VM_ANDROID_SET_FW_CONFIG => backend::set_fw_config(v, &read_user(arg)?).map(|()| 0),
        _ => Err(Errno::ENOTTY),
    }
}

/// ADD_FUNCTION: a vCPU gets a descriptor (always close-on-exec, SPEC
/// F-3); irqfds and ioeventfds answer exactly 0.
fn add_function(vm: &Arc<VmObj>, desc: &gunyah_fn_desc) -> Result<c_int, Errno> {
    // The stand-in first: if lendvm refuses, only it is undone.
    let fd = standin::memfd(c"gunyah-vcpu", true, compat::VCPU_MMAP_SIZE as u64)?;
    match backend::add_function(&vm.vm, desc)? {
        Added::Other => Ok(0),
        Added::Vcpu(vcpu) => {
            let id = backend::vcpu_id(&vcpu);
            let made = VcpuObj::new(vcpu, &fd)
                .and_then(|obj| standin::hand_out(fd, Object::Vcpu(Arc::new(obj))));
            if made.is_err() {
                backend::forget_vcpu(&vm.vm, id);
            }
            made
        }
    }
}

/// MAP_MEM (SPEC §2.5–2.7): the descriptor number is resolved here (B-ADD-2:
/// not open, EBADF; B-ADD-3: not guest memory, EINVAL), the flags
/// translated from the program's encoding (DESIGN D13); lendvm judges the
/// rest.
fn map_mem(vm: &Arc<VmObj>, args: &gunyah_map_mem_args) -> Result<c_int, Errno> {
    let fd = i32::try_from(args.guest_mem_fd).map_err(|_| Errno::EBADF)?;
    let mem = match table::lookup(fd) {
        Some(Object::Mem(m)) => m,
        Some(_) => return Err(Errno::EINVAL),
        None if table::key_of(fd).is_some() => return Err(Errno::EINVAL),
        None => return Err(Errno::EBADF),
    };
    let flags = compat::map_flags(compat::abi(), args.flags);
    backend::map_mem(
        &vm.vm,
        mem.guest_mem(),
        args.guest_addr,
        flags,
        args.offset,
        args.size,
    )?;
    if flags & GUNYAH_MEM_UNMAP != 0 {
        // Lent pages came back: the program's mappings may see them again.
        mappings::refresh();
    }
    Ok(0)
}

/// SET_BOOT_CONTEXT in the aarch64 namespace (DESIGN D13, SPEC B-VM-6).
fn set_boot_context(vm: &Arc<VmObj>, ctx: &gunyah_vm_boot_context) -> Result<c_int, Errno> {
    match compat::boot_reg(ctx.reg, ctx.reserved)? {
        BootReg::Unmapped(i) => {
            // Allowed only before START, as every register.
            if vm.started.load(Ordering::SeqCst) {
                return Err(Errno::EINVAL);
            }
            let mut regs = vm.unmapped_regs.lock().unwrap_or_else(|p| p.into_inner());
            regs[usize::from(i - 16)] = Some(ctx.value);
            Ok(0)
        }
        reg => backend::set_boot_reg(&vm.vm, reg, ctx.value).map(|()| 0),
    }
}
