//! `open` of `/dev/gunyah`, and what `stat`/`statx`/`access` say of it.

use std::ffi::{c_char, c_int, c_uint};

use super::{missing, program};
use crate::guard::{Errno, serve};
use crate::{device, devnode, next};

const _: () = assert!(size_of::<libc::stat>() == size_of::<libc::stat64>());

/// Open the device, or pass the call on.
fn open_or(path: *const c_char, flags: c_int, pass: impl FnOnce() -> c_int) -> c_int {
    if devnode::is_device(path) && program() {
        return serve(-1, || device::open(flags));
    }
    pass()
}

/// # Safety
/// As `open(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_or(path, flags, || match next::open() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, flags, mode) },
        None => missing(-1),
    })
}

/// # Safety
/// As `open(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_or(path, flags, || match next::open64() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, flags, mode) },
        None => missing(-1),
    })
}

/// # Safety
/// As `openat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    open_or(path, flags, || match next::openat() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, flags, mode) },
        None => missing(-1),
    })
}

/// # Safety
/// As `openat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    open_or(path, flags, || match next::openat64() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, flags, mode) },
        None => missing(-1),
    })
}

/// glibc's `open` with `_FORTIFY_SOURCE`.
///
/// # Safety
/// As `open(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    open_or(path, flags, || match next::__open_2() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, flags) },
        None => missing(-1),
    })
}

/// glibc's `open64` with `_FORTIFY_SOURCE`.
///
/// # Safety
/// As `open(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    open_or(path, flags, || match next::__open64_2() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, flags) },
        None => missing(-1),
    })
}

/// glibc's `openat` with `_FORTIFY_SOURCE`.
///
/// # Safety
/// As `openat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    open_or(path, flags, || match next::__openat_2() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, flags) },
        None => missing(-1),
    })
}

/// glibc's `openat64` with `_FORTIFY_SOURCE`.
///
/// # Safety
/// As `openat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    open_or(path, flags, || match next::__openat64_2() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, flags) },
        None => missing(-1),
    })
}

/// Fill `buf` with the node's `stat`, or pass the call on.
fn stat_or<T>(path: *const c_char, buf: *mut T, pass: impl FnOnce() -> c_int) -> c_int {
    if program() && devnode::served(path) {
        return serve(-1, || {
            if buf.is_null() {
                return Err(Errno::EFAULT);
            }
            // SAFETY: `buf` is the caller's `struct stat` (or the
            // identically laid out `struct stat64`), writable by contract.
            unsafe { buf.cast::<libc::stat>().write(devnode::stat()) };
            Ok(0)
        });
    }
    pass()
}

/// # Safety
/// As `stat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    stat_or(path, buf, || match next::stat() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, buf) },
        None => missing(-1),
    })
}

/// # Safety
/// As `stat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int {
    stat_or(path, buf, || match next::stat64() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, buf) },
        None => missing(-1),
    })
}

/// # Safety
/// As `lstat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    stat_or(path, buf, || match next::lstat() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, buf) },
        None => missing(-1),
    })
}

/// # Safety
/// As `lstat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int {
    stat_or(path, buf, || match next::lstat64() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, buf) },
        None => missing(-1),
    })
}

/// # Safety
/// As `fstatat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    stat_or(path, buf, || match next::fstatat() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, buf, flags) },
        None => missing(-1),
    })
}

/// # Safety
/// As `fstatat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat64(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat64,
    flags: c_int,
) -> c_int {
    stat_or(path, buf, || match next::fstatat64() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, buf, flags) },
        None => missing(-1),
    })
}

/// # Safety
/// As `statx(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
) -> c_int {
    if program() && devnode::served(path) {
        return serve(-1, || {
            if buf.is_null() {
                return Err(Errno::EFAULT);
            }
            // SAFETY: `buf` is the caller's writable `struct statx`.
            unsafe { buf.write(devnode::statx()) };
            Ok(0)
        });
    }
    match next::statx() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, flags, mask, buf) },
        None => missing(-1),
    }
}

/// # Safety
/// As `access(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    if program() && devnode::served(path) {
        return serve(-1, || devnode::access(mode));
    }
    match next::access() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(path, mode) },
        None => missing(-1),
    }
}

/// # Safety
/// As `faccessat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
) -> c_int {
    if program() && devnode::served(path) {
        return serve(-1, || devnode::access(mode));
    }
    match next::faccessat() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(dirfd, path, mode, flags) },
        None => missing(-1),
    }
}
