//! Guest memory descriptors: `ftruncate`, `fallocate` and `mmap` on them.

use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::backend;
use crate::guard::Errno;
use crate::mappings;

/// A guest memory file object.
pub(crate) struct MemObj {
    mem: Arc<backend::GuestMem>,
}

impl MemObj {
    pub(crate) fn new(mem: backend::GuestMem) -> MemObj {
        MemObj { mem: Arc::new(mem) }
    }

    /// lendvm's file.
    pub(crate) fn guest_mem(&self) -> &Arc<backend::GuestMem> {
        &self.mem
    }

    /// lendvm's own descriptor of the file.
    pub(crate) fn internal_fd(&self) -> RawFd {
        backend::guest_mem_fd(&self.mem)
    }
}

/// `ftruncate(fd, len)`: the file grows or shrinks (DESIGN D13), never
/// below a bound range (SPEC GM-7: EBUSY).
pub(crate) fn ftruncate(mem: &MemObj, len: libc::off_t) -> Result<c_int, Errno> {
    let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
    backend::resize(&mem.mem, len).map(|()| 0)
}

/// `fallocate(fd, mode, offset, len)` with Gunyah's rules (SPEC §2.2).
pub(crate) fn fallocate(
    mem: &MemObj,
    mode: c_int,
    offset: libc::off_t,
    len: libc::off_t,
) -> Result<c_int, Errno> {
    // Negative values: the kernel's EINVAL (vfs_fallocate).
    let (Ok(offset), Ok(len)) = (u64::try_from(offset), u64::try_from(len)) else {
        return Err(Errno::EINVAL);
    };
    backend::fallocate(&mem.mem, mode, offset, len).map(|()| 0)
}

/// `mmap` of the file: made by the kernel, recorded with lendvm.
pub(crate) fn mmap(
    mem: &MemObj,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: RawFd,
    offset: libc::off_t,
) -> Result<*mut c_void, Errno> {
    mappings::map(&mem.mem, addr, len, prot, flags, fd, offset)
}
