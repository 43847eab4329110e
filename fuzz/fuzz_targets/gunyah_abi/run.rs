//! VCPU_RUN on a run page whose inputs are fuzz bytes: `immediate_exit`
//! set for three runs in four; the others under a watchdog that kicks the
//! vCPU, so no guest (a never-loaded one faults or crashes, a looping one
//! is interrupted) holds an input for long.

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use uapi::{
    GUNYAH_VCPU_EXIT_MMIO, GUNYAH_VCPU_EXIT_PAGE_FAULT, GUNYAH_VCPU_EXIT_STATUS,
    GUNYAH_VCPU_RESUME_FAULT, GUNYAH_VCPU_RESUME_HANDLED, GUNYAH_VM_STATUS_CRASHED,
    GUNYAH_VM_STATUS_LOAD_FAILED, gunyah_vcpu_run, gunyah_vcpu_run_mmio,
    gunyah_vcpu_run_page_fault,
};
use vmm::{Exit, Status, Vcpu};

use crate::check::{Expect, Request, check_result};
use crate::harness::{Harness, Started, VM_SLOTS};

/// How long a run without `immediate_exit` may take before the watchdog
/// kicks it (EINTR).
const RUN_LIMIT: Duration = Duration::from_millis(20);

/// Written into `exit_reason` before a run of a system-down vCPU, which
/// must leave the page alone (SPEC R-9).
const UNTOUCHED: u32 = 0xdead_beef;

impl Harness {
    pub fn run(&mut self, vm: u8, vcpu: u8, free: bool, resume: u8, data: [u8; 8], garbage: u64) {
        let notes = self.notes;
        let Some(slot) = self.vms[usize::from(vm) % VM_SLOTS].as_mut() else {
            return;
        };
        if slot.vcpus.is_empty() {
            return;
        }
        let started = slot.started;
        let n = slot.vcpus.len();
        let v = &mut slot.vcpus[usize::from(vcpu) % n];
        let last = v.vcpu.last_exit();
        let down = matches!(last, Some(Exit::Status(_)));
        // The page's inputs, and garbage where the exit state was: lendvm
        // keeps its own copy (SPEC R-1). Both resume fields get `resume`.
        let mut data = data;
        data[4] = resume;
        v.page.immediate_exit = u8::from(!free);
        v.page.exit.page_fault = gunyah_vcpu_run_page_fault {
            phys_addr: garbage,
            attempt: garbage as i32,
            resume_action: resume,
        };
        v.page.exit.mmio = gunyah_vcpu_run_mmio {
            phys_addr: garbage,
            data,
            len: (garbage >> 8) as u32,
            is_write: (garbage >> 40) as u8,
            resume_action: resume,
        };
        if down {
            v.page.exit_reason = UNTOUCHED;
        }
        let resumable = matches!(last, Some(Exit::Mmio { .. } | Exit::PageFault { .. }));
        let expect = if down {
            Expect::Ok
        } else if started == Started::Never {
            // SPEC R-2.
            Expect::Errno(libc::ENODEV)
        } else if resumable && resume > 2 {
            // SPEC: not entered.
            Expect::Errno(libc::EINVAL)
        } else {
            Expect::Allowed
        };
        let r = if free {
            run_watched(&mut v.vcpu, &mut v.page)
        } else {
            gunyah_abi::vcpu_run(&mut v.vcpu, &mut v.page)
        };
        notes.result(Request::VcpuRun, &r);
        check_result(
            Request::VcpuRun,
            expect,
            &r,
            &(v.vcpu.id(), last, free, resume),
        );
        if r.is_err() {
            return;
        }
        let page = &v.page;
        if down {
            assert_eq!(
                page.exit_reason, UNTOUCHED,
                "a system-down vCPU rewrote its run page (SPEC R-9)"
            );
            return;
        }
        notes.stats.exit(v.vcpu.last_exit());
        if notes.trace {
            eprintln!("  exit: {:?}", v.vcpu.last_exit());
        }
        match page.exit_reason {
            GUNYAH_VCPU_EXIT_MMIO => {
                // SAFETY: plain data; `exit_reason` says which member is live.
                let m = unsafe { page.exit.mmio };
                assert!((1..=8).contains(&m.len), "MMIO exit of length {}", m.len);
                assert_eq!(m.resume_action, GUNYAH_VCPU_RESUME_HANDLED, "SPEC R-7");
            }
            GUNYAH_VCPU_EXIT_PAGE_FAULT => {
                // SAFETY: as above.
                let pf = unsafe { page.exit.page_fault };
                assert!(
                    [-libc::ENOENT, -libc::EPERM].contains(&pf.attempt),
                    "page fault attempt {}",
                    pf.attempt
                );
                assert_eq!(pf.resume_action, GUNYAH_VCPU_RESUME_FAULT, "SPEC R-5");
            }
            GUNYAH_VCPU_EXIT_STATUS => {
                // SAFETY: as above.
                let s = unsafe { page.exit.status };
                assert!(
                    (GUNYAH_VM_STATUS_LOAD_FAILED..=GUNYAH_VM_STATUS_CRASHED).contains(&s.status),
                    "status {}",
                    s.status
                );
                if started == Started::Failed {
                    assert_eq!(
                        s.status, GUNYAH_VM_STATUS_LOAD_FAILED,
                        "a VM whose START failed"
                    );
                }
            }
            other => panic!("VCPU_RUN succeeded with exit_reason {other}"),
        }
        // SPEC R-4: with immediate_exit set only a stopped VM answers 0.
        if !free {
            assert!(
                matches!(v.vcpu.last_exit(), Some(Exit::Status(_))),
                "immediate_exit was set, yet the vCPU returned {:?}",
                v.vcpu.last_exit()
            );
        }
        if started == Started::Failed {
            assert_eq!(v.vcpu.last_exit(), Some(Exit::Status(Status::LoadFailed)));
        }
    }
}

/// VCPU_RUN with `immediate_exit` clear: a watchdog thread kicks the vCPU
/// after [`RUN_LIMIT`] unless the run ended first.
fn run_watched(vcpu: &mut Vcpu, page: &mut gunyah_vcpu_run) -> vmm::Result<()> {
    let kicker = vcpu.kicker();
    let (done, wait) = channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if wait.recv_timeout(RUN_LIMIT) == Err(RecvTimeoutError::Timeout) {
                kicker.kick();
            }
        });
        let r = gunyah_abi::vcpu_run(vcpu, page);
        drop(done);
        r
    })
}
