//! The vCPU run protocol (SPEC §2.9) on KVM.
//!
//! [`Vcpu::run`] enters the guest and returns one of the Gunyah exits:
//! [`Exit::Mmio`], [`Exit::PageFault`] or [`Exit::Status`]. Everything
//! else is handled inside: first touches of lend bindings (demand paging),
//! built-in port devices, guest accesses KVM hands to userspace although
//! memory is bound there (completed against the memory, `memory/guest.rs`).
//!
//! `run()` fails only for the caller's own reasons (not started, removed,
//! interrupted, a bad resume action) or a host failure; whatever the guest
//! does, or the host does concurrently (bind, unbind, reclaim, punch),
//! becomes an exit.
//!
//! How the Gunyah resume actions map onto KVM (`resume.rs`):
//! * HANDLED: an MMIO read gets the caller's data; a write is done.
//! * RETRY: the access is resolved again; if memory is now bound it is
//!   completed against it, else the same exit is reported again.
//! * FAULT (DESIGN D7): the guest receives a page fault (#PF, vector 14)
//!   with CR2 = the guest physical address. For reads the exception frame
//!   points at the faulting instruction; a write has already retired on
//!   KVM, so the frame points after it. A guest without a handler ends
//!   CRASHED.

mod boot_state;
mod decode;
pub(crate) mod exit;
mod kick;
mod resume;

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{kvm_regs, kvm_run};
use kvm_ioctls::{VcpuExit, VcpuFd};

pub use exit::{Crash, Exit, ExitInfo, ResumeAction, Status, exit_kind};
pub use kick::Kicker;

use decode::{Event, decode};
use kick::Kick;

use crate::error::{Error, Result};
use crate::memory::wipe_regs;
use crate::memory::{Completed, Fragment, keep_run_private};
use crate::ports::PortOutcome;
use crate::sync::lock;
use crate::vm::{Counters, Lifecycle, VmInner};

/// What the last exit left behind (the kernel-side copy of SPEC R-1).
#[derive(Debug)]
enum Pending {
    None,
    /// KVM waits for the data of this read; the exit reported was MMIO
    /// (`fault: None`) or a page fault with this attempt.
    Read {
        frag: Fragment,
        fault: Option<i32>,
    },
    /// The instruction retired in KVM; these stores remain. `at` is the
    /// one the exit reported.
    Writes {
        frags: Vec<Fragment>,
        at: usize,
        fault: Option<i32>,
    },
    /// An instruction fetch from memory the guest cannot have (page fault
    /// with this attempt); nothing moved, RETRY re-executes it.
    Fetch {
        gpa: u64,
        attempt: i32,
    },
    /// A STATUS exit was returned: the vCPU is system-down.
    Down(Status),
}

struct CoreState {
    fd: VcpuFd,
    pending: Pending,
    /// The generation whose boot state was loaded into the KVM vCPU.
    started: Option<u64>,
    /// CPUID was set (KVM refuses to change it once the vCPU has run).
    cpuid_set: bool,
}

/// A KVM vCPU, shared by the VM's function table and the vCPU handle.
pub(crate) struct VcpuCore {
    id: u32,
    state: Mutex<CoreState>,
    active: AtomicBool,
    generation: AtomicU64,
    kick: Kick,
}

impl VcpuCore {
    pub(crate) fn new(id: u32, mut fd: VcpuFd, mmap_size: usize) -> VcpuCore {
        keep_run_private(&mut fd, mmap_size);
        let run: *mut kvm_run = fd.get_kvm_run();
        VcpuCore {
            id,
            state: Mutex::new(CoreState {
                fd,
                pending: Pending::None,
                started: None,
                cpuid_set: false,
            }),
            active: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            kick: Kick {
                run: AtomicPtr::new(run),
                thread: AtomicU64::new(0),
                requested: AtomicBool::new(false),
            },
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.kick.kick();
    }

    pub(crate) fn kick(&self) {
        self.kick.kick();
    }

    fn lock(&self) -> MutexGuard<'_, CoreState> {
        lock(&self.state)
    }
}

