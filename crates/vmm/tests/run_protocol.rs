//! The vCPU run protocol (SPEC §2.9) and VM lifecycle with a real guest.

mod common;

use binding::{Access, Perms};
use common::*;
use vmm::holding_cell::{Cell, CellError, protocol::*};
use vmm::{Crash, Exit, ResumeAction, Status, exit_kind};

fn status(exit: Exit) -> Status {
    match exit {
        Exit::Status(s) => s,
        other => panic!("expected a status exit, got {other:?}"),
    }
}

// SPEC R-2.
#[test]
fn run_before_start_is_enodev_and_enters_nothing() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    let err = vcpu.run().unwrap_err();
    assert_eq!(err.errno(), libc::ENODEV, "{err}");
    assert_eq!(vcpu.run_raw(), -libc::ENODEV);
    // SPEC F-4: the run page still shows UNKNOWN.
    assert_eq!(vcpu.page().exit_reason, uapi::GUNYAH_VCPU_EXIT_UNKNOWN);
    g.vm.start().unwrap();
    assert_eq!(Cell::new(&mut vcpu).ping().unwrap(), PING_REPLY);
}

// SPEC R-2, F-3: a removed vCPU's handle is ENODEV; the id can be added
// again and runs from the boot state.
#[test]
fn removed_vcpu_is_enodev_and_can_be_added_again() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    assert_eq!(Cell::new(&mut vcpu).ping().unwrap(), PING_REPLY);
    g.vm.remove_vcpu(0).unwrap();
    assert_eq!(vcpu.run().unwrap_err().errno(), libc::ENODEV);
    let mut again = g.vm.add_vcpu(0).unwrap();
    // The old handle stays dead even though the id lives again.
    assert_eq!(vcpu.run().unwrap_err().errno(), libc::ENODEV);
    assert_eq!(Cell::new(&mut again).ping().unwrap(), PING_REPLY);
}

// SPEC R-4.
#[test]
fn immediate_exit_returns_eintr_without_entering_the_guest() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    vcpu.page_mut().immediate_exit = 1;
    assert_eq!(vcpu.run().unwrap_err().errno(), libc::EINTR);
    assert_eq!(vcpu.run_raw(), -libc::EINTR);
    assert_eq!(g.vm.metrics().kvm_exits, 0, "the guest never ran");
    vcpu.page_mut().immediate_exit = 0;
    assert_eq!(Cell::new(&mut vcpu).ping().unwrap(), PING_REPLY);
}

// SPEC R-4: a kick from another thread ends a running vCPU's run with EINTR.
#[test]
fn a_kick_from_another_thread_interrupts_a_running_guest() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let kicker = vcpu.kicker();
    let mut cell = Cell::new(&mut vcpu);
    cell.ping().unwrap();
    // The guest spins for minutes unless interrupted.
    cell.send(CMD_SPIN, &[u64::MAX]).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        kicker.kick();
    });
    let started = std::time::Instant::now();
    match cell.finish() {
        Err(CellError::Vm(e)) => assert_eq!(e.errno(), libc::EINTR),
        other => panic!("expected EINTR, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    t.join().unwrap();
}

// SPEC R-8: a resume action other than 0..2 is EINVAL and the vCPU stays
// in the pending-MMIO state.
#[test]
fn bad_resume_action_is_einval_and_keeps_the_exit_pending() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    cell.send(CMD_READ, &[DEVICE, 8]).unwrap();
    assert!(matches!(
        cell.finish(),
        Err(CellError::Exit(Exit::Mmio { .. }))
    ));
    let exits = g.vm.metrics().kvm_exits;
    for bad in [3u8, 7, 0xff] {
        let mut m = unsafe_mmio(cell.vcpu().page());
        m.resume_action = bad;
        cell.vcpu().page_mut().exit.mmio = m;
        assert_eq!(cell.vcpu().run().unwrap_err().errno(), libc::EINVAL);
    }
    assert_eq!(g.vm.metrics().kvm_exits, exits, "the guest was not entered");
    cell.vcpu().set_mmio_data(&0x77u64.to_le_bytes());
    cell.vcpu().set_resume(ResumeAction::Handled);
    assert_eq!(cell.finish().unwrap(), 0x77);
    // The same holds for a page fault's resume action.
    cell.send(CMD_READ, &[UNBOUND, 8]).unwrap();
    assert!(matches!(
        cell.finish(),
        Err(CellError::Exit(Exit::PageFault { .. }))
    ));
    // SAFETY: the exit reason says page_fault is the live member.
    let mut pf = unsafe { cell.vcpu().page().exit.page_fault };
    pf.resume_action = 9;
    cell.vcpu().page_mut().exit.page_fault = pf;
    assert_eq!(cell.vcpu().run().unwrap_err().errno(), libc::EINVAL);
    cell.vcpu().set_resume(ResumeAction::Fault);
    assert_eq!(cell.finish().unwrap(), FAULTED | 14);
}

fn unsafe_mmio(page: &uapi::gunyah_vcpu_run) -> uapi::gunyah_vcpu_run_mmio {
    // SAFETY: plain-data union member.
    unsafe { page.exit.mmio }
}

