//! What a vCPU run returns: the Gunyah exits in typed form (SPEC §2.9).
//! Plain data: the `gunyah-abi` crate turns them into the run page.

/// `exit_info.type` values lendvm reports (numbered as crosvm's Gunyah
/// backend reads them).
pub mod exit_kind {
    /// The guest asked to stop (native exit port).
    pub const VM_EXIT: u16 = 0;
    /// Power off (KVM system event).
    pub const POWER_OFF: u16 = 1;
    /// Reset (i8042 reset line or KVM system event).
    pub const RESET: u16 = 2;
    /// lendvm stopped the VM itself, e.g. because nobody can read its
    /// console any more (Gunyah's `VM_FORCE_STOPPED`).
    pub const FORCE_STOPPED: u16 = 7;
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
    /// An access lendvm cannot complete on the guest's behalf: private
    /// memory outside lendvm's native mode (no access vCPU can reach it).
    Uncompletable {
        /// The guest physical address.
        gpa: u64,
    },
    /// KVM_RUN failed with this errno (a host failure, not the guest's).
    KvmRunFailed {
        /// The errno.
        errno: i32,
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
    /// a read, supply the bytes with [`Vcpu::set_mmio_data`](crate::Vcpu::set_mmio_data).
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
