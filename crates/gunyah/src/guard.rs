//! Who is calling: the program, or lendvm (and this library) itself.
//!
//! The library exports `open`, `close`, `ioctl`, `mmap`, ... so every call
//! the process makes to those names reaches it, lendvm's own included
//! (lendvm runs in the same process and calls them through the same
//! symbols). While lendvm code runs on a thread, a thread-local flag is
//! set, and every wrapper passes such calls straight to the next
//! definition: lendvm never re-enters the library and its own KVM_RUN,
//! mmap and close calls cost one flag test (after a cheaper test where
//! there is one: an ioctl's type byte, the candidate-descriptor bitmap).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs the library's own code (or lendvm's).
pub(crate) fn inside() -> bool {
    INSIDE.with(Cell::get)
}

/// A Linux errno, positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) i32);

impl Errno {
    pub(crate) const EBADF: Errno = Errno(libc::EBADF);
    pub(crate) const EFAULT: Errno = Errno(libc::EFAULT);
    pub(crate) const EINVAL: Errno = Errno(libc::EINVAL);
    pub(crate) const ENODEV: Errno = Errno(libc::ENODEV);
    pub(crate) const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub(crate) const EIO: Errno = Errno(libc::EIO);
    pub(crate) const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);

    /// The calling thread's current errno.
    pub(crate) fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// Store it as the calling thread's errno.
    pub(crate) fn set(self) {
        // SAFETY: __errno_location returns the calling thread's errno
        // variable, valid for the thread's lifetime.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Marks the thread as inside the library until dropped (nesting keeps
/// the outer state).
pub(crate) struct Guard {
    was: bool,
}

impl Guard {
    pub(crate) fn enter() -> Guard {
        Guard {
            was: INSIDE.with(|c| c.replace(true)),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(self.was));
    }
}

/// Run `f` as the library: with the guard set, a panic turned into EIO
/// (a bug must not unwind into C), and an error stored in errno with
/// `failed` returned instead, as libc functions report errors.
pub(crate) fn serve<T>(failed: T, f: impl FnOnce() -> Result<T, Errno>) -> T {
    let _guard = Guard::enter();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            e.set();
            failed
        }
        Err(_) => {
            Errno::EIO.set();
            failed
        }
    }
}

/// True after `fork` in the child: KVM objects belong to the parent's
/// address space, so the child passes everything through untouched.
static FORKED_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn in_child() {
    FORKED_CHILD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Register the fork handler (once, before the first object exists).
pub(crate) fn watch_fork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler with no preparation or parent part;
        // `in_child` only stores to an atomic, which is async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// True in a child process made by `fork` after objects existed.
pub(crate) fn forked_child() -> bool {
    FORKED_CHILD.load(std::sync::atomic::Ordering::Relaxed)
}