// SPEC R-9 / DESIGN §5: a triple fault ends the VM CRASHED, never a panic;
// later runs report the same status without touching the run page.
#[test]
fn triple_fault_ends_crashed_and_the_vcpu_stays_down() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    cell.send(CMD_TRIPLE_FAULT, &[]).unwrap();
    let exit = cell.vcpu().run().unwrap();
    assert_eq!(status(exit), Status::Crashed(Crash::TripleFault));
    // SAFETY: exit_reason says status is the live member.
    let st = unsafe { vcpu.page().exit.status };
    assert_eq!(vcpu.page().exit_reason, uapi::GUNYAH_VCPU_EXIT_STATUS);
    assert_eq!(st.status, uapi::GUNYAH_VM_STATUS_CRASHED);
    // The page is not rewritten by later runs (SPEC R-9).
    vcpu.page_mut().exit_reason = 0x55;
    assert_eq!(
        status(vcpu.run().unwrap()),
        Status::Crashed(Crash::TripleFault)
    );
    assert_eq!(vcpu.page().exit_reason, 0x55);
    assert_eq!(g.vm.status(), Some(Status::Crashed(Crash::TripleFault)));
}

// SPEC R-9: a guest-requested exit reaches every vCPU, including one added
// after START that never ran (TV unclaimed_vcpu_exit).
#[test]
fn exit_port_ends_the_vm_for_every_vcpu() {
    let Some(g) = guest() else { return };
    let mut v0 = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut v1 = g.vm.add_vcpu(1).unwrap();
    let exit = Cell::new(&mut v0).exit(0x1234_5678).unwrap();
    let Status::Exited(info) = status(exit) else {
        panic!("expected EXITED, got {exit:?}")
    };
    assert_eq!(
        (info.kind, info.code(), info.reason_size),
        (exit_kind::VM_EXIT, 0x1234_5678, 4)
    );
    // SAFETY: exit_reason says status is the live member.
    let st = unsafe { v0.page().exit.status };
    assert_eq!(st.status, uapi::GUNYAH_VM_STATUS_EXITED);
    assert_eq!(st.exit_info.reason_size, 4);
    assert_eq!(&st.exit_info.reason[..4], &0x1234_5678u32.to_le_bytes());
    assert_eq!(status(v1.run().unwrap()), Status::Exited(info));
    // START on an exited VM keeps succeeding as a no-op (it is RUNNING).
    g.vm.start().unwrap();
}

// SPEC R-9: after a failed START every run reports LOAD_FAILED.
#[test]
fn failed_start_makes_runs_report_load_failed() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let mut vcpu = vm.add_vcpu(0).unwrap();
    // No DTB: START fails (SPEC B-VM-3) and the VM is unusable.
    assert_eq!(vm.start().unwrap_err().errno(), libc::EINVAL);
    assert_eq!(vm.start().unwrap_err().errno(), libc::ENODEV);
    assert_eq!(status(vcpu.run().unwrap()), Status::LoadFailed);
    // SAFETY: exit_reason says status is the live member.
    let st = unsafe { vcpu.page().exit.status };
    assert_eq!(st.status, uapi::GUNYAH_VM_STATUS_LOAD_FAILED);
}

// DESIGN D9: unknown ports are counted and ignored; reads return ones.
#[test]
fn unknown_port_io_is_counted_and_ignored() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    assert_eq!(cell.command(CMD_PORT_OUT, &[0x80, 0x12, 1]).unwrap(), 0);
    assert_eq!(cell.command(CMD_PORT_IN, &[0x1234, 2]).unwrap(), 0xffff);
    assert_eq!(cell.command(CMD_PORT_IN, &[0x71, 4]).unwrap(), 0xffff_ffff);
    assert_eq!(g.vm.metrics().unknown_port_io, 3);
    // The console port is a built-in device.
    // Console output is line-buffered per vCPU.
    let msg = b"hello, console\n";
    let text = g.bound(FileKind::Memfd, DATA, 4096, Access::Share);
    text.write_at(0, msg).unwrap();
    assert_eq!(
        cell.command(CMD_PRINT, &[DATA, msg.len() as u64]).unwrap(),
        0
    );
    assert_eq!(g.console.lock().unwrap().as_slice(), msg);
    assert_eq!(g.vm.metrics().port_io, msg.len() as u64);
}

// DESIGN §6 invariant 5, SPEC B-VM-8: teardown returns every page (lent
// ones zeroed) and every file range becomes bindable again.
#[test]
fn teardown_returns_every_page_and_frees_every_file_range() {
    let Some(dev) = device() else { return };
    let shared = dev.create_guest_mem(1 << 20, 0).unwrap();
    let lent = dev.create_guest_mem(1 << 20, 0).unwrap();
    {
        let Some(g) = guest() else { return };
        g.vm.bind(&shared, DATA, 0, 1 << 20, Access::Share, Perms::RW)
            .unwrap();
        g.vm.bind(&lent, DATA + (1 << 20), 0, 1 << 20, Access::Lend, Perms::RW)
            .unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.fill(DATA, 2 << 20, 0x5a).unwrap();
        assert!(lent.read_at(0, &mut [0u8; 8]).is_err());
        // The handles of other devices' files outlive this VM.
    }
    for f in [&shared, &lent] {
        assert_eq!(
            f.page_states(0, 1 << 20).unwrap(),
            vec![(0..1 << 20, gmem::PageState::Host)]
        );
    }
    let mut b = [0u8; 4];
    shared.read_at(100, &mut b).unwrap();
    assert_eq!(b, [0x5a; 4], "shared pages keep their content (D5)");
    lent.read_at(100, &mut b).unwrap();
    assert_eq!(b, [0; 4], "lent pages come back zeroed (D5)");
    // The ranges are free: another VM of the same device binds them.
    let vm2 = dev.create_vm().unwrap();
    vm2.bind(&lent, 0x4000_0000, 0, 1 << 20, Access::Lend, Perms::RW)
        .unwrap();
    vm2.bind(&shared, 0x5000_0000, 0, 1 << 20, Access::Share, Perms::RW)
        .unwrap();
}
