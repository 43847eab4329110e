//! Descriptor lifetimes: what `close`, `dup2`/`dup3` over a descriptor and
//! `close_range` mean for the objects they name (see `table` for the
//! lifetime rules and their limits).

use std::ffi::{c_int, c_uint};
use std::os::fd::RawFd;

use crate::guard::Errno;
use crate::table::{self, Key};
use crate::{fdset, mappings, next};

/// Release what the closed descriptors' objects no longer need, and let
/// the program's mappings see memory a released VM gave back.
fn after_close(keys: &[Key]) {
    if table::release_unreferenced(keys) {
        mappings::refresh();
    }
}

/// `close(fd)` of a candidate descriptor.
pub(crate) fn close(fd: RawFd) -> Result<c_int, Errno> {
    let close = next::close().ok_or(Errno(libc::ENOSYS))?;
    let key = table::object_key(fd);
    // SAFETY: the program's own close call, passed on unchanged.
    let r = unsafe { close(fd) };
    let err = (r != 0).then(Errno::last);
    // Linux releases the number even when close reports EINTR or EIO.
    if err != Some(Errno::EBADF) {
        fdset::remove(fd);
        if let Some(k) = key {
            after_close(&[k]);
        }
    }
    err.map_or(Ok(r), Err)
}

/// `dup2(old, new)` (`flags` None) or `dup3(old, new, flags)` where either
/// is a candidate: `new` is closed first if open.
pub(crate) fn dup_over(old: RawFd, new: RawFd, flags: Option<c_int>) -> Result<c_int, Errno> {
    let replaced = if old != new {
        table::object_key(new)
    } else {
        None
    };
    let r = match flags {
        None => {
            let dup2 = next::dup2().ok_or(Errno(libc::ENOSYS))?;
            // SAFETY: the program's own dup2 call, passed on unchanged.
            unsafe { dup2(old, new) }
        }
        Some(flags) => {
            let dup3 = next::dup3().ok_or(Errno(libc::ENOSYS))?;
            // SAFETY: the program's own dup3 call, passed on unchanged.
            unsafe { dup3(old, new, flags) }
        }
    };
    if r < 0 {
        return Err(Errno::last());
    }
    if fdset::may_be_ours(old) {
        fdset::add(new);
    } else {
        fdset::remove(new);
    }
    if let Some(k) = replaced {
        after_close(&[k]);
    }
    Ok(r)
}

/// `close_range(first, last, flags)` without CLOSE_RANGE_CLOEXEC.
pub(crate) fn close_range(first: c_uint, last: c_uint, flags: c_int) -> Result<c_int, Errno> {
    let close_range = next::close_range().ok_or(Errno(libc::ENOSYS))?;
    let mut fds = fdset::in_range(first, last);
    if fdset::high_candidates() {
        fds.extend(open_fds().into_iter().filter(|&fd| {
            let fd = fd as u32;
            fd >= first && fd <= last && fdset::may_be_ours(fd as i32) && fd >= 1 << 16
        }));
    }
    let keys: Vec<Key> = fds.iter().filter_map(|&fd| table::object_key(fd)).collect();
    // SAFETY: the program's own close_range call, passed on unchanged.
    if unsafe { close_range(first, last, flags) } != 0 {
        return Err(Errno::last());
    }
    for fd in fds {
        fdset::remove(fd);
    }
    after_close(&keys);
    Ok(0)
}

/// Every open descriptor number.
fn open_fds() -> Vec<RawFd> {
    std::fs::read_dir("/proc/self/fd").map_or_else(
        |_| Vec::new(),
        |d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        },
    )
}