/// A vCPU of a VM (SPEC F-3). Holds the VM alive (SPEC B-VM-9).
pub struct Vcpu {
    vm: Arc<VmInner>,
    core: Arc<VcpuCore>,
    generation: u64,
    /// The resume action for the last exit (SPEC ).
    resume: ResumeAction,
    /// Bytes an MMIO read returns (SPEC R-8 HANDLED).
    mmio_data: [u8; 8],
    /// SPEC R-4: the next run returns EINTR without entering the guest.
    immediate_exit: bool,
    /// The last exit `run` returned.
    last: Option<Exit>,
}

impl std::fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcpu").field("id", &self.core.id).finish()
    }
}

impl Vcpu {
    pub(crate) fn attach(vm: Arc<VmInner>, core: Arc<VcpuCore>) -> Vcpu {
        let generation = core.generation.fetch_add(1, Ordering::SeqCst) + 1;
        core.active.store(true, Ordering::SeqCst);
        core.lock().pending = Pending::None;
        Vcpu {
            vm,
            core,
            generation,
            resume: ResumeAction::Handled,
            mmio_data: [0; 8],
            immediate_exit: false,
            last: None,
        }
    }

    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// Set the resume action for the exit just returned (default: HANDLED
    /// after an MMIO exit, FAULT after a page fault, SPEC R-5).
    pub fn set_resume(&mut self, action: ResumeAction) {
        self.resume = action;
    }

    /// The resume action the next run applies.
    pub fn resume_action(&self) -> ResumeAction {
        self.resume
    }

    /// Supply the bytes an MMIO read returns (up to 8).
    pub fn set_mmio_data(&mut self, data: &[u8]) {
        let n = data.len().min(8);
        self.mmio_data[..n].copy_from_slice(&data[..n]);
    }

    /// SPEC R-4: while set, every run returns EINTR before entering the
    /// guest (the run page's `immediate_exit`).
    pub fn set_immediate_exit(&mut self, on: bool) {
        self.immediate_exit = on;
    }

    /// A handle to interrupt this vCPU's run from another thread.
    pub fn kicker(&self) -> Kicker {
        Kicker {
            core: self.core.clone(),
        }
    }

    /// The vCPU's general-purpose registers (for debugging and tests).
    pub fn regs(&self) -> Result<kvm_regs> {
        self.core
            .lock()
            .fd
            .get_regs()
            .map_err(|e| Error::kvm("KVM_GET_REGS", e))
    }

    /// The vCPU's special registers (for debugging and tests).
    pub fn sregs(&self) -> Result<kvm_bindings::kvm_sregs> {
        self.core
            .lock()
            .fd
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS", e))
    }

    /// The last exit [`Vcpu::run`] returned (the kernel-side copy of the
    /// exit state, SPEC R-1).
    pub fn last_exit(&self) -> Option<Exit> {
        self.last
    }

    /// Run until the next exit the caller must see (SPEC R-1..R-11).
    pub fn run(&mut self) -> Result<Exit> {
        let exit = self.run_once()?;
        self.last = Some(exit);
        Ok(exit)
    }

    fn run_once(&mut self) -> Result<Exit> {
        let core = self.core.clone();
        // SPEC R-3: one runner at a time.
        let mut st = core.lock();
        if !core.is_active() || core.generation.load(Ordering::SeqCst) != self.generation {
            return Err(Error::VcpuRemoved { id: core.id });
        }
        match self.vm.lifecycle() {
            Lifecycle::NotStarted => {
                return Err(Error::NotStarted);
            }
            Lifecycle::LoadFailed(_) => return Ok(self.stop(&mut st, Status::LoadFailed)),
            Lifecycle::Running => {}
        }
        // SPEC R-9: once system-down, report again and do nothing else.
        if let Pending::Down(status) = st.pending {
            return Ok(Exit::Status(status));
        }
        if let Some(status) = self.vm.stopped() {
            return Ok(self.stop(&mut st, status));
        }
        // SPEC R-4.
        if self.immediate_exit {
            return Err(Error::Interrupted);
        }
        if st.started != Some(self.generation) {
            self.load_boot_state(&mut st)?;
            st.started = Some(self.generation);
        }
        let next = match self.resume_pending(&mut st)? {
            resume::Resumed::Exit(exit) => return Ok(exit),
            resume::Resumed::Continue(next) => next,
        };
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        core.kick.thread.store(me, Ordering::Release);
        let result = self.run_loop(&mut st, next);
        core.kick.thread.store(0, Ordering::Release);
        result
    }

