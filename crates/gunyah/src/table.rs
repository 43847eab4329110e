//! The Gunyah objects of this process, found by the inode of the
//! descriptor that names them.
//!
//! Every object (device, VM, vCPU, guest memory) is a real kernel file: a
//! memfd of its own, so each has its own inode, works with `fstat`,
//! `statx`, `fcntl(F_GETFD)`, `dup` and `close` natively, and carries the
//! close-on-exec bit Gunyah gives it. A request on any descriptor is
//! resolved by `fstat` to (device, inode) and looked up here, so every
//! duplicate of a descriptor names the same object, including the
//! `guest_mem_fd` a program passes inside MAP_MEM (TV passes a dup).
//!
//! # Lifetimes (GUNYAH-USERSPACE §3.3)
//!
//! An object lives while any descriptor of this process names its inode,
//! counted exactly: when the program closes a descriptor of an object
//! (through `close`, `dup2`/`dup3` over it, or `close_range`), the library
//! lists `/proc/self/fd` and releases the object if no other descriptor
//! names it. So a VM outlives the device descriptor it came from and its
//! first descriptor while duplicates remain. Beyond descriptors, lendvm's
//! own references keep what Gunyah keeps: a vCPU holds its VM (SPEC
//! B-VM-9), a binding holds its file's memory (GM-LT-1), and a program's
//! mapping of a file holds the file's page ownership (the registered
//! view), whatever happens to the descriptors.
//!
//! Limits: descriptors the library does not see being made (received over
//! a socket, `pidfd_getfd`, the `dup` syscall without glibc) count when
//! they exist at the time of a scan but do not trigger one; a descriptor
//! sent to another process keeps nothing alive here (and is a plain memfd
//! there); an object whose last descriptor goes without a scan lives until
//! the next scan that covers it or process exit.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::guard::Errno;
use crate::mem::MemObj;
use crate::vcpu::VcpuObj;
use crate::vm::VmObj;

/// (st_dev, st_ino) of an object's memfd.
pub(crate) type Key = (u64, u64);

/// A Gunyah object.
#[derive(Clone)]
pub(crate) enum Object {
    /// An open of `/dev/gunyah`: creates VMs and guest memory.
    Device,
    /// A VM.
    Vm(Arc<VmObj>),
    /// A vCPU.
    Vcpu(Arc<VcpuObj>),
    /// A guest memory file.
    Mem(Arc<MemObj>),
}

impl Object {
    /// lendvm's own descriptor for the object's inode, which is not a
    /// program reference (guest memory only).
    fn internal_fd(&self) -> Option<RawFd> {
        match self {
            Object::Mem(m) => Some(m.internal_fd()),
            _ => None,
        }
    }
}

static TABLE: Mutex<BTreeMap<Key, Object>> = Mutex::new(BTreeMap::new());
/// Number of objects, for cheap "nothing to do" checks.
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn table() -> MutexGuard<'static, BTreeMap<Key, Object>> {
    // Every change below is a single insert or remove: a panic elsewhere
    // cannot leave the map half-updated.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// (device, inode) of an open descriptor.
pub(crate) fn key_of(fd: RawFd) -> Option<Key> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`, which we own.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// The object `fd` names, if it names one.
pub(crate) fn lookup(fd: RawFd) -> Option<Object> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let key = key_of(fd)?;
    table().get(&key).cloned()
}

/// The key of `fd` if it names an object.
pub(crate) fn object_key(fd: RawFd) -> Option<Key> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let key = key_of(fd)?;
    table().contains_key(&key).then_some(key)
}

/// Record `obj` as what `fd`'s inode names.
pub(crate) fn register(fd: RawFd, obj: Object) -> Result<(), Errno> {
    let key = key_of(fd).ok_or(Errno::EBADF)?;
    crate::guard::watch_fork();
    if table().insert(key, obj).is_none() {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
    crate::fdset::add(fd);
    Ok(())
}

/// Release every object of `keys` that no descriptor of this process
/// names any more (one scan of `/proc/self/fd` for all of them). Returns
/// true if any was released.
pub(crate) fn release_unreferenced(keys: &[Key]) -> bool {
    if keys.is_empty() {
        return false;
    }
    let internal: Vec<RawFd> = table().values().filter_map(Object::internal_fd).collect();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // Without the list nothing is known: keep everything.
        return false;
    };
    let mut live = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if internal.contains(&fd) {
            continue;
        }
        if let Some(k) = key_of(fd)
            && keys.contains(&k)
        {
            live.push(k);
        }
    }
    let mut released = Vec::new();
    {
        let mut t = table();
        for k in keys {
            if !live.contains(k)
                && let Some(obj) = t.remove(k)
            {
                COUNT.fetch_sub(1, Ordering::Relaxed);
                released.push(obj);
            }
        }
    }
    let any = !released.is_empty();
    // Dropped outside the table lock: a VM's teardown takes lendvm's locks
    // and closes KVM descriptors.
    drop(released);
    any
}
