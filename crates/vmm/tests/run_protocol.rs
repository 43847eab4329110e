//! The vCPU run protocol (SPEC §2.9) and VM lifecycle with a real guest.

use binding::{Access, Perms};
use test_guests::holding_cell::{Cell, CellError, protocol::*};
use test_guests::testing::*;
use vmm::{BindRequest, Crash, Exit, GuestAddress, Status, exit_kind};

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
    // SPEC F-4: no exit was ever produced (the run page shows UNKNOWN:
    // gunyah-abi's run_page tests).
    assert_eq!(vcpu.last_exit(), None);
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
    vcpu.set_immediate_exit(true);
    assert_eq!(vcpu.run().unwrap_err().errno(), libc::EINTR);
    assert_eq!(vcpu.run().unwrap_err().errno(), libc::EINTR);
    assert_eq!(g.vm.metrics().kvm_exits, 0, "the guest never ran");
    vcpu.set_immediate_exit(false);
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
    // Later runs report the same status (the run page is not rewritten:
    // gunyah-abi's run_page tests).
    assert_eq!(
        status(vcpu.run().unwrap()),
        Status::Crashed(Crash::TripleFault)
    );
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
    assert_eq!(&info.reason[..4], &0x1234_5678u32.to_le_bytes());
    assert_eq!(status(v1.run().unwrap()), Status::Exited(info));
    // SPEC B-VM-3.1: START on an exited VM is ENODEV.
    assert_eq!(g.vm.start().unwrap_err().errno(), libc::ENODEV);
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
        let g = guest_on(dev.clone());
        g.vm.bind(&BindRequest::new(
            &shared,
            GuestAddress(DATA),
            0,
            1 << 20,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        g.vm.bind(&BindRequest::new(
            &lent,
            GuestAddress(DATA + (1 << 20)),
            0,
            1 << 20,
            Access::Lend,
            Perms::RW,
        ))
        .unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.fill(DATA, 2 << 20, 0x5a).unwrap();
        assert!(lent.read_at(0, &mut [0u8; 8]).is_err());
        // The files' handles outlive this VM.
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
    vm2.bind(&BindRequest::new(
        &lent,
        GuestAddress(0x4000_0000),
        0,
        1 << 20,
        Access::Lend,
        Perms::RW,
    ))
    .unwrap();
    vm2.bind(&BindRequest::new(
        &shared,
        GuestAddress(0x5000_0000),
        0,
        1 << 20,
        Access::Share,
        Perms::RW,
    ))
    .unwrap();
}
