//! `pthread_kill`: how VMMs stop a vCPU thread inside VCPU_RUN.

use std::ffi::c_int;

use super::{missing, program};
use crate::guard::serve;
use crate::{next, vcpu};

/// # Safety
/// As `pthread_kill(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_kill(thread: libc::pthread_t, sig: c_int) -> c_int {
    let r = match next::pthread_kill() {
        // SAFETY: the program's own call, passed on unchanged.
        Some(f) => unsafe { f(thread, sig) },
        None => missing(libc::ENOSYS),
    };
    // Signal 0 only checks that the thread exists.
    if r == 0 && sig != 0 && vcpu::any_running() && program() {
        serve((), || {
            vcpu::interrupt(thread);
            Ok(())
        });
    }
    r
}
