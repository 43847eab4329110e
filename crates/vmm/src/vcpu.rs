//! The vCPU run protocol (SPEC §2.9) on KVM.
//!
//! [`Vcpu::run`] enters the guest and returns one of the Gunyah exits:
//! [`Exit::Mmio`], [`Exit::PageFault`] or [`Exit::Status`]. Everything
//! else is handled inside: first touches of lend bindings (demand paging),
//! built-in port devices, accesses KVM reports as MMIO although memory is
//! bound there.
//!
//! How the Gunyah resume actions map onto KVM, whose faulting instruction
//! completes on the next `KVM_RUN`:
//! * HANDLED: an MMIO read gets the run page's `data`; a write is done.
//! * RETRY: the access is resolved again; if memory is now bound it is
//!   completed against it (reads by re-executing the instruction or by
//!   supplying the memory's bytes, writes by storing the written bytes),
//!   else the same exit is reported again.
//! * FAULT (DESIGN D7): the guest receives a page fault (#PF, vector 14)
//!   with CR2 = the guest physical address. For reads the exception frame
//!   points at the faulting instruction; a write has already retired on
//!   KVM, so the frame points after it. A guest without a handler ends
//!   CRASHED.
//! * Any other value: EINVAL, and the vCPU stays where it was.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use binding::BindingInfo;
use kvm_bindings::{kvm_regs, kvm_run, kvm_vcpu_events};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use uapi::{
    GUNYAH_VCPU_EXIT_MMIO, GUNYAH_VCPU_EXIT_PAGE_FAULT, GUNYAH_VCPU_EXIT_STATUS,
    GUNYAH_VCPU_RESUME_FAULT, GUNYAH_VCPU_RESUME_HANDLED, GUNYAH_VCPU_RESUME_RETRY,
    GUNYAH_VM_STATUS_CRASHED, GUNYAH_VM_STATUS_EXITED, GUNYAH_VM_STATUS_LOAD_FAILED,
    gunyah_vcpu_run, gunyah_vcpu_run_mmio, gunyah_vcpu_run_page_fault, gunyah_vcpu_run_status,
    gunyah_vm_exit_info,
};

use crate::boot::BootMode;
use crate::memory::Touch;
use crate::native_abi::SYSTEM_REGION_BASE;
use crate::ports::PortOutcome;
use crate::vm::{Lifecycle, VmInner, lock};
use crate::{Error, Result, x86};

/// `exit_info.type` values lendvm reports (numbered as crosvm's Gunyah
/// backend reads them).
pub mod exit_kind {
    /// The guest asked to stop (native exit port).
    pub const VM_EXIT: u16 = 0;
    /// Power off (KVM system event).
    pub const POWER_OFF: u16 = 1;
    /// Reset (i8042 reset line or KVM system event).
    pub const RESET: u16 = 2;
}

/// Details of a guest-requested stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// One of [`exit_kind`].
    pub kind: u16,
    /// Little-endian reason bytes (e.g. the value written to the exit port).
    pub reason: [u8; 8],
    /// How many bytes of `reason` are meaningful.
    pub reason_size: u32,
}

impl ExitInfo {
    /// The reason as a little-endian number.
    pub fn code(&self) -> u64 {
        u64::from_le_bytes(self.reason)
    }
}

/// Why a guest crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// A triple fault (KVM_EXIT_SHUTDOWN): e.g. an exception without handler.
    TripleFault,
    /// KVM could not emulate an instruction (KVM_EXIT_INTERNAL_ERROR).
    EmulationFailure {
        /// KVM's internal-error suberror.
        suberror: u32,
    },
    /// The CPU refused to enter the guest.
    EntryFailure {
        /// Hardware reason.
        reason: u64,
    },
    /// The guest itself reported a crash (KVM system event).
    GuestReported,
    /// An access lendvm cannot complete on this host (a write into
    /// host-inaccessible memory outside lendvm's native mode).
    Uncompletable {
        /// The guest physical address.
        gpa: u64,
    },
    /// A KVM exit lendvm does not handle.
    UnexpectedExit {
        /// The KVM exit reason.
        reason: u32,
    },
}

