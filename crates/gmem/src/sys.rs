//! The few raw system calls guest memory files need that the rust-vmm crates
//! do not wrap. Each returns the OS error as `Error::Os`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::Error;

/// `memfd_create(name, flags)`.
pub fn memfd_create(name: &CStr, flags: libc::c_uint) -> Result<OwnedFd, Error> {
    // SAFETY: `name` is a valid NUL-terminated string; the call only reads it.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::os("memfd_create"));
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ftruncate(fd, size)`.
pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> Result<(), Error> {
    let size = libc::off_t::try_from(size).map_err(|_| Error::BadSize(size))?;
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
        return Err(Error::os("ftruncate"));
    }
    Ok(())
}

/// Add memfd seals.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> Result<(), Error> {
    // SAFETY: plain fcntl on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::os("fcntl(F_ADD_SEALS)"));
    }
    Ok(())
}

/// Set or clear close-on-exec.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> Result<(), Error> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: plain fcntl on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) } < 0 {
        return Err(Error::os("fcntl(F_SETFD)"));
    }
    Ok(())
}

/// `fallocate(fd, mode, offset, len)`; the caller validated the range.
pub fn fallocate(
    fd: BorrowedFd<'_>,
    mode: libc::c_int,
    offset: u64,
    len: u64,
) -> Result<(), Error> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(Error::FallocateTooLarge { offset, len });
    };
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, n) } < 0 {
        return Err(Error::os("fallocate"));
    }
    Ok(())
}

/// Keep a mapping of guest memory out of core dumps and out of child
/// processes (DESIGN D11): `MADV_DONTDUMP` and `MADV_DONTFORK`.
pub fn keep_private(addr: *mut u8, len: usize) -> Result<(), Error> {
    for (advice, op) in [
        (libc::MADV_DONTDUMP, "madvise(MADV_DONTDUMP)"),
        (libc::MADV_DONTFORK, "madvise(MADV_DONTFORK)"),
    ] {
        // SAFETY: advice only changes how the kernel treats the mapping at
        // fork and core dump; it does not touch its contents. `addr, len`
        // is a whole mapping this crate made.
        if unsafe { libc::madvise(addr.cast(), len, advice) } < 0 {
            return Err(Error::os(op));
        }
    }
    Ok(())
}

/// vm-memory's mapping error as the kernel's errno: `mmap` failures keep
/// theirs (ENOMEM for a file larger than the address space can map), the
/// builder's own refusals are EINVAL.
pub(crate) fn mmap_error(op: &'static str, e: vm_memory::mmap::MmapRegionError) -> Error {
    let source = match e {
        vm_memory::mmap::MmapRegionError::Mmap(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
    };
    let source = match source.raw_os_error() {
        Some(_) => source,
        None => std::io::Error::from_raw_os_error(libc::EINVAL),
    };
    Error::Os { op, source }
}

/// `[addr, addr + len)` (page-aligned) is mapped in this process: what a
/// memslot over the caller's own memory needs (`mincore` says ENOMEM for
/// any hole). Access rights are not checked.
pub(crate) fn check_mapped(addr: u64, len: u64) -> Result<(), Error> {
    let refused = || Error::UserMemory { addr, len };
    let (Ok(size), Ok(pages)) = (
        usize::try_from(len),
        usize::try_from(len.div_ceil(binding::PAGE_SIZE)),
    ) else {
        return Err(refused());
    };
    let mut residency = Vec::new();
    residency.try_reserve_exact(pages).map_err(|_| refused())?;
    residency.resize(pages, 0u8);
    // SAFETY: mincore only writes one byte per page of the range into
    // `residency`, which holds exactly that many; it never touches the
    // range itself, mapped or not.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, size, residency.as_mut_ptr()) };
    if r < 0 {
        return Err(refused());
    }
    Ok(())
}

/// Copy `len` bytes of this process's memory at `src` into the view
/// `dst`, without faulting: EFAULT ([`Error::UserMemory`]) if any source
/// byte is unmapped or unreadable (`dst` then partly written).
pub(crate) fn copy_own_memory(src: u64, dst: &crate::HostView) -> Result<(), Error> {
    let len = dst.len();
    let slice = dst.as_volatile_slice();
    let guard = slice.ptr_guard_mut();
    let base = guard.as_ptr();
    let mut done = 0usize;
    while done < len {
        let local = libc::iovec {
            // In bounds: done < len, the view's length.
            iov_base: base.wrapping_add(done).cast(),
            iov_len: len - done,
        };
        let remote = libc::iovec {
            iov_base: (src + done as u64) as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: process_vm_readv on our own pid writes at most `len -
        // done` bytes into the view's live mapping from `done` on (the view
        // is borrowed for the whole call) and reports unreadable source
        // memory as an error or a short count instead of touching it.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n <= 0 {
            return Err(Error::UserMemory {
                addr: src,
                len: len as u64,
            });
        }
        done += n as usize;
    }
    Ok(())
}
