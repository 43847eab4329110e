//! `/dev/gunyah` itself: opening it, and its two requests (CREATE_VM,
//! CREATE_GUEST_MEM).

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::backend;
use crate::front::{self, GUNYAH_CREATE_GUEST_MEM, GUNYAH_CREATE_VM};
use crate::guard::Errno;
use crate::mem::MemObj;
use crate::standin;
use crate::table::Object;
use crate::vm::VmObj;
use uapi::{GHMF_CLOEXEC, gunyah_create_mem_args};

/// The path the library serves.
pub(crate) const PATH: &[u8] = b"/dev/gunyah";

/// open("/dev/gunyah", flags): a device object, close-on-exec per
/// O_CLOEXEC. Fails with lendvm's errno when KVM cannot be used.
pub(crate) fn open(flags: c_int) -> Result<c_int, Errno> {
    if flags & libc::O_DIRECTORY != 0 {
        return Err(Errno(libc::ENOTDIR));
    }
    backend::device()?;
    let fd = standin::memfd(c"gunyah", flags & libc::O_CLOEXEC != 0, 0)?;
    standin::hand_out(fd, Object::Device)
}

/// A request on a device descriptor.
pub(crate) fn ioctl(request: u32, arg: usize) -> Result<c_int, Errno> {
    match request {
        GUNYAH_CREATE_VM => create_vm(arg as u64),
        GUNYAH_CREATE_GUEST_MEM => create_guest_mem(front::read_user(arg)?),
        _ => Err(Errno::ENOTTY),
    }
}

/// CREATE_VM: the argument is the VM type, by value (SPEC B-VM-1). The VM
/// descriptor is always close-on-exec.
fn create_vm(vm_type: u64) -> Result<c_int, Errno> {
    let fd = standin::memfd(c"gunyah-vm", true, 0)?;
    let vm = backend::create_vm(vm_type)?;
    standin::hand_out(fd, Object::Vm(Arc::new(VmObj::new(vm))))
}

/// CREATE_GUEST_MEM (SPEC GM-1..GM-4). The program gets a duplicate of
/// lendvm's own memfd (GUNYAH-USERSPACE §3.5, choice A), close-on-exec iff
/// GHMF_CLOEXEC.
fn create_guest_mem(args: gunyah_create_mem_args) -> Result<c_int, Errno> {
    let mem = backend::create_guest_mem(&args)?;
    let cmd = if args.flags & GHMF_CLOEXEC != 0 {
        libc::F_DUPFD_CLOEXEC
    } else {
        libc::F_DUPFD
    };
    // SAFETY: F_DUPFD* on lendvm's open descriptor returns a new one.
    let dup = unsafe { libc::fcntl(backend::guest_mem_fd(&mem), cmd, 0) };
    if dup < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    debug_assert_ne!(dup.as_raw_fd(), backend::guest_mem_fd(&mem));
    standin::hand_out(dup, Object::Mem(Arc::new(MemObj::new(mem))))
}
