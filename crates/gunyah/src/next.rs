//! The definitions the library's wrappers stand in front of (glibc's),
//! found once each with `dlsym(RTLD_NEXT)` and cached.
//!
//! Pass-through calls go to them unchanged: same arguments, same return
//! value, same errno. The C-variadic ones (`open`, `openat`, `ioctl`,
//! `fcntl`, `mremap`) are called as variadic functions, with the optional
//! argument always passed: the callee reads it only when its other
//! arguments say it exists, as the caller's own call would have had it.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{off_t, size_t};

/// Resolve `name` (NUL-terminated) once into `slot`.
fn resolve(slot: &AtomicUsize, name: &[u8]) -> Option<usize> {
    let p = slot.load(Ordering::Relaxed);
    if p != 0 {
        return Some(p);
    }
    // SAFETY: `name` is a NUL-terminated symbol name (the macro below
    // appends the NUL); dlsym only reads it.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    if p == 0 {
        return None;
    }
    slot.store(p, Ordering::Relaxed);
    Some(p)
}

macro_rules! next {
    ($($name:ident: $ty:ty;)*) => {$(
        /// The next definition of the C function of this name.
        pub(crate) fn $name() -> Option<$ty> {
            static SLOT: AtomicUsize = AtomicUsize::new(0);
            let p = resolve(&SLOT, concat!(stringify!($name), "\0").as_bytes())?;
            // SAFETY: `p` is the address of the C function named
            // `$name`, whose C prototype `$ty` spells out.
            Some(unsafe { std::mem::transmute::<usize, $ty>(p) })
        }
    )*};
}

next! {
    open: unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
    open64: unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
    openat: unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
    openat64: unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
    __open_2: unsafe extern "C" fn(*const c_char, c_int) -> c_int;
    __open64_2: unsafe extern "C" fn(*const c_char, c_int) -> c_int;
    __openat_2: unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
    __openat64_2: unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
    stat: unsafe extern "C" fn(*const c_char, *mut libc::stat) -> c_int;
    stat64: unsafe extern "C" fn(*const c_char, *mut libc::stat64) -> c_int;
    lstat: unsafe extern "C" fn(*const c_char, *mut libc::stat) -> c_int;
    lstat64: unsafe extern "C" fn(*const c_char, *mut libc::stat64) -> c_int;
    fstatat: unsafe extern "C" fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
    fstatat64: unsafe extern "C" fn(c_int, *const c_char, *mut libc::stat64, c_int) -> c_int;
    statx: unsafe extern "C" fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
    access: unsafe extern "C" fn(*const c_char, c_int) -> c_int;
    faccessat: unsafe extern "C" fn(c_int, *const c_char, c_int, c_int) -> c_int;
    ioctl: unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int;
    fcntl: unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
    fcntl64: unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
    close: unsafe extern "C" fn(c_int) -> c_int;
    dup: unsafe extern "C" fn(c_int) -> c_int;
    dup2: unsafe extern "C" fn(c_int, c_int) -> c_int;
    dup3: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
    close_range: unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
    mmap: unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void;
    mmap64: unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void;
    munmap: unsafe extern "C" fn(*mut c_void, size_t) -> c_int;
    mremap: unsafe extern "C" fn(*mut c_void, size_t, size_t, c_int, ...) -> *mut c_void;
    mprotect: unsafe extern "C" fn(*mut c_void, size_t, c_int) -> c_int;
    fallocate: unsafe extern "C" fn(c_int, c_int, off_t, off_t) -> c_int;
    fallocate64: unsafe extern "C" fn(c_int, c_int, off_t, off_t) -> c_int;
    ftruncate: unsafe extern "C" fn(c_int, off_t) -> c_int;
    ftruncate64: unsafe extern "C" fn(c_int, off_t) -> c_int;
    pthread_kill: unsafe extern "C" fn(libc::pthread_t, c_int) -> c_int;
}
