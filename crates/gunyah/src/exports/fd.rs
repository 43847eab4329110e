//! `close`, `dup*`, `close_range`, `fcntl`: tracking which descriptors
//! name Gunyah objects, and releasing objects nobody names any more.

use std::ffi::{c_int, c_uint};

use super::{missing, program};
use crate::guard::serve;
use crate::{descriptors, fdset, next};

/// # Safety
/// As `close(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if fdset::may_be_ours(fd) && program() {
        return serve(-1, || descriptors::close(fd));
    }
    match next::close() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd) },
        None => missing(-1),
    }
}

/// # Safety
/// As `dup(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let r = match next::dup() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd) },
        None => missing(-1),
    };
    if r >= 0 && fdset::may_be_ours(fd) {
        fdset::add(r);
    }
    r
}

/// # Safety
/// As `dup2(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if (fdset::may_be_ours(old) || fdset::may_be_ours(new)) && program() {
        return serve(-1, || descriptors::dup_over(old, new, None));
    }
    match next::dup2() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(old, new) },
        None => missing(-1),
    }
}

/// # Safety
/// As `dup3(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if (fdset::may_be_ours(old) || fdset::may_be_ours(new)) && program() {
        return serve(-1, || descriptors::dup_over(old, new, Some(flags)));
    }
    match next::dup3() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(old, new, flags) },
        None => missing(-1),
    }
}

/// # Safety
/// As `close_range(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let closes = flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0;
    let candidates = || fdset::high_candidates() || !fdset::in_range(first, last).is_empty();
    if closes && program() && candidates() {
        return serve(-1, || descriptors::close_range(first, last, flags));
    }
    match next::close_range() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(first, last, flags) },
        None => missing(-1),
    }
}

/// `fcntl`/`fcntl64`: a duplicate of a candidate is a candidate.
fn fcntl_with(
    next: Option<unsafe extern "C" fn(c_int, c_int, ...) -> c_int>,
    fd: c_int,
    cmd: c_int,
    arg: usize,
) -> c_int {
    let r = match next {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(fd, cmd, arg) },
        None => missing(-1),
    };
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && fdset::may_be_ours(fd) {
        fdset::add(r);
    }
    r
}

/// # Safety
/// As `fcntl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    fcntl_with(next::fcntl(), fd, cmd, arg)
}

/// # Safety
/// As `fcntl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    fcntl_with(next::fcntl64(), fd, cmd, arg)
}