/// Why a VM cannot run any more (SPEC R-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// START failed.
    LoadFailed,
    /// The guest asked to stop.
    Exited(ExitInfo),
    /// The guest crashed.
    Crashed(Crash),
}

/// What a run returned to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// An access to an unbound address in the MMIO window (DESIGN D1). For
    /// a read, supply the bytes with [`Vcpu::set_mmio_data`].
    Mmio {
        /// Guest physical address.
        phys_addr: u64,
        /// Bytes written (for writes).
        data: [u8; 8],
        /// Access length.
        len: u32,
        /// Write or read.
        is_write: bool,
    },
    /// An access memory could not satisfy: `attempt` is -ENOENT (nothing
    /// bound there) or -EPERM (bound, but the guest may not have it now).
    PageFault {
        /// Guest physical address.
        phys_addr: u64,
        /// The negative errno.
        attempt: i32,
        /// Whether the access was a write.
        is_write: bool,
    },
    /// The VM is not runnable any more.
    Status(Status),
}

/// A resume action (run page `resume_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAction {
    /// Handled: continue.
    Handled,
    /// Reflect the fault into the guest.
    Fault,
    /// Try the access again.
    Retry,
}

impl ResumeAction {
    /// The run page encoding.
    pub const fn raw(self) -> u8 {
        match self {
            ResumeAction::Handled => GUNYAH_VCPU_RESUME_HANDLED,
            ResumeAction::Fault => GUNYAH_VCPU_RESUME_FAULT,
            ResumeAction::Retry => GUNYAH_VCPU_RESUME_RETRY,
        }
    }

    fn from_raw(v: u8) -> Option<ResumeAction> {
        match v {
            GUNYAH_VCPU_RESUME_HANDLED => Some(ResumeAction::Handled),
            GUNYAH_VCPU_RESUME_FAULT => Some(ResumeAction::Fault),
            GUNYAH_VCPU_RESUME_RETRY => Some(ResumeAction::Retry),
            _ => None,
        }
    }
}

/// An access the guest is waiting on.
#[derive(Debug, Clone, Copy)]
struct Access {
    gpa: u64,
    len: usize,
    is_write: bool,
    data: [u8; 8],
    /// Registers at the exit; for reads RIP is the faulting instruction.
    regs: kvm_regs,
}

/// What the last exit left behind (the kernel-side copy of SPEC R-1).
#[derive(Debug, Clone, Copy)]
enum Pending {
    None,
    /// An MMIO exit was returned.
    Mmio(Access),
    /// A PAGE_FAULT exit was returned, with its attempt (-errno).
    PageFault(Access, i32),
    /// A STATUS exit was returned: the vCPU is system-down.
    Down(Status),
}

/// Port the stub writer reports completion on (see `write_via_guest`).
const STUB_PORT: u16 = 0xef;
/// Where the stub writer's code lives in the system region.
pub(crate) const STUB_BASE: u64 = SYSTEM_REGION_BASE + 0x1f_f000;

/// The stub writer: `mov [rdi], {al|ax|eax|rax}; out 0xef, al`, one per
/// access size, 16 bytes apart.
pub(crate) fn stub_code() -> [u8; 64] {
    let mut code = [0xccu8; 64];
    let stubs: [&[u8]; 4] = [
        &[0x88, 0x07, 0xe6, 0xef],
        &[0x66, 0x89, 0x07, 0xe6, 0xef],
        &[0x89, 0x07, 0xe6, 0xef],
        &[0x48, 0x89, 0x07, 0xe6, 0xef],
    ];
    for (i, s) in stubs.iter().enumerate() {
        code[i * 16..i * 16 + s.len()].copy_from_slice(s);
    }
    code
}

