//! Resuming after an exit the caller saw: the resume action applied to
//! what the exit left pending (SPEC ), and FAULT as a page fault
//! injected into the guest (DESIGN D7).

use kvm_bindings::kvm_vcpu_events;
use kvm_ioctls::VcpuExit;

use super::decode::Event;
use super::{CoreState, Pending, ResumeAction, Vcpu, set_kvm_mmio_data};
use crate::error::{Error, Result};
use crate::memory::wipe_regs;
use crate::vm::Counters;

/// What resuming decided.
pub(super) enum Resumed {
    /// The access is still unresolved: report this exit (again).
    Exit(super::Exit),
    /// Go on running, starting with this event if KVM already had one.
    Continue(Option<Event>),
}

/// How a guest access faulted, for the #PF error code.
#[derive(Debug, Clone, Copy)]
struct FaultKind {
    gpa: u64,
    /// The memory is bound but refused (-EPERM): the page is "present".
    present: bool,
    write: bool,
    fetch: bool,
    /// A load KVM is still waiting to complete: put the guest back at the
    /// instruction.
    rewind: bool,
}

impl Vcpu {
    /// Apply the resume action to what the last exit left pending.
    pub(super) fn resume_pending(&mut self, st: &mut CoreState) -> Result<Resumed> {
        let pending = std::mem::replace(&mut st.pending, Pending::None);
        let action = self.resume;
        let mut next = None;
        let exit = match pending {
            Pending::None => None,
            Pending::Down(status) => {
                st.pending = Pending::Down(status);
                return Ok(Resumed::Exit(super::Exit::Status(status)));
            }
            Pending::Read { frag, fault } => match action {
                ResumeAction::Fault => {
                    self.inject_fault(
                        st,
                        FaultKind {
                            gpa: frag.gpa,
                            present: fault == Some(-libc::EPERM),
                            write: false,
                            fetch: false,
                            rewind: true,
                        },
                    )?;
                    None
                }
                ResumeAction::Handled if fault.is_none() => {
                    set_kvm_mmio_data(&mut st.fd, &self.mmio_data[..frag.len]);
                    next = self.finish_io(st);
                    None
                }
                // HANDLED after a page fault means "memory was provided":
                // the same as RETRY on KVM.
                _ => self.on_read(st, frag, &mut next)?,
            },
            Pending::Writes {
                mut frags,
                at,
                fault,
            } => match action {
                ResumeAction::Fault => {
                    let gpa = frags[at].gpa;
                    drop(frags);
                    self.inject_fault(
                        st,
                        FaultKind {
                            gpa,
                            present: fault == Some(-libc::EPERM),
                            write: true,
                            fetch: false,
                            rewind: false,
                        },
                    )?;
                    None
                }
                ResumeAction::Handled if fault.is_none() => {
                    // The device took that store; the rest go on.
                    frags.remove(at);
                    self.drive_writes(st, frags)?
                }
                _ => self.drive_writes(st, frags)?,
            },
            Pending::Fetch { gpa, attempt } => match action {
                ResumeAction::Fault => {
                    self.inject_fault(
                        st,
                        FaultKind {
                            gpa,
                            present: attempt == -libc::EPERM,
                            write: false,
                            fetch: true,
                            rewind: false,
                        },
                    )?;
                    None
                }
                // RIP has not moved: entering the guest fetches again.
                _ => None,
            },
        };
        Ok(match exit {
            Some(exit) => Resumed::Exit(exit),
            None => Resumed::Continue(next),
        })
    }

    /// Finish whatever KVM still has of the faulting instruction without
    /// letting it reach memory (loads get zeros, stores are dropped), put a
    /// load back at its instruction, then queue #PF (vector 14) with CR2 =
    /// the guest physical address.
    fn inject_fault(&mut self, st: &mut CoreState, f: FaultKind) -> Result<()> {
        if f.rewind {
            self.rewind_instruction(st)?;
        } else {
            self.flush_instruction(st);
        }
        let mut events: kvm_vcpu_events = st
            .fd
            .get_vcpu_events()
            .map_err(|e| Error::kvm("KVM_GET_VCPU_EVENTS", e))?;
        events.exception.injected = 0;
        events.exception.pending = 1;
        events.exception.nr = 14;
        events.exception.has_error_code = 1;
        // P (present but refused), W (write), U (user mode), I (fetch).
        events.exception.error_code =
            u32::from(f.present) | (u32::from(f.write) << 1) | (1 << 2) | (u32::from(f.fetch) << 4);
        if self.vm.exception_payload {
            events.exception_has_payload = 1;
            events.exception_payload = f.gpa;
            events.flags |= kvm_bindings::KVM_VCPUEVENT_VALID_PAYLOAD;
        } else {
            let mut sregs = st
                .fd
                .get_sregs()
                .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
            sregs.cr2 = f.gpa;
            st.fd
                .set_sregs(&sregs)
                .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        }
        st.fd
            .set_vcpu_events(&events)
            .map_err(|e| Error::kvm("KVM_SET_VCPU_EVENTS", e))?;
        Counters::bump(&self.vm.counters.injected_faults);
        Ok(())
    }

    /// Put the guest back at the start of an instruction whose load KVM is
    /// still waiting to complete: its registers (and FPU/SSE state, for SSE
    /// loads) are saved, KVM's half of the instruction is finished without
    /// reaching memory, then the saved state comes back. Only a store of a
    /// memory-to-memory instruction (`movs`, `push [m]`) to memory KVM
    /// reaches itself can land meanwhile; running the instruction again
    /// rewrites it.
    pub(super) fn rewind_instruction(&mut self, st: &mut CoreState) -> Result<()> {
        let mut regs = st
            .fd
            .get_regs()
            .map_err(|e| Error::kvm("KVM_GET_REGS", e))?;
        let mut xsave = st
            .fd
            .get_xsave()
            .map_err(|e| Error::kvm("KVM_GET_XSAVE", e))?;
        self.flush_instruction(st);
        // SAFETY: `xsave` came from KVM_GET_XSAVE on this vCPU, so it is a
        // complete, valid state of the size KVM expects.
        let restored = unsafe { st.fd.set_xsave(&xsave) }
            .map_err(|e| Error::kvm("KVM_SET_XSAVE", e))
            .and_then(|()| {
                st.fd
                    .set_regs(&regs)
                    .map_err(|e| Error::kvm("KVM_SET_REGS", e))
            });
        wipe_regs(&mut regs);
        // The FPU/SSE registers may hold guest data too (DESIGN D11).
        // SAFETY: `kvm_xsave` is plain data; viewing it as bytes is valid.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&raw mut xsave).cast::<u8>(),
                std::mem::size_of::<kvm_bindings::kvm_xsave>(),
            )
        };
        crate::memory::wipe(bytes);
        restored
    }

    /// Run KVM with `immediate_exit` until it has nothing of the current
    /// instruction left: loads are answered with zeros, stores dropped.
    fn flush_instruction(&mut self, st: &mut CoreState) {
        st.fd.set_kvm_immediate_exit(1);
        for _ in 0..64 {
            match st.fd.run() {
                Ok(VcpuExit::MmioRead(_, data)) => data.fill(0),
                Ok(VcpuExit::MmioWrite(..)) => {}
                _ => break,
            }
        }
        st.fd.set_kvm_immediate_exit(0);
        super::wipe_kvm_mmio_data(&mut st.fd);
    }
}
