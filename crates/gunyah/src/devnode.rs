//! What `stat`, `statx` and `access` say about `/dev/gunyah`: a character
//! device readable and writable by everyone, as a Gunyah host's device
//! node would be, as long as lendvm can serve it (KVM is usable). Without
//! KVM the real file system answers (normally ENOENT).

use std::ffi::{CStr, c_char, c_int};

use crate::backend;
use crate::device::PATH;

/// Misc devices' major number; Gunyah's misc device gets a dynamic minor,
/// so this one is arbitrary.
const MAJOR: u32 = 10;
const MINOR: u32 = 0xd3;
/// An inode number for the node (a fixed, otherwise meaningless value).
const INODE: u64 = 0x6779_6e79;

/// True if `path` is the device's path (NUL-terminated, possibly null).
pub(crate) fn is_device(path: *const c_char) -> bool {
    if path.is_null() {
        return false;
    }
    // SAFETY: a non-null path argument of a libc call is a NUL-terminated
    // string; comparing stops at the first difference or NUL.
    let p = unsafe { CStr::from_ptr(path) };
    p.to_bytes() == PATH
}

/// True if `path` names the device and lendvm can serve it (opening
/// lendvm's device the first time, as the library).
pub(crate) fn served(path: *const c_char) -> bool {
    is_device(path) && {
        let _guard = crate::guard::Guard::enter();
        backend::device().is_ok()
    }
}

/// The device number of `/dev` (where the node would live), else 0.
fn dev_of_dev() -> u64 {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: stat reads the literal path and writes only into `st`.
    if unsafe { libc::stat(c"/dev".as_ptr(), &mut st) } == 0 {
        st.st_dev
    } else {
        0
    }
}

/// The node as `struct stat`.
pub(crate) fn stat() -> libc::stat {
    // SAFETY: an all-zero `stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = dev_of_dev();
    st.st_ino = INODE;
    st.st_mode = libc::S_IFCHR | 0o666;
    st.st_nlink = 1;
    st.st_rdev = libc::makedev(MAJOR, MINOR);
    st.st_blksize = 4096;
    st
}

/// The node as `struct statx`.
pub(crate) fn statx() -> libc::statx {
    let st = stat();
    // SAFETY: an all-zero `statx` is a valid value.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    sx.stx_mask = libc::STATX_BASIC_STATS;
    sx.stx_blksize = 4096;
    sx.stx_nlink = 1;
    sx.stx_mode = st.st_mode as u16;
    sx.stx_ino = INODE;
    sx.stx_rdev_major = MAJOR;
    sx.stx_rdev_minor = MINOR;
    sx.stx_dev_major = libc::major(st.st_dev);
    sx.stx_dev_minor = libc::minor(st.st_dev);
    sx
}

/// `access(path, mode)` for the node: readable and writable, not
/// executable.
pub(crate) fn access(mode: c_int) -> Result<c_int, crate::guard::Errno> {
    if mode & libc::X_OK != 0 {
        return Err(crate::guard::Errno(libc::EACCES));
    }
    Ok(0)
}
