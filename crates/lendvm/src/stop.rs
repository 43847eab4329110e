//! A graceful stop on SIGINT, SIGTERM and SIGHUP.
//!
//! The three signals are blocked before any other thread exists, so every
//! thread inherits the mask and none is ever interrupted by them; one
//! watcher thread takes them with `sigwaitinfo`. No signal handler runs,
//! so nothing that is not async-signal-safe can happen in signal context.
//! On the first signal the watcher records it and kicks every vCPU it
//! watches (`vmm::Kicker`: the run returns `Error::Interrupted`); the run
//! then tears the VM down and reports. A second signal ends the process at
//! once, for a teardown that hangs.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// The signals that stop a run.
pub const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The name of a stop signal.
pub fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "a signal",
    }
}

/// Whether a stop was asked for, and the vCPUs to kick when it is.
#[derive(Default)]
pub struct Stop {
    /// The first stop signal, or 0.
    signal: AtomicI32,
    /// Kicked on the first signal.
    watched: Mutex<Vec<vmm::Kicker>>,
}

impl Stop {
    /// A stop nobody but [`Stop::request`] triggers (tests, and runs where
    /// the signals could not be taken over).
    pub fn new() -> Arc<Stop> {
        Arc::default()
    }

    /// Take over SIGINT, SIGTERM and SIGHUP for this process. Call it
    /// before any thread starts: threads started earlier keep the default
    /// action (the process dies without a report).
    pub fn install() -> std::io::Result<Arc<Stop>> {
        let stop = Stop::new();
        let set = signal_set();
        // SAFETY: `set` is an initialised sigset_t; the old mask is not
        // wanted (null).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let watcher = stop.clone();
        std::thread::Builder::new()
            .name("lendvm-signals".into())
            .spawn(move || watcher.watch_signals(set))?;
        Ok(stop)
    }

    fn watch_signals(&self, set: libc::sigset_t) {
        loop {
            // SAFETY: `set` is initialised; the siginfo is not wanted.
            let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
            if sig < 0 {
                // EINTR: another signal's handler ran (the vCPU kick).
                continue;
            }
            if !self.request(sig) {
                eprintln!(
                    "lendvm: second {}: stopping at once, without a report",
                    name(sig)
                );
                // SAFETY: _exit ends the process without running anything
                // else; the kernel closes the VM's descriptors.
                unsafe { libc::_exit(128 + sig) };
            }
        }
    }

    /// Ask for a stop by `signal`: kick every watched vCPU. Returns false
    /// if a stop had already been asked for.
    pub fn request(&self, signal: libc::c_int) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let first = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            watched.iter().for_each(vmm::Kicker::kick);
        }
        first
    }

    /// Kick `kicker`'s vCPU on a stop (at once if one was asked for
    /// already: its next run returns `Error::Interrupted`).
    pub fn watch(&self, kicker: vmm::Kicker) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if self.signal().is_some() {
            kicker.kick();
        }
        watched.push(kicker);
    }

    /// Forget the watched vCPUs (their VM is going away).
    pub fn unwatch_all(&self) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The signal that asked for the stop, if one did.
    pub fn signal(&self) -> Option<libc::c_int> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_wins_and_later_ones_are_refused() {
        let stop = Stop::new();
        assert_eq!(stop.signal(), None);
        assert!(stop.request(libc::SIGTERM));
        assert!(!stop.request(libc::SIGINT));
        assert_eq!(stop.signal(), Some(libc::SIGTERM));
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
    }
}
