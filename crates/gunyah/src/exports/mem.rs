//! `mmap` and friends on guest memory (and on other Gunyah descriptors),
//! `fallocate` and `ftruncate`.

use std::ffi::{c_int, c_void};

use super::{missing, program};
use crate::guard::{Errno, serve};
use crate::table::{self, Object};
use crate::{fdset, mappings, mem, next};

type MmapFn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;

fn mmap_with(
    next: Option<MmapFn>,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    let pass = || match next {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(addr, len, prot, flags, fd, off) },
        None => missing(libc::MAP_FAILED),
    };
    if fd >= 0 && fdset::may_be_ours(fd) && program() {
        match table::lookup(fd) {
            Some(Object::Mem(m)) => {
                return serve(libc::MAP_FAILED, || {
                    mem::mmap(&m, addr, len, prot, flags, fd, off)
                });
            }
            // Gunyah's device and VM files cannot be mapped.
            Some(Object::Device | Object::Vm(_)) => {
                return serve(libc::MAP_FAILED, || Err(Errno::ENODEV));
            }
            // The run page: the memfd maps natively.
            Some(Object::Vcpu(_)) | None => {}
        }
    }
    if flags & libc::MAP_FIXED != 0 && mappings::any() && program() {
        let p = pass();
        if p != libc::MAP_FAILED {
            serve((), || {
                mappings::unmapped(p as usize, len);
                Ok(())
            });
        }
        return p;
    }
    pass()
}

/// # Safety
/// As `mmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    mmap_with(next::mmap(), addr, len, prot, flags, fd, off)
}

/// # Safety
/// As `mmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    mmap_with(next::mmap64(), addr, len, prot, flags, fd, off)
}

/// # Safety
/// As `munmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let r = match next::munmap() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(addr, len) },
        None => missing(-1),
    };
    if r == 0 && mappings::any() && program() {
        serve((), || {
            mappings::unmapped(addr as usize, len);
            Ok(())
        });
    }
    r
}

/// # Safety
/// As `mremap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let p = match next::mremap() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(old, old_len, new_len, flags, new_addr) },
        None => missing(libc::MAP_FAILED),
    };
    let touches_records = || {
        mappings::overlaps(old as usize, old_len.max(1))
            || (flags & libc::MREMAP_FIXED != 0 && mappings::overlaps(p as usize, new_len))
    };
    if p != libc::MAP_FAILED && mappings::any() && program() && touches_records() {
        serve((), || {
            mappings::remapped(old as usize, old_len, p as usize, new_len, flags);
            Ok(())
        });
    }
    p
}

/// # Safety
/// As `mprotect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
    if mappings::any() && program() && mappings::overlaps(addr as usize, len) {
        return serve(-1, || mappings::protect(addr as usize, len, prot));
    }
    match next::mprotect() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(addr, len, prot) },
        None => missing(-1),
    }
}

type FallocateFn = unsafe extern "C" fn(c_int, c_int, libc::off_t, libc::off_t) -> c_int;

fn fallocate_with(
    next: Option<FallocateFn>,
    fd: c_int,
    mode: c_int,
    off: libc::off_t,
    len: libc::off_t,
) -> c_int {
    if fdset::may_be_ours(fd) && program() {
        match table::lookup(fd) {
            Some(Object::Mem(m)) => return serve(-1, || mem::fallocate(&m, mode, off, len)),
            // Gunyah's other files have no fallocate.
            Some(_) => return serve(-1, || Err(Errno::EOPNOTSUPP)),
            None => {}
        }
    }
    match next {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd, mode, off, len) },
        None => missing(-1),
    }
}

/// # Safety
/// As `fallocate(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate(
    fd: c_int,
    mode: c_int,
    off: libc::off_t,
    len: libc::off_t,
) -> c_int {
    fallocate_with(next::fallocate(), fd, mode, off, len)
}

/// # Safety
/// As `fallocate(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate64(
    fd: c_int,
    mode: c_int,
    off: libc::off_t,
    len: libc::off_t,
) -> c_int {
    fallocate_with(next::fallocate64(), fd, mode, off, len)
}

type FtruncateFn = unsafe extern "C" fn(c_int, libc::off_t) -> c_int;

fn ftruncate_with(next: Option<FtruncateFn>, fd: c_int, len: libc::off_t) -> c_int {
    if fdset::may_be_ours(fd) && program() {
        match table::lookup(fd) {
            Some(Object::Mem(m)) => return serve(-1, || mem::ftruncate(&m, len)),
            // Gunyah's other files are not regular files.
            Some(_) => return serve(-1, || Err(Errno::EINVAL)),
            None => {}
        }
    }
    match next {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd, len) },
        None => missing(-1),
    }
}

/// # Safety
/// As `ftruncate(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: libc::off_t) -> c_int {
    ftruncate_with(next::ftruncate(), fd, len)
}

/// # Safety
/// As `ftruncate(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: libc::off_t) -> c_int {
    ftruncate_with(next::ftruncate64(), fd, len)
}
