//! Stand-in files: the memfd behind each Gunyah object's descriptor.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::guard::Errno;
use crate::table::{self, Object};

/// A new memfd named `name` of `size` bytes, close-on-exec if asked.
pub(crate) fn memfd(name: &CStr, cloexec: bool, size: u64) -> Result<OwnedFd, Errno> {
    let flags = if cloexec { libc::MFD_CLOEXEC } else { 0 };
    // SAFETY: `name` is NUL-terminated; the call only reads it.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if size > 0 {
        let len = libc::off_t::try_from(size).map_err(|_| Errno::EINVAL)?;
        // SAFETY: plain syscall on the descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
            return Err(Errno::last());
        }
    }
    Ok(fd)
}

/// Register `fd` as naming `obj` and hand it to the program.
pub(crate) fn hand_out(fd: OwnedFd, obj: Object) -> Result<RawFd, Errno> {
    table::register(fd.as_raw_fd(), obj)?;
    Ok(fd.into_raw_fd())
}
