//! `ioctl`: Gunyah requests on Gunyah descriptors are served; everything
//! else (KVM_RUN from lendvm's vCPU threads above all) passes after one
//! test of the request's type byte.

use std::ffi::{c_int, c_ulong};

use super::{missing, program};
use crate::guard::{Errno, serve};
use crate::table::{self, Object};
use crate::{device, front, next, vcpu, vm};

/// # Safety
/// As `ioctl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int {
    if front::is_gunyah_type(request)
        && program()
        && let Some(obj) = table::lookup(fd)
    {
        // The kernel takes the request as 32 bits.
        let request = request as u32;
        return serve(-1, || match obj {
            Object::Device => device::ioctl(request, arg),
            Object::Vm(v) => vm::ioctl(&v, request, arg),
            Object::Vcpu(v) => vcpu::ioctl(&v, request),
            Object::Mem(_) => Err(Errno::ENOTTY),
        });
    }
    match next::ioctl() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd, request, arg) },
        None => missing(-1),
    }
}
