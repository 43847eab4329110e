//! VCPU_RUN on the Gunyah run page (SPEC §1.5, R-1..R-9): the page's inputs
//! (immediate_exit, the resume action, MMIO read data) go to lendvm's typed
//! vCPU, its exit comes back as the page's `exit_reason` and union. The
//! exit state itself lives in lendvm's vCPU (SPEC R-1), never in the page.

use uapi::{
    GUNYAH_VCPU_EXIT_MMIO, GUNYAH_VCPU_EXIT_PAGE_FAULT, GUNYAH_VCPU_EXIT_STATUS,
    GUNYAH_VCPU_RESUME_FAULT, GUNYAH_VCPU_RESUME_HANDLED, GUNYAH_VCPU_RESUME_RETRY,
    GUNYAH_VM_STATUS_CRASHED, GUNYAH_VM_STATUS_EXITED, GUNYAH_VM_STATUS_LOAD_FAILED,
    gunyah_vcpu_run, gunyah_vcpu_run_mmio, gunyah_vcpu_run_page_fault, gunyah_vcpu_run_status,
    gunyah_vm_exit_info,
};
use vmm::{Exit, ResumeAction, Status, Vcpu};

use crate::{Error, Result};

fn resume_action(raw: u8) -> Result<ResumeAction> {
    match raw {
        GUNYAH_VCPU_RESUME_HANDLED => Ok(ResumeAction::Handled),
        GUNYAH_VCPU_RESUME_FAULT => Ok(ResumeAction::Fault),
        GUNYAH_VCPU_RESUME_RETRY => Ok(ResumeAction::Retry),
        action => Err(Error::BadResumeAction { action }),
    }
}

/// VCPU_RUN: run `vcpu` with the inputs of `page` and write its exit into
/// it. Once the VM has stopped, returns at once without touching the page
/// (SPEC R-9). A bad resume action is EINVAL and the vCPU is not entered
/// (SPEC R-8).
pub fn vcpu_run(vcpu: &mut Vcpu, page: &mut gunyah_vcpu_run) -> Result<()> {
    if let Some(Exit::Status(_)) = vcpu.last_exit() {
        return Ok(());
    }
    match vcpu.last_exit() {
        Some(Exit::Mmio { len, is_write, .. }) => {
            // SAFETY: plain data; any bit pattern of the union is valid.
            let m = unsafe { page.exit.mmio };
            vcpu.set_resume(resume_action(m.resume_action)?);
            if !is_write {
                vcpu.set_mmio_data(&m.data[..(len as usize).min(8)]);
            }
        }
        Some(Exit::PageFault { .. }) => {
            // SAFETY: as above.
            let pf = unsafe { page.exit.page_fault };
            vcpu.set_resume(resume_action(pf.resume_action)?);
        }
        _ => {}
    }
    vcpu.set_immediate_exit(page.immediate_exit != 0);
    match vcpu.run()? {
        Exit::Mmio {
            phys_addr,
            data,
            len,
            is_write,
        } => {
            page.exit_reason = GUNYAH_VCPU_EXIT_MMIO;
            page.exit.mmio = gunyah_vcpu_run_mmio {
                phys_addr,
                data,
                len,
                is_write: u8::from(is_write),
                resume_action: GUNYAH_VCPU_RESUME_HANDLED,
            };
        }
        Exit::PageFault {
            phys_addr, attempt, ..
        } => {
            page.exit_reason = GUNYAH_VCPU_EXIT_PAGE_FAULT;
            page.exit.page_fault = gunyah_vcpu_run_page_fault {
                phys_addr,
                attempt,
                // SPEC R-5: pre-set to FAULT.
                resume_action: GUNYAH_VCPU_RESUME_FAULT,
            };
        }
        Exit::Status(status) => {
            let (code, info) = match status {
                Status::LoadFailed => {
                    (GUNYAH_VM_STATUS_LOAD_FAILED, gunyah_vm_exit_info::default())
                }
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
            page.exit_reason = GUNYAH_VCPU_EXIT_STATUS;
            page.exit.status = gunyah_vcpu_run_status {
                status: code,
                exit_info: info,
            };
        }
    }
    Ok(())
}

/// [`vcpu_run`] in ioctl form: 0, or `-errno`.
pub fn vcpu_run_raw(vcpu: &mut Vcpu, page: &mut gunyah_vcpu_run) -> i32 {
    match vcpu_run(vcpu, page) {
        Ok(()) => 0,
        Err(e) => e.to_ret(),
    }
}
