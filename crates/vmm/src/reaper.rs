//! The last close of a VM's KVM file, off the caller's path.
//!
//! KVM tears a VM down at the last close of its file, and on this
//! project's hosts that close waits for the SRCU grace periods the VM's
//! interrupt controller and ioeventfds started: up to 16 ms when they were
//! made less than about 20 ms before, 0.2 ms later (measured: a raw VM
//! with an irqchip and a vCPU, closed at once or after a pause). The raw
//! reference pays the same wait at its first memslot change instead.
//!
//! By the time a `Vm` drops, lendvm's own teardown is complete: every
//! binding is released, lent pages are zeroed and back with the host, the
//! vCPUs are gone. What remains is the kernel's bookkeeping, so a device
//! hands the VM file to one background thread, which closes it once no one
//! else holds it. At most [`MAX_PENDING`] files wait; beyond that a drop
//! closes in place (a caller creating VMs faster than the kernel frees
//! them is slowed down, not allowed to pile them up).
//! [`crate::Device::wait_for_teardown`] and dropping the device wait for
//! every pending close.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;

use crate::sync::lock;

/// VM files that may wait for their close at once.
pub(crate) const MAX_PENDING: usize = 16;

/// How long the thread waits for the other holders of a file (a `Vm`'s
/// fields drop right after it hands the file over) before closing its
/// share anyway.
const HOLDERS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    queue: VecDeque<Arc<VmFd>>,
    /// Files queued or being closed.
    pending: usize,
    thread: Option<JoinHandle<()>>,
    /// The device is going: the thread ends once the queue is empty.
    closing: bool,
}

/// One device's background closer.
#[derive(Default)]
pub(crate) struct Reaper {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Reaper {
    /// Close `fd` in the background once this is its last holder, or
    /// drop it here if too many closes are pending already.
    pub(crate) fn release(&self, fd: Arc<VmFd>) {
        let (state, wake) = &*self.shared;
        let mut s = lock(state);
        if s.pending >= MAX_PENDING || s.closing {
            return;
        }
        if s.thread.is_none() {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name("lendvm-reaper".into())
                .spawn(move || run(&shared))
            {
                Ok(t) => s.thread = Some(t),
                // No thread: the caller closes in place.
                Err(_) => return,
            }
        }
        s.pending += 1;
        s.queue.push_back(fd);
        wake.notify_all();
    }

    /// Wait until every file handed over is closed.
    pub(crate) fn wait_idle(&self) {
        let (state, wake) = &*self.shared;
        let mut s = lock(state);
        while s.pending > 0 {
            s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let (state, wake) = &*self.shared;
        let thread = {
            let mut s = lock(state);
            s.closing = true;
            wake.notify_all();
            s.thread.take()
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn run(shared: &(Mutex<State>, Condvar)) {
    let (state, wake) = shared;
    loop {
        let fd = {
            let mut s = lock(state);
            loop {
                if let Some(fd) = s.queue.pop_front() {
                    break fd;
                }
                if s.closing {
                    return;
                }
                s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        let since = Instant::now();
        while Arc::strong_count(&fd) > 1 && since.elapsed() < HOLDERS_TIMEOUT {
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(fd);
        let mut s = lock(state);
        s.pending -= 1;
        wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_fd() -> Option<Arc<VmFd>> {
        let kvm = kvm_ioctls::Kvm::new().ok()?;
        Some(Arc::new(kvm.create_vm().ok()?))
    }

    #[test]
    fn closes_once_the_other_holders_are_gone_and_bounds_the_backlog() {
        let Some(first) = vm_fd() else {
            assert!(
                std::env::var_os("LENDVM_REQUIRE_KVM").is_none(),
                "LENDVM_REQUIRE_KVM is set but /dev/kvm is unusable"
            );
            println!("SKIP: no /dev/kvm");
            return;
        };
        let reaper = Reaper::default();
        let held = first.clone();
        reaper.release(first);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(lock(&reaper.shared.0).pending, 1, "waits for the holder");
        drop(held);
        reaper.wait_idle();
        assert_eq!(lock(&reaper.shared.0).pending, 0);
        // Beyond MAX_PENDING, release leaves the file to its caller.
        let keep: Vec<Arc<VmFd>> = (0..MAX_PENDING + 2).filter_map(|_| vm_fd()).collect();
        for fd in &keep {
            reaper.release(fd.clone());
        }
        assert_eq!(lock(&reaper.shared.0).pending, MAX_PENDING);
        drop(keep);
        reaper.wait_idle();
    }
}