    /// Report a STATUS exit and become system-down.
    fn stop(&mut self, st: &mut CoreState, status: Status) -> Exit {
        st.pending = Pending::Down(status);
        Counters::bump(&self.vm.counters.status_exits);
        Exit::Status(status)
    }

    fn crash(&mut self, st: &mut CoreState, crash: Crash) -> Exit {
        let status = Status::Crashed(crash);
        self.vm.set_down(status);
        let status = self.vm.stopped().unwrap_or(status);
        self.stop(st, status)
    }

    // ----- the run loop ----------------------------------------------------------

    /// Enter the guest once and say what came back. Port I/O is answered
    /// here, while KVM's buffer is borrowed.
    fn enter_guest(&mut self, st: &mut CoreState) -> Event {
        if self.core.kick.requested.load(Ordering::SeqCst) {
            return Event::Interrupted;
        }
        let r = st.fd.run();
        Counters::bump(&self.vm.counters.kvm_exits);
        match r {
            Ok(VcpuExit::IoOut(port, data)) => {
                match lock(&self.vm.ports).write(self.core.id, port, data) {
                    PortOutcome::Handled => Event::Port(true),
                    PortOutcome::Unknown => Event::Port(false),
                    PortOutcome::Stop(s) => Event::Stop(s),
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                Event::Port(lock(&self.vm.ports).read(port, data) == PortOutcome::Handled)
            }
            other => decode(other),
        }
    }

    fn run_loop(&mut self, st: &mut CoreState, mut next: Option<Event>) -> Result<Exit> {
        // RIP of the last instruction fetch retried after an emulation failure.
        let mut fetch_retry: Option<u64> = None;
        loop {
            let event = match next.take() {
                Some(e) => e,
                None => self.enter_guest(st),
            };
            if !matches!(event, Event::InternalError) {
                fetch_retry = None;
            }
            let exit = match event {
                Event::Port(handled) => {
                    let c = &self.vm.counters;
                    Counters::bump(if handled {
                        &c.port_io
                    } else {
                        &c.unknown_port_io
                    });
                    None
                }
                Event::Read(frag) => self.on_read(st, frag, &mut next)?,
                Event::Write(frag) => self.on_write(st, frag, &mut next)?,
                Event::MemoryFault(gpa) => Some(self.fault_exit(
                    st,
                    Pending::Fetch {
                        gpa,
                        attempt: -libc::EPERM,
                    },
                    gpa,
                    -libc::EPERM,
                    false,
                )),
                Event::InternalError => self.on_emulation_failure(st, &mut fetch_retry)?,
                Event::Stop(status) => {
                    self.vm.set_down(status);
                    let status = self.vm.stopped().unwrap_or(status);
                    Some(self.stop(st, status))
                }
                Event::Interrupted => {
                    st.fd.set_kvm_immediate_exit(0);
                    if let Some(status) = self.vm.stopped() {
                        return Ok(self.stop(st, status));
                    }
                    if !self.core.is_active() {
                        return Err(Error::VcpuRemoved { id: self.core.id });
                    }
                    if self.core.kick.requested.swap(false, Ordering::SeqCst) {
                        return Err(Error::Interrupted);
                    }
                    None
                }
            };
            if let Some(exit) = exit {
                return Ok(exit);
            }
        }
    }

    // ----- guest accesses --------------------------------------------------------

    /// A guest load KVM could not serve: complete it against memory, or
    /// report the exit it deserves (pending until the caller resumes).
    fn on_read(
        &mut self,
        st: &mut CoreState,
        frag: Fragment,
        next: &mut Option<Event>,
    ) -> Result<Option<Exit>> {
        let mut buf = [0u8; 8];
        let done = self
            .vm
            .memory
            .lock()
            .guest_read(frag.gpa, &mut buf[..frag.len])?;
        if done == Completed::Reexecute {
            // The memory is installed now: back to the instruction, which
            // the guest runs itself.
            self.rewind_instruction(st)?;
            return Ok(None);
        }
        if done == Completed::Done {
            set_kvm_mmio_data(&mut st.fd, &buf[..frag.len]);
            crate::memory::wipe(&mut buf);
            *next = self.finish_io(st);
            return Ok(None);
        }
        Ok(Some(self.unresolved(st, frag, done)))
    }

    /// A guest store KVM could not serve. Stores to memory are gathered
    /// whole first (a wide or page-crossing store comes as several
    /// fragments) so they are done all or nothing; a store to a device
    /// goes out as it comes.
    fn on_write(
        &mut self,
        st: &mut CoreState,
        frag: Fragment,
        next: &mut Option<Event>,
    ) -> Result<Option<Exit>> {
        let to_memory = {
            let mem = self.vm.memory.lock();
            mem.binding_at(frag.gpa).is_some() || !self.vm.mmio_window().contains(&frag.gpa)
        };
        let mut frags = vec![frag];
        if to_memory {
            *next = self.gather_writes(st, &mut frags);
        }
        self.drive_writes(st, frags)
    }

    /// Collect the rest of a store KVM splits into fragments: KVM hands out
    /// the next one on each `KVM_RUN`, and returns EINTR (with
    /// `immediate_exit`) once the instruction is complete.
    fn gather_writes(&mut self, st: &mut CoreState, frags: &mut Vec<Fragment>) -> Option<Event> {
        let mut next = None;
        st.fd.set_kvm_immediate_exit(1);
        loop {
            match st.fd.run() {
                Ok(VcpuExit::MmioWrite(gpa, data)) => frags.push(Fragment::write(gpa, data)),
                other => {
                    let e = decode(other);
                    if !matches!(e, Event::Interrupted) {
                        next = Some(e);
                    }
                    break;
                }
            }
        }
        st.fd.set_kvm_immediate_exit(0);
        wipe_kvm_mmio_data(&mut st.fd);
        next
    }

    /// Store what can be stored of `frags`; report the first that cannot.
    fn drive_writes(
        &mut self,
        st: &mut CoreState,
        mut frags: Vec<Fragment>,
    ) -> Result<Option<Exit>> {
        let window = self.vm.mmio_window();
        let progress = self.vm.memory.lock().guest_writes(&frags, &window)?;
        frags.drain(..progress.stored);
        let Some((at, why)) = progress.blocked else {
            return Ok(None);
        };
        let at = at - progress.stored;
        let gpa = frags[at].gpa;
        match why {
            Completed::Unbound if window.contains(&gpa) => {
                let exit = mmio_exit(&frags[at]);
                st.pending = Pending::Writes {
                    frags,
                    at,
                    fault: None,
                };
                Counters::bump(&self.vm.counters.mmio_exits);
                self.resume = ResumeAction::Handled;
                Ok(Some(exit))
            }
            Completed::Uncompletable => Ok(Some(self.crash(st, Crash::Uncompletable { gpa }))),
            why => {
                let attempt = attempt_of(why);
                Ok(Some(self.fault_exit(
                    st,
                    Pending::Writes {
                        frags,
                        at,
                        fault: Some(attempt),
                    },
                    gpa,
                    attempt,
                    true,
                )))
            }
        }
    }

    /// Turn a read memory cannot satisfy into the exit it deserves.
    fn unresolved(&mut self, st: &mut CoreState, frag: Fragment, why: Completed) -> Exit {
        let gpa = frag.gpa;
        match why {
            Completed::Unbound if self.vm.mmio_window().contains(&gpa) => {
                let exit = mmio_exit(&frag);
                st.pending = Pending::Read { frag, fault: None };
                Counters::bump(&self.vm.counters.mmio_exits);
                self.resume = ResumeAction::Handled;
                exit
            }
            Completed::Uncompletable => self.crash(st, Crash::Uncompletable { gpa }),
            why => {
                let attempt = attempt_of(why);
                self.fault_exit(
                    st,
                    Pending::Read {
                        frag,
                        fault: Some(attempt),
                    },
                    gpa,
                    attempt,
                    false,
                )
            }
        }
    }

    /// A PAGE_FAULT exit (SPEC R-5): resume action pre-set to FAULT.
    fn fault_exit(
        &mut self,
        st: &mut CoreState,
        pending: Pending,
        gpa: u64,
        attempt: i32,
        is_write: bool,
    ) -> Exit {
        st.pending = pending;
        self.resume = ResumeAction::Fault;
        Counters::bump(&self.vm.counters.page_fault_exits);
        Exit::PageFault {
            phys_addr: gpa,
            attempt,
            is_write,
        }
    }

    /// Let KVM finish the access whose data lendvm just supplied, without
    /// entering the guest, then wipe the data from KVM's run structure
    /// (DESIGN D11). KVM may hand out the access's next fragment instead.
    fn finish_io(&mut self, st: &mut CoreState) -> Option<Event> {
        st.fd.set_kvm_immediate_exit(1);
        let r = st.fd.run();
        let event = decode(r);
        st.fd.set_kvm_immediate_exit(0);
        if !matches!(event, Event::Write(_)) {
            wipe_kvm_mmio_data(&mut st.fd);
        }
        match event {
            Event::Interrupted => None,
            e => Some(e),
        }
    }

    /// An emulation failure: usually an instruction fetch from a lend
    /// binding not yet given to the guest. Give the page and retry the
    /// fetch (RIP has not moved); another vCPU may have given it meanwhile,
    /// so an installed page gets one retry too; failing twice at one RIP is
    /// a real failure. RIP is virtual once the guest pages: the guest's own
    /// page tables say which page it fetches from.
    fn on_emulation_failure(
        &mut self,
        st: &mut CoreState,
        fetch_retry: &mut Option<u64>,
    ) -> Result<Option<Exit>> {
        let mut regs = st
            .fd
            .get_regs()
            .map_err(|e| Error::kvm("KVM_GET_REGS", e))?;
        let rip = regs.rip;
        wipe_regs(&mut regs);
        let code_gpa = st
            .fd
            .translate_gva(rip)
            .ok()
            .filter(|t| t.valid != 0)
            .map_or(rip, |t| t.physical_address);
        let done = self.vm.memory.lock().touch_code(code_gpa)?;
        let retry = match done {
            (Completed::Done, true) => true,
            (Completed::Done, false) => *fetch_retry != Some(rip),
            (Completed::Unbound, _) if !self.vm.mmio_window().contains(&code_gpa) => {
                return Ok(Some(self.fault_exit(
                    st,
                    Pending::Fetch {
                        gpa: code_gpa,
                        attempt: -libc::ENOENT,
                    },
                    code_gpa,
                    -libc::ENOENT,
                    false,
                )));
            }
            (Completed::Refused | Completed::WriteDenied, _) => {
                return Ok(Some(self.fault_exit(
                    st,
                    Pending::Fetch {
                        gpa: code_gpa,
                        attempt: -libc::EPERM,
                    },
                    code_gpa,
                    -libc::EPERM,
                    false,
                )));
            }
            _ => false,
        };
        if !retry {
            let suberror = internal_suberror(&mut st.fd);
            return Ok(Some(self.crash(st, Crash::EmulationFailure { suberror })));
        }
        *fetch_retry = Some(rip);
        Ok(None)
    }
}

/// The exit for an access to a device in the MMIO window.
fn mmio_exit(frag: &Fragment) -> Exit {
    let mut data = [0u8; 8];
    if frag.is_write {
        data[..frag.len].copy_from_slice(frag.bytes());
    }
    Exit::Mmio {
        phys_addr: frag.gpa,
        data,
        len: frag.len as u32,
        is_write: frag.is_write,
    }
}

fn attempt_of(why: Completed) -> i32 {
    match why {
        Completed::Unbound => -libc::ENOENT,
        _ => -libc::EPERM,
    }
}

/// Put bytes where KVM completes a pending MMIO read from.
fn set_kvm_mmio_data(fd: &mut VcpuFd, data: &[u8]) {
    let run = fd.get_kvm_run();
    // SAFETY: the pending exit is an MMIO read, so `mmio` is the live
    // member of KVM's exit union; `data` is at most 8 bytes.
    let m = unsafe { &mut run.__bindgen_anon_1.mmio };
    let n = data.len().min(8);
    m.data[..n].copy_from_slice(&data[..n]);
}

/// Clear the MMIO data bytes of KVM's run structure once KVM is done
/// with them: they may be a guest's lent or private data (DESIGN D11).
fn wipe_kvm_mmio_data(fd: &mut VcpuFd) {
    let run = fd.get_kvm_run();
    // SAFETY: plain bytes of the exit union, which KVM reads only for an
    // exit it reported and userspace has not completed (none is pending
    // here); any bit pattern is valid.
    let m = unsafe { &mut run.__bindgen_anon_1.mmio };
    crate::memory::wipe(&mut m.data);
}

fn internal_suberror(fd: &mut VcpuFd) -> u32 {
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` is
    // the live member of KVM's exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}