/// Interrupts a vCPU that is (or is about to be) inside `KVM_RUN`.
struct Kick {
    run: AtomicPtr<kvm_run>,
    /// `pthread_t` of the thread inside run(), or 0.
    thread: AtomicU64,
    /// Set by [`Kicker::kick`]: run() returns EINTR.
    requested: AtomicBool,
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
    fn kick(&self) {
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
/// returns EINTR ([`Error::Interrupted`]).
#[derive(Clone)]
pub struct Kicker {
    core: Arc<VcpuCore>,
}

impl Kicker {
    /// Make the vCPU's current (or next) run return EINTR.
    pub fn kick(&self) {
        self.core.kick.requested.store(true, Ordering::SeqCst);
        self.core.kick();
    }
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
    pub(crate) fn new(id: u32, mut fd: VcpuFd) -> VcpuCore {
        fd.set_sync_valid_reg(SyncReg::Register);
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

/// A vCPU of a VM (SPEC F-3, F-4). Holds the VM alive (SPEC B-VM-9). Its
/// run page starts with exit reason UNKNOWN.
pub struct Vcpu {
    vm: Arc<VmInner>,
    core: Arc<VcpuCore>,
    generation: u64,
    page: gunyah_vcpu_run,
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
            page: gunyah_vcpu_run::default(),
        }
    }

    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// The run page (what an mmap of a Gunyah vCPU fd shows).
    pub fn page(&self) -> &gunyah_vcpu_run {
        &self.page
    }

    /// The run page, for setting `immediate_exit`, resume actions and MMIO
    /// read data in raw form.
    pub fn page_mut(&mut self) -> &mut gunyah_vcpu_run {
        &mut self.page
    }

    /// Set the resume action for the exit just returned.
    pub fn set_resume(&mut self, action: ResumeAction) {
        // SAFETY (union access): both members are plain bytes; writing a u8
        // field of either cannot produce an invalid value.
        match self.page.exit_reason {
            GUNYAH_VCPU_EXIT_PAGE_FAULT => {
                let mut pf = page_fault(&self.page);
                pf.resume_action = action.raw();
                self.page.exit.page_fault = pf;
            }
            _ => {
                let mut m = mmio(&self.page);
                m.resume_action = action.raw();
                self.page.exit.mmio = m;
            }
        }
    }

    /// Supply the bytes an MMIO read returns (up to 8).
    pub fn set_mmio_data(&mut self, data: &[u8]) {
        let mut m = mmio(&self.page);
        let n = data.len().min(8);
        m.data[..n].copy_from_slice(&data[..n]);
        self.page.exit.mmio = m;
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

    /// VCPU_RUN in ioctl form: 0 with the run page filled, or `-errno`.
    pub fn run_raw(&mut self) -> i32 {
        match self.run() {
            Ok(_) => 0,
            Err(e) => e.to_ret(),
        }
    }

    /// Run until the next exit the caller must see (SPEC R-1..R-11).
    pub fn run(&mut self) -> Result<Exit> {
        let core = self.core.clone();
        // SPEC R-3: one runner at a time.
        let mut st = core.lock();
        if !core.is_active() || core.generation.load(Ordering::SeqCst) != self.generation {
            return Err(Error::NotRunnable(format!("vCPU {} was removed", core.id)));
        }
        match self.vm.lifecycle() {
            Lifecycle::NotStarted => {
                return Err(Error::NotRunnable(
                    "the VM has not been started (START)".into(),
                ));
            }
            Lifecycle::LoadFailed(_) => return Ok(self.stop(&mut st, Status::LoadFailed)),
            Lifecycle::Running => {}
        }
        // SPEC R-9: once system-down, report without touching the page.
        if let Pending::Down(status) = st.pending {
            return Ok(Exit::Status(status));
        }
        if let Some(status) = self.vm_status() {
            return Ok(self.stop(&mut st, status));
        }
        // SPEC R-4.
        if self.page.immediate_exit != 0 {
            return Err(Error::Interrupted);
        }
        if st.started != Some(self.generation) {
            self.load_boot_state(&mut st)?;
            st.started = Some(self.generation);
        }
        if let Some(exit) = self.resume(&mut st)? {
            return Ok(exit);
        }
        self.enter(&mut st)
    }

    fn vm_status(&self) -> Option<Status> {
        if self.vm.down.load(Ordering::SeqCst) {
            *lock(&self.vm.status)
        } else {
            None
        }
    }

    /// Report a STATUS exit and become system-down.
    fn stop(&mut self, st: &mut CoreState, status: Status) -> Exit {
        let (code, info) = match status {
            Status::LoadFailed => (GUNYAH_VM_STATUS_LOAD_FAILED, gunyah_vm_exit_info::default()),
            Status::Exited(e) => (
                GUNYAH_VM_STATUS_EXITED,
                gunyah_vm_exit_info {
                    type_: e.kind,
                    padding: 0,
                    reason_size: e.reason_size,
                    reason: e.reason,
                },
            ),
            Status::Crashed(_) => (GUNYAH_VM_STATUS_CRASHED, gunyah_vm_exit_info::default()),
        };
        self.page.exit_reason = GUNYAH_VCPU_EXIT_STATUS;
        self.page.exit.status = gunyah_vcpu_run_status {
            status: code,
            exit_info: info,
        };
        st.pending = Pending::Down(status);
        self.vm
            .counters
            .status_exits
            .fetch_add(1, Ordering::Relaxed);
        Exit::Status(status)
    }

    fn load_boot_state(&self, st: &mut CoreState) -> Result<()> {
        if !st.cpuid_set {
            let cpuid = self.vm.shared.supported_cpuid()?;
            st.fd
                .set_cpuid2(&cpuid)
                .map_err(|e| Error::kvm("KVM_SET_CPUID2", e))?;
            st.cpuid_set = true;
        }
        let cfg = lock(&self.vm.config);
        let mode = cfg.boot_mode;
        let mut sregs = st
            .fd
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
        let mut regs = kvm_regs {
            rflags: 2,
            ..Default::default()
        };
        match mode {
            BootMode::Native => {
                x86::native_sregs(&mut sregs);
                regs.rip = cfg.boot.pc.unwrap_or(0);
                regs.rdi = u64::from(self.core.id);
                regs.rsi = cfg.dtb_addr();
            }
            BootMode::Pvh { entry, start_info } => {
                x86::pvh_sregs(&mut sregs);
                regs.rip = entry;
                regs.rbx = start_info;
            }
            BootMode::Linux64 { entry, boot_params } => {
                x86::linux64_sregs(&mut sregs);
                regs.rip = entry;
                regs.rsi = boot_params;
            }
        }
        for (i, v) in cfg.boot.gprs.iter().enumerate() {
            if let Some(v) = v {
                x86::set_gpr(&mut regs, i, *v);
            }
        }
        if mode != BootMode::Native
            && let Some(pc) = cfg.boot.pc
        {
            regs.rip = pc;
        }
        drop(cfg);
        st.fd
            .set_sregs(&sregs)
            .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        st.fd
            .set_regs(&regs)
            .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
        // With an in-kernel LAPIC every vCPU but the boot CPU (id 0) starts
        // waiting for INIT/SIPI and KVM_RUN would block. lendvm's native
        // vCPUs all start at once; a PVH or Linux guest wakes its own.
        if self.core.id != 0 && self.vm.options.irqchip && mode == BootMode::Native {
            st.fd
                .set_mp_state(kvm_bindings::kvm_mp_state {
                    mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
                })
                .map_err(|e| Error::kvm("KVM_SET_MP_STATE", e))?;
        }
        Ok(())
    }

    // ----- resuming --------------------------------------------------------------

    /// Apply the resume action for the pending exit. `Some(exit)` when the
    /// access is still unresolved and the same exit is reported again.
    fn resume(&mut self, st: &mut CoreState) -> Result<Option<Exit>> {
        let (access, raw, attempt) = match st.pending {
            Pending::None | Pending::Down(_) => return Ok(None),
            Pending::Mmio(a) => (a, mmio(&self.page).resume_action, None),
            Pending::PageFault(a, attempt) => {
                (a, page_fault(&self.page).resume_action, Some(attempt))
            }
        };
        let action = ResumeAction::from_raw(raw).ok_or_else(|| {
            Error::Invalid(format!(
                "resume action {raw} is not HANDLED (0), FAULT (1) or RETRY (2)"
            ))
        })?;
        st.pending = Pending::None;
        match action {
            ResumeAction::Handled if attempt.is_none() => {
                if !access.is_write {
                    let data = mmio(&self.page).data;
                    set_kvm_mmio_data(&mut st.fd, &data[..access.len]);
                }
                Ok(None)
            }
            ResumeAction::Fault => {
                // The page is "present" for the guest's error code when it
                // is bound but was refused (-EPERM).
                self.inject_fault(st, &access, attempt == Some(-libc::EPERM))?;
                Ok(None)
            }
            // HANDLED after a page fault means "memory was provided": the
            // same as RETRY on KVM.
            ResumeAction::Handled | ResumeAction::Retry => {
                match self.resolve(st, access)? {
                    Some(exit) => {
                        // Still unresolved: flush the KVM side of the access
                        // once more is not needed; report again.
                        Ok(Some(exit))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// Inject a #PF for `access` (DESIGN D7).
    fn inject_fault(&mut self, st: &mut CoreState, a: &Access, present: bool) -> Result<()> {
        // Finish KVM's half of the access, then put reads back at the
        // faulting instruction. With KVM_SET_REGS, not the synchronised
        // registers: KVM applies those at the next entry, and setting
        // registers clears a queued exception.
        flush_pending_io(&mut st.fd);
        if !a.is_write {
            st.fd
                .set_regs(&a.regs)
                .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
        }
        let mut events: kvm_vcpu_events = st
            .fd
            .get_vcpu_events()
            .map_err(|e| Error::kvm("KVM_GET_VCPU_EVENTS", e))?;
        events.exception.injected = 0;
        events.exception.pending = 1;
        events.exception.nr = 14;
        events.exception.has_error_code = 1;
        // P (present but refused), W (write), U (user mode).
        events.exception.error_code = u32::from(present) | (u32::from(a.is_write) << 1) | (1 << 2);
        if self.vm.exception_payload {
            events.exception_has_payload = 1;
            events.exception_payload = a.gpa;
            events.flags |= kvm_bindings::KVM_VCPUEVENT_VALID_PAYLOAD;
        } else {
            let mut sregs = st
                .fd
                .get_sregs()
                .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
            sregs.cr2 = a.gpa;
            st.fd
                .set_sregs(&sregs)
                .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        }
        st.fd
            .set_vcpu_events(&events)
            .map_err(|e| Error::kvm("KVM_SET_VCPU_EVENTS", e))?;
        self.vm
            .counters
            .injected_faults
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Resolve a pending access against memory: complete it, or report the
    /// exit it still deserves.
    fn resolve(&mut self, st: &mut CoreState, a: Access) -> Result<Option<Exit>> {
        let touch = self.vm.shared.lock().touch(self.vm.id, a.gpa, a.is_write)?;
        match touch {
            Touch::Present { binding, .. } => {
                self.complete(st, &binding, &a)?;
                Ok(None)
            }
            other => Ok(Some(self.unresolved(st, a, other))),
        }
    }

    /// Turn an access memory cannot satisfy into the exit it deserves.
    fn unresolved(&mut self, st: &mut CoreState, a: Access, touch: Touch) -> Exit {
        let attempt = match touch {
            Touch::Unbound => {
                let window = lock(&self.vm.config).mmio_window.clone();
                if window.contains(&a.gpa) {
                    return self.mmio_exit(st, a);
                }
                -libc::ENOENT
            }
            Touch::WriteDenied | Touch::Refused => -libc::EPERM,
            Touch::Present { .. } => 0,
        };
        self.page.exit_reason = GUNYAH_VCPU_EXIT_PAGE_FAULT;
        self.page.exit.page_fault = gunyah_vcpu_run_page_fault {
            phys_addr: a.gpa,
            attempt,
            // SPEC R-5: pre-set to FAULT.
            resume_action: GUNYAH_VCPU_RESUME_FAULT,
        };
        st.pending = Pending::PageFault(a, attempt);
        self.vm
            .counters
            .page_fault_exits
            .fetch_add(1, Ordering::Relaxed);
        Exit::PageFault {
            phys_addr: a.gpa,
            attempt,
            is_write: a.is_write,
        }
    }

    fn mmio_exit(&mut self, st: &mut CoreState, a: Access) -> Exit {
        let mut data = [0u8; 8];
        if a.is_write {
            data[..a.len].copy_from_slice(&a.data[..a.len]);
        }
        self.page.exit_reason = GUNYAH_VCPU_EXIT_MMIO;
        self.page.exit.mmio = gunyah_vcpu_run_mmio {
            phys_addr: a.gpa,
            data,
            len: a.len as u32,
            is_write: u8::from(a.is_write),
            resume_action: GUNYAH_VCPU_RESUME_HANDLED,
        };
        st.pending = Pending::Mmio(a);
        self.vm.counters.mmio_exits.fetch_add(1, Ordering::Relaxed);
        Exit::Mmio {
            phys_addr: a.gpa,
            data,
            len: a.len as u32,
            is_write: a.is_write,
        }
    }

    /// Complete `a` against the memory bound at its address, on the
    /// guest's behalf (the instruction already left the guest as MMIO).
    fn complete(&mut self, st: &mut CoreState, b: &BindingInfo, a: &Access) -> Result<()> {
        let file = {
            let s = self.vm.shared.lock();
            s.file(b.file).cloned()
        };
        let Some(file) = file else {
            return Err(Error::NotFound(format!("file {} is gone", b.file)));
        };
        let off = b.offset + (a.gpa - b.guest_addr);
        let vm = self.vm.id;
        if a.is_write {
            match file.write_for_guest(vm, off, &a.data[..a.len]) {
                Ok(()) => {}
                Err(gmem::Error::Private) => self.write_via_guest(st, a)?,
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut data = [0u8; 8];
            match file.read_for_guest(vm, off, &mut data[..a.len]) {
                Ok(()) => set_kvm_mmio_data(&mut st.fd, &data[..a.len]),
                Err(gmem::Error::Private) => {
                    // Re-execute the read natively against the slot now
                    // installed: finish KVM's half, rewind to the instruction.
                    flush_pending_io(&mut st.fd);
                    restore_regs(&mut st.fd, &a.regs);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.vm.shared.lock().count_completed(vm);
        Ok(())
    }

    /// Store a write into memory the host cannot access (a private
    /// guest_memfd) by letting the guest do it: run a four-instruction stub
    /// in lendvm's system region, then restore the guest's registers. The
    /// write already retired on KVM, so the guest continues after it.
    fn write_via_guest(&mut self, st: &mut CoreState, a: &Access) -> Result<()> {
        let uncompletable = Error::NotRunnable(format!(
            "cannot complete a write to {:#x}: the memory is private and the guest is not in lendvm's native mode",
            a.gpa
        ));
        let stub = match a.len {
            1 => STUB_BASE,
            2 => STUB_BASE + 16,
            4 => STUB_BASE + 32,
            8 => STUB_BASE + 48,
            _ => return Err(uncompletable),
        };
        flush_pending_io(&mut st.fd);
        let saved = st.fd.sync_regs().regs;
        let mut regs = saved;
        regs.rip = stub;
        regs.rdi = a.gpa;
        regs.rax = u64::from_le_bytes(a.data);
        restore_regs(&mut st.fd, &regs);
        let done = matches!(st.fd.run(), Ok(VcpuExit::IoOut(STUB_PORT, _)));
        restore_regs(&mut st.fd, &saved);
        if done { Ok(()) } else { Err(uncompletable) }
    }

    // ----- the run loop ----------------------------------------------------------

    fn enter(&mut self, st: &mut CoreState) -> Result<Exit> {
        let core = self.core.clone();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        core.kick.thread.store(me, Ordering::Release);
        let result = self.run_loop(st);
        core.kick.thread.store(0, Ordering::Release);
        result
    }

    fn run_loop(&mut self, st: &mut CoreState) -> Result<Exit> {
        // RIP of the last instruction fetch retried after an emulation failure.
        let mut fetch_retry: Option<u64> = None;
        loop {
            let raw = {
                let r = st.fd.run();
                self.vm.counters.kvm_exits.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(VcpuExit::MmioRead(gpa, data)) => Raw::Mmio {
                        gpa,
                        len: data.len(),
                        is_write: false,
                        data: [0; 8],
                    },
                    Ok(VcpuExit::MmioWrite(gpa, data)) => {
                        let mut d = [0u8; 8];
                        let n = data.len().min(8);
                        d[..n].copy_from_slice(&data[..n]);
                        Raw::Mmio {
                            gpa,
                            len: n,
                            is_write: true,
                            data: d,
                        }
                    }
                    Ok(VcpuExit::IoOut(port, data)) => {
                        match lock(&self.vm.ports).write(self.core.id, port, data) {
                            PortOutcome::Handled => Raw::Port(true),
                            PortOutcome::Unknown => Raw::Port(false),
                            PortOutcome::Stop(s) => Raw::Stop(s),
                        }
                    }
                    Ok(VcpuExit::IoIn(port, data)) => {
                        Raw::Port(lock(&self.vm.ports).read(port, data) == PortOutcome::Handled)
                    }
                    Ok(VcpuExit::Shutdown) => Raw::Stop(Status::Crashed(Crash::TripleFault)),
                    Ok(VcpuExit::InternalError) => Raw::InternalError,
                    Ok(VcpuExit::FailEntry(reason, _)) => {
                        Raw::Stop(Status::Crashed(Crash::EntryFailure { reason }))
                    }
                    Ok(VcpuExit::SystemEvent(kind, _)) => Raw::Stop(system_event(kind)),
                    Ok(VcpuExit::Hlt) => Raw::Stop(Status::Exited(ExitInfo {
                        kind: exit_kind::POWER_OFF,
                        reason: [0; 8],
                        reason_size: 0,
                    })),
                    Ok(VcpuExit::MemoryFault { gpa, .. }) => Raw::MemoryFault(gpa),
                    Ok(VcpuExit::Intr) => Raw::Interrupted,
                    Ok(other) => Raw::Stop(Status::Crashed(Crash::UnexpectedExit {
                        reason: exit_number(&other),
                    })),
                    Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                        Raw::Interrupted
                    }
                    Err(e) => return Err(Error::kvm("KVM_RUN", e)),
                }
            };
            let regs_at_exit = st.fd.sync_regs().regs;
            if !matches!(raw, Raw::InternalError) {
                fetch_retry = None;
            }
            match raw {
                Raw::Port(handled) => {
                    let c = &self.vm.counters;
                    if handled {
                        c.port_io.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.unknown_port_io.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Raw::Mmio {
                    gpa,
                    len,
                    is_write,
                    data,
                } => {
                    let a = Access {
                        gpa,
                        len,
                        is_write,
                        data,
                        regs: regs_at_exit,
                    };
                    if let Some(exit) = self.resolve(st, a)? {
                        return Ok(exit);
                    }
                }
                Raw::MemoryFault(gpa) => {
                    let a = Access {
                        gpa,
                        len: 0,
                        is_write: false,
                        data: [0; 8],
                        regs: regs_at_exit,
                    };
                    return Ok(self.unresolved(st, a, Touch::Refused));
                }
                Raw::InternalError => {
                    // An instruction fetch from a lend binding not yet given
                    // to the guest cannot be emulated: give the page and
                    // retry the fetch (RIP has not moved). Another vCPU may
                    // have given it meanwhile, so an installed page gets one
                    // retry too; failing twice at one RIP is a real failure.
                    // RIP is virtual once the guest pages: the guest's own
                    // page tables say which page it fetches from.
                    let rip = regs_at_exit.rip;
                    let code_gpa = st
                        .fd
                        .translate_gva(rip)
                        .ok()
                        .filter(|t| t.valid != 0)
                        .map_or(rip, |t| t.physical_address);
                    let touch = self.vm.shared.lock().touch(self.vm.id, code_gpa, false)?;
                    let retry = match touch {
                        Touch::Present { paged: true, .. } => true,
                        Touch::Present { paged: false, .. } => fetch_retry != Some(rip),
                        _ => false,
                    };
                    if !retry {
                        let suberror = internal_suberror(&mut st.fd);
                        return self.crash(st, Crash::EmulationFailure { suberror });
                    }
                    fetch_retry = Some(rip);
                    continue;
                }
                Raw::Stop(status) => {
                    self.vm.set_down(status);
                    let status = self.vm_status().unwrap_or(status);
                    return Ok(self.stop(st, status));
                }
                Raw::Interrupted => {
                    clear_immediate_exit(&mut st.fd);
                    if let Some(status) = self.vm_status() {
                        return Ok(self.stop(st, status));
                    }
                    if !self.core.is_active() {
                        return Err(Error::NotRunnable(format!(
                            "vCPU {} was removed",
                            self.core.id
                        )));
                    }
                    if self.core.kick.requested.swap(false, Ordering::SeqCst) {
                        return Err(Error::Interrupted);
                    }
                }
            }
        }
    }

    fn crash(&mut self, st: &mut CoreState, crash: Crash) -> Result<Exit> {
        let status = Status::Crashed(crash);
        self.vm.set_down(status);
        let status = self.vm_status().unwrap_or(status);
        Ok(self.stop(st, status))
    }
}

/// A KVM exit, copied out of the run structure so the vCPU can be used
/// again while it is handled.
enum Raw {
    Mmio {
        gpa: u64,
        len: usize,
        is_write: bool,
        data: [u8; 8],
    },
    Port(bool),
    Stop(Status),
    InternalError,
    MemoryFault(u64),
    Interrupted,
}

fn system_event(kind: u32) -> Status {
    match kind {
        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Status::Exited(ExitInfo {
            kind: exit_kind::POWER_OFF,
            reason: [0; 8],
            reason_size: 0,
        }),
        kvm_bindings::KVM_SYSTEM_EVENT_RESET => Status::Exited(ExitInfo {
            kind: exit_kind::RESET,
            reason: [0; 8],
            reason_size: 0,
        }),
        _ => Status::Crashed(Crash::GuestReported),
    }
}

fn exit_number(exit: &VcpuExit<'_>) -> u32 {
    match exit {
        VcpuExit::Unsupported(n) => *n,
        VcpuExit::Debug(_) => kvm_bindings::KVM_EXIT_DEBUG,
        VcpuExit::Exception => kvm_bindings::KVM_EXIT_EXCEPTION,
        VcpuExit::IrqWindowOpen => kvm_bindings::KVM_EXIT_IRQ_WINDOW_OPEN,
        _ => kvm_bindings::KVM_EXIT_UNKNOWN,
    }
}

fn mmio(page: &gunyah_vcpu_run) -> gunyah_vcpu_run_mmio {
    // SAFETY: every member of the union is plain integers and byte arrays,
    // so any bit pattern is a valid `gunyah_vcpu_run_mmio`.
    unsafe { page.exit.mmio }
}

fn page_fault(page: &gunyah_vcpu_run) -> gunyah_vcpu_run_page_fault {
    // SAFETY: as for `mmio`: plain data, any bit pattern is valid.
    unsafe { page.exit.page_fault }
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

/// Let KVM finish its half of a pending MMIO/PIO access without entering
/// the guest (KVM_RUN with immediate_exit returns EINTR after completing).
fn flush_pending_io(fd: &mut VcpuFd) {
    fd.set_kvm_immediate_exit(1);
    let _ = fd.run();
    fd.set_kvm_immediate_exit(0);
}

fn clear_immediate_exit(fd: &mut VcpuFd) {
    fd.set_kvm_immediate_exit(0);
}

/// Load `regs` on the next entry (synchronised registers: no ioctl).
fn restore_regs(fd: &mut VcpuFd, regs: &kvm_regs) {
    fd.sync_regs_mut().regs = *regs;
    fd.set_sync_dirty_reg(SyncReg::Register);
}

fn internal_suberror(fd: &mut VcpuFd) -> u32 {
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` is
    // the live member of KVM's exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}
