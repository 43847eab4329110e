//! VM descriptors and their requests.

use std::ffi::c_int;
use std::sync::Arc;

use uapi::{GUNYAH_MEM_UNMAP, gunyah_fn_desc, gunyah_map_mem_args, gunyah_vm_boot_context};

use crate::backend::{self, Added};
use crate::compat;
use crate::front::*;
use crate::guard::Errno;
use crate::table::Object;
use crate::vcpu::VcpuObj;
use crate::{mappings, standin};

/// A VM object.
pub(crate) struct VmObj {
    vm: backend::Vm,
}

impl VmObj {
    pub(crate) fn new(vm: backend::Vm) -> VmObj {
        VmObj { vm }
    }
}

/// A request on a VM descriptor.
pub(crate) fn ioctl(vm: &Arc<VmObj>, request: u32, arg: usize) -> Result<c_int, Errno> {
    let v = &vm.vm;
    match request {
        GUNYAH_VM_SET_DTB_CONFIG => backend::set_dtb_config(v, &read_user(arg)?).map(|()| 0),
        GUNYAH_VM_START => backend::start(v).map(|()| 0),
        GUNYAH_VM_ADD_FUNCTION => add_function(vm, &read_user(arg)?),
        GUNYAH_VM_REMOVE_FUNCTION => {
            let desc: gunyah_fn_desc = read_user(arg)?;
            backend::remove_function(v, &desc).map(|()| 0)
        }
        GUNYAH_VM_MAP_MEM => map_mem(vm, &read_user(arg)?),
        GUNYAH_VM_SET_BOOT_CONTEXT => {
            let ctx: gunyah_vm_boot_context = read_user(arg)?;
            backend::set_boot_context(v, &ctx).map(|()| 0)
        }
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

/// MAP_MEM (SPEC §2.5–2.7), decoded by lendvm's Gunyah front with the
/// program's descriptors and flag encoding (DESIGN D13).
fn map_mem(vm: &Arc<VmObj>, args: &gunyah_map_mem_args) -> Result<c_int, Errno> {
    backend::map_mem(&vm.vm, args)?;
    if args.flags & GUNYAH_MEM_UNMAP != 0 {
        // Lent pages came back: the program's mappings may see them again.
        // (UNMAP is the same bit in both encodings.)
        mappings::refresh();
    }
    Ok(0)
}
