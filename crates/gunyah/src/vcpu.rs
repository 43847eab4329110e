//! vCPU descriptors: the run page and VCPU_RUN.
//!
//! The descriptor is a one-page memfd. The program maps it (natively: no
//! interposition involved) and the library maps the same page, so both see
//! one `struct gunyah_vcpu_run` (SPEC §1.5). VCPU_RUN copies the page into
//! lendvm's vCPU (immediate_exit, the resume action of the last exit, MMIO
//! read data), runs it, and copies lendvm's page back (exit_reason and the
//! mmio / status / page_fault member). lendvm keeps its own record of the
//! pending exit, so nothing the program writes there but those inputs
//! matters (SPEC R-1).
//!
//! VMMs stop a running vCPU by signalling its thread (SPEC R-4: a pending
//! signal ends VCPU_RUN with EINTR). lendvm's run loop resumes the guest
//! after a signal that is not its own kick, so while a thread is inside
//! VCPU_RUN the library records it, and a `pthread_kill` to that thread
//! also kicks the vCPU ([`interrupt`]).

use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uapi::gunyah_vcpu_run;

use crate::backend;
use crate::compat::VCPU_MMAP_SIZE;
use crate::front::{GUNYAH_VCPU_MMAP_SIZE, GUNYAH_VCPU_RUN};
use crate::guard::Errno;

/// The library's own mapping of a vCPU's run page.
struct RunPage(NonNull<u8>);

// SAFETY: the mapping is process-wide memory; every access goes through
// volatile copies under the vCPU's lock, so sharing the address between
// threads is sound.
unsafe impl Send for RunPage {}
// SAFETY: as above.
unsafe impl Sync for RunPage {}

impl RunPage {
    fn map(fd: &OwnedFd) -> Result<RunPage, Errno> {
        // SAFETY: a new shared mapping of the page-sized memfd at an
        // address the kernel picks; it replaces nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                VCPU_MMAP_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        NonNull::new(p.cast()).map(RunPage).ok_or(Errno::EIO)
    }

    fn read(&self) -> gunyah_vcpu_run {
        // SAFETY: the page is mapped readable while `self` lives and holds
        // at least size_of::<gunyah_vcpu_run>() bytes; the program may
        // write it concurrently, hence the volatile read; every bit pattern
        // is a valid gunyah_vcpu_run (integers, byte arrays and a union of
        // them).
        unsafe { std::ptr::read_volatile(self.0.as_ptr().cast::<gunyah_vcpu_run>()) }
    }

    fn write(&self, run: &gunyah_vcpu_run) {
        // SAFETY: as in `read`; the page is mapped writable.
        unsafe { std::ptr::write_volatile(self.0.as_ptr().cast::<gunyah_vcpu_run>(), *run) };
    }
}

impl Drop for RunPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made, which nothing
        // else refers to once the vCPU object is gone.
        unsafe { libc::munmap(self.0.as_ptr().cast(), VCPU_MMAP_SIZE) };
    }
}

/// A vCPU object.
pub(crate) struct VcpuObj {
    /// One runner at a time (SPEC R-3): a second VCPU_RUN waits here.
    vcpu: Mutex<backend::Vcpu>,
    page: RunPage,
}

impl VcpuObj {
    /// The vCPU `vcpu`, whose descriptor will be `fd`.
    pub(crate) fn new(vcpu: backend::Vcpu, fd: &OwnedFd) -> Result<VcpuObj, Errno> {
        Ok(VcpuObj {
            vcpu: Mutex::new(vcpu),
            page: RunPage::map(fd)?,
        })
    }
}

/// A request on a vCPU descriptor.
pub(crate) fn ioctl(vcpu: &Arc<VcpuObj>, request: u32) -> Result<c_int, Errno> {
    match request {
        GUNYAH_VCPU_RUN => {
            let mut v = vcpu.vcpu.lock().unwrap_or_else(|p| p.into_inner());
            let mut run = vcpu.page.read();
            let _running = Running::enter(backend::kicker(&v));
            let result = backend::run(&mut v, &mut run);
            vcpu.page.write(&run);
            result.map(|()| 0)
        }
        GUNYAH_VCPU_MMAP_SIZE => Ok(VCPU_MMAP_SIZE as c_int),
        _ => Err(Errno::ENOTTY),
    }
}

/// Threads inside VCPU_RUN, with what interrupts their run.
static RUNNING: Mutex<Vec<(libc::pthread_t, backend::Kicker)>> = Mutex::new(Vec::new());
/// Number of entries in `RUNNING`, for the cheap "nobody runs" test.
static RUNNERS: AtomicUsize = AtomicUsize::new(0);

/// This thread is inside VCPU_RUN until dropped.
struct Running(libc::pthread_t);

impl Running {
    fn enter(kicker: backend::Kicker) -> Running {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut r = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        r.push((me, kicker));
        RUNNERS.store(r.len(), Ordering::SeqCst);
        Running(me)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut r = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(t, _)| *t != self.0);
        RUNNERS.store(r.len(), Ordering::SeqCst);
    }
}

/// True if some thread is inside VCPU_RUN.
#[inline]
pub(crate) fn any_running() -> bool {
    RUNNERS.load(Ordering::SeqCst) != 0
}

/// A signal was sent to `thread`: if it is inside VCPU_RUN, that run
/// returns EINTR (SPEC R-4).
pub(crate) fn interrupt(thread: libc::pthread_t) {
    let r = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    for (_, kicker) in r.iter().filter(|(t, _)| *t == thread) {
        backend::kick(kicker);
    }
}
