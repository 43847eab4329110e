//! KVM exits as events of lendvm's run loop: a pure function of what
//! `KVM_RUN` returned, so every mapping is unit-tested without a VM.
//! (Port I/O is answered by the port bus while KVM's buffer is borrowed,
//! so the run loop handles it before calling [`decode`].)

use kvm_ioctls::VcpuExit;

use super::exit::{Crash, ExitInfo, Status, exit_kind};
use crate::memory::Fragment;

/// What one return from `KVM_RUN` means to lendvm.
#[derive(Debug)]
pub(crate) enum Event {
    /// A guest load KVM could not serve from a memslot.
    Read(Fragment),
    /// A guest store KVM could not serve from a memslot (already retired
    /// in KVM: the instruction completed).
    Write(Fragment),
    /// A port access the bus handled (`true`) or nobody answers.
    Port(bool),
    /// The VM stops.
    Stop(Status),
    /// KVM's emulator failed, e.g. fetching an instruction from memory
    /// not yet given to the guest.
    InternalError,
    /// KVM could not fault in guest_memfd memory at this address.
    MemoryFault(u64),
    /// `KVM_RUN` returned without an exit (a signal or immediate_exit).
    Interrupted,
}

/// The event for one `KVM_RUN` result.
pub(crate) fn decode(r: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Event {
    let exit = match r {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            return Event::Interrupted;
        }
        Err(e) => {
            return Event::Stop(Status::Crashed(Crash::KvmRunFailed { errno: e.errno() }));
        }
    };
    match exit {
        VcpuExit::MmioRead(gpa, data) => Event::Read(Fragment::read(gpa, data.len())),
        VcpuExit::MmioWrite(gpa, data) => Event::Write(Fragment::write(gpa, data)),
        VcpuExit::Shutdown => Event::Stop(Status::Crashed(Crash::TripleFault)),
        VcpuExit::InternalError => Event::InternalError,
        VcpuExit::FailEntry(reason, _) => {
            Event::Stop(Status::Crashed(Crash::EntryFailure { reason }))
        }
        VcpuExit::SystemEvent(kind, _) => Event::Stop(system_event(kind)),
        VcpuExit::Hlt => Event::Stop(Status::Exited(ExitInfo {
            kind: exit_kind::POWER_OFF,
            reason: [0; 8],
            reason_size: 0,
        })),
        VcpuExit::MemoryFault { gpa, .. } => Event::MemoryFault(gpa),
        VcpuExit::Intr => Event::Interrupted,
        other => Event::Stop(Status::Crashed(Crash::UnexpectedExit {
            reason: exit_number(&other),
        })),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_exits_become_fragments_of_at_most_eight_bytes() {
        let mut buf = [0u8; 4];
        match decode(Ok(VcpuExit::MmioRead(0x1000, &mut buf))) {
            Event::Read(f) => assert_eq!((f.gpa, f.len, f.is_write), (0x1000, 4, false)),
            other => panic!("{other:?}"),
        }
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        match decode(Ok(VcpuExit::MmioWrite(0x2ffc, &data))) {
            Event::Write(f) => {
                assert_eq!((f.gpa, f.len, f.is_write), (0x2ffc, 8, true));
                assert_eq!(f.bytes(), &data[..8]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stops_carry_the_status_the_spec_names() {
        let cases = [
            (VcpuExit::Shutdown, Status::Crashed(Crash::TripleFault)),
            (
                VcpuExit::FailEntry(7, 0),
                Status::Crashed(Crash::EntryFailure { reason: 7 }),
            ),
            (
                VcpuExit::Hlt,
                Status::Exited(ExitInfo {
                    kind: exit_kind::POWER_OFF,
                    reason: [0; 8],
                    reason_size: 0,
                }),
            ),
            (
                VcpuExit::Unsupported(99),
                Status::Crashed(Crash::UnexpectedExit { reason: 99 }),
            ),
        ];
        for (exit, want) in cases {
            match decode(Ok(exit)) {
                Event::Stop(s) => assert_eq!(s, want),
                other => panic!("{other:?}"),
            }
        }
        let reset = decode(Ok(VcpuExit::SystemEvent(
            kvm_bindings::KVM_SYSTEM_EVENT_RESET,
            &[],
        )));
        assert!(matches!(
            reset,
            Event::Stop(Status::Exited(ExitInfo {
                kind: exit_kind::RESET,
                ..
            }))
        ));
        assert!(matches!(
            decode(Ok(VcpuExit::SystemEvent(99, &[]))),
            Event::Stop(Status::Crashed(Crash::GuestReported))
        ));
    }

    #[test]
    fn interruptions_and_failures_are_told_apart() {
        let eintr = kvm_ioctls::Error::new(libc::EINTR);
        assert!(matches!(decode(Err(eintr)), Event::Interrupted));
        assert!(matches!(decode(Ok(VcpuExit::Intr)), Event::Interrupted));
        let efault = kvm_ioctls::Error::new(libc::EFAULT);
        assert!(matches!(
            decode(Err(efault)),
            Event::Stop(Status::Crashed(Crash::KvmRunFailed {
                errno: libc::EFAULT
            }))
        ));
        assert!(matches!(
            decode(Ok(VcpuExit::MemoryFault {
                flags: 0,
                gpa: 0x5000,
                size: 0x1000
            })),
            Event::MemoryFault(0x5000)
        ));
        assert!(matches!(
            decode(Ok(VcpuExit::InternalError)),
            Event::InternalError
        ));
    }
}
