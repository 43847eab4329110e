//! Descriptor numbers in raw arguments, resolved to lendvm objects.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm::GuestMem;

use crate::{Error, Result};

/// How a raw argument's descriptor number names a guest memory file. lendvm
/// resolves its own descriptors with [`FdTable`]; the preload library
/// resolves a program's descriptors by inode.
pub trait Descriptors {
    /// The file `fd` names (SPEC B-ADD-2/3): EBADF if no descriptor has
    /// that number, EINVAL if it is not a guest memory file.
    fn guest_mem(&self, fd: u32) -> Result<Arc<GuestMem>>;
}

/// lendvm's own guest memory files by descriptor number: the
/// process-wide table the raw API needs (descriptor numbers are
/// process-wide), and only it.
#[derive(Default)]
pub struct FdTable {
    files: Mutex<BTreeMap<RawFd, Arc<GuestMem>>>,
    /// Numbers the caller closed whose file lives on in its bindings (the
    /// descriptor stays open inside lendvm): (device, inode) of that file,
    /// so the number reads as closed (EBADF) until it names another file.
    closed: Mutex<BTreeMap<RawFd, (u64, u64)>>,
}

impl FdTable {
    /// Keep `mem` under its descriptor number, which is returned.
    pub fn insert(&self, mem: GuestMem) -> RawFd {
        let fd = mem.as_raw_fd();
        lock(&self.closed).remove(&fd);
        lock(&self.files).insert(fd, Arc::new(mem));
        fd
    }

    /// Drop the table's handle of `fd` (the caller "closes" it): bindings
    /// keep the file alive (SPEC GM-LT-1), and the number is EBADF for
    /// MAP_MEM from now on.
    pub fn close(&self, fd: RawFd) -> Option<Arc<GuestMem>> {
        let mem = lock(&self.files).remove(&fd)?;
        if let Some(id) = identity(fd) {
            lock(&self.closed).insert(fd, id);
        }
        Some(mem)
    }

    /// The file under `fd`, if the table has it.
    pub fn get(&self, fd: RawFd) -> Option<Arc<GuestMem>> {
        lock(&self.files).get(&fd).cloned()
    }
}

impl Descriptors for FdTable {
    fn guest_mem(&self, fd: u32) -> Result<Arc<GuestMem>> {
        let Ok(fd) = RawFd::try_from(fd) else {
            return Err(Error::BadFd(fd as i32));
        };
        if let Some(m) = self.get(fd) {
            return Ok(m);
        }
        let closed = lock(&self.closed).get(&fd).copied();
        if !fd_is_open(fd) || (closed.is_some() && closed == identity(fd)) {
            return Err(Error::BadFd(fd));
        }
        Err(Error::WrongFdKind {
            fd,
            wanted: "a lendvm guest memory file",
        })
    }
}

/// True if `fd` is an open descriptor of this process.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// (device, inode) of an open descriptor.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer we own, or fails.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
