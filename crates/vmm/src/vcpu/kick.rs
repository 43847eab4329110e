//! Interrupting a vCPU from another thread: `immediate_exit` for a vCPU
//! about to enter the guest, a signal for one inside `KVM_RUN`.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use kvm_bindings::kvm_run;

use super::VcpuCore;

/// Interrupts a vCPU that is (or is about to be) inside `KVM_RUN`.
pub(crate) struct Kick {
    pub(crate) run: AtomicPtr<kvm_run>,
    /// `pthread_t` of the thread inside run(), or 0.
    pub(crate) thread: AtomicU64,
    /// Set by [`Kicker::kick`]: run() returns EINTR.
    pub(crate) requested: AtomicBool,
}

fn kick_signal() -> libc::c_int {
    static REGISTERED: OnceLock<libc::c_int> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
        let sig = vmm_sys_util::signal::SIGRTMIN();
        // Without SA_RESTART, so an interrupted KVM_RUN returns EINTR. If
        // registration failed, kicks still work through immediate_exit
        // for vCPUs not yet inside KVM_RUN.
        let _ = vmm_sys_util::signal::register_signal_handler(sig, on_kick);
        sig
    })
}

impl Kick {
    pub(crate) fn kick(&self) {
        let run = self.run.load(Ordering::Acquire);
        // SAFETY: `run` points at the vCPU's kvm_run mapping, which lives as
        // long as the VcpuCore owning this Kick; a volatile byte store to
        // immediate_exit is what KVM expects from other threads.
        unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
        let thread = self.thread.load(Ordering::Acquire);
        if thread != 0 {
            // SAFETY: `thread` is the pthread_t of a live thread: run()
            // clears it before it returns. The signal's handler does nothing.
            unsafe { libc::pthread_kill(thread as libc::pthread_t, kick_signal()) };
        }
    }
}

/// A handle that interrupts a vCPU's run from another thread: the run
/// returns EINTR ([`Error::Interrupted`](crate::Error::Interrupted)).
#[derive(Clone)]
pub struct Kicker {
    pub(crate) core: Arc<VcpuCore>,
}

impl Kicker {
    /// Make the vCPU's current (or next) run return EINTR.
    pub fn kick(&self) {
        self.core.kick.requested.store(true, Ordering::SeqCst);
        self.core.kick();
    }
}
