//! The C symbols the library exports, one per interposed libc function.
//!
//! # Variadic functions
//!
//! `open`, `open64`, `openat`, `openat64`, `ioctl`, `fcntl`, `fcntl64`
//! and `mremap` are C-variadic, and stable Rust cannot define variadic
//! functions. They are defined here with their optional argument as an
//! ordinary last parameter. That is sound on x86-64 System V, the only
//! target this library builds for: a variadic call passes its integer and
//! pointer arguments in the same registers (rdi, rsi, rdx, rcx, r8, r9) as
//! a non-variadic one and only adds a vector-register count in al, which a
//! non-variadic callee ignores. When the caller passed no optional
//! argument, the parameter holds whatever the register held; like glibc,
//! the wrappers use it only when the other arguments say it exists (the
//! mode of `open` with O_CREAT or O_TMPFILE, the argument of `ioctl` and
//! `fcntl` requests, the new address of `mremap` with MREMAP_FIXED) and
//! otherwise just pass it on.
//!
//! Every wrapper first makes the cheapest test that tells a call is none
//! of the library's business (a path, an ioctl type byte, the candidate
//! descriptor bitmap, "no mapping recorded") and then passes it to the
//! next definition unchanged: lendvm's own calls (a thread-local flag, see
//! `guard`) and calls in a forked child always go through.
//!
//! Unit tests of this crate are statically linked, so the symbols exist
//! only outside them: defining `close` there would replace glibc's.

mod fd;
mod fs;
mod ioctl;
mod mem;
mod signal;

use crate::guard::{self, Errno};

/// True if the call comes from the program (not lendvm, not a child).
#[inline]
fn program() -> bool {
    !guard::inside() && !guard::forked_child()
}

/// What a wrapper returns when the next definition cannot be found.
fn missing<T>(failed: T) -> T {
    Errno(libc::ENOSYS).set();
    failed
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!("liblendvm_gunyah relies on the x86-64 System V calling convention");
