//! What the VM manager offers the Gunyah compat profile (DESIGN D13):
//! resizable guest memory files and START with the caller's own rules.

use std::sync::atomic::{AtomicBool, Ordering};

use binding::{Access, Perms};
use test_guests::testing::*;
use vmm::{BindRequest, Error, Exit, GuestAddress, Status};

const M: u64 = 1 << 20;
const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;

fn errno<T>(r: vmm::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

// SPEC GM-7 with Gunyah's resizable files; B-ADD-8 against the current size.
#[test]
fn a_resizable_file_binds_up_to_its_current_size_and_keeps_bound_ranges() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let mem = dev.create_resizable_guest_mem(4 * M, 1 << 30, 0).unwrap();
    assert_eq!(mem.current_size(), 4 * M);
    let bind = |off: u64| {
        vm.bind(&BindRequest::new(
            &mem,
            GuestAddress(0x8000_0000 + off),
            off,
            M,
            Access::Share,
            Perms::RWX,
        ))
    };
    assert_eq!(errno(bind(4 * M)), libc::EINVAL, "past the end of the file");
    mem.resize(100 * M).unwrap();
    assert_eq!(mem.current_size(), 100 * M);
    bind(50 * M).unwrap();
    // Not below the binding's end (SPEC GM-7: EBUSY), and nothing changes.
    assert_eq!(errno(mem.resize(51 * M - 4096)), libc::EBUSY);
    assert_eq!(mem.current_size(), 100 * M);
    mem.resize(51 * M).unwrap();
    // Past the capacity: the kernel's EFBIG, and the size stays.
    assert_eq!(errno(mem.resize(2 << 30)), libc::EFBIG);
    assert_eq!(mem.current_size(), 51 * M);
    // fallocate follows the current size.
    mem.fallocate_current(KEEP, 50 * M, M).unwrap();
    assert_eq!(errno(mem.fallocate_current(KEEP, 51 * M, M)), libc::EINVAL);
}

#[test]
fn lendvms_own_guest_memory_files_keep_their_size() {
    let Some(dev) = device() else { return };
    let mem = dev.create_guest_mem(4 * M, 0).unwrap();
    assert_ne!(errno(mem.resize(8 * M)), 0);
    assert_ne!(errno(mem.resize(2 * M)), 0);
    assert_eq!(mem.current_size(), 4 * M);
}

// SPEC B-VM-3.3: a refused START leaves the VM unable to run.
#[test]
fn a_start_refused_by_the_callers_rule_fails_the_vm_for_good() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    let err =
        g.vm.start_with(|_| Err(Error::DtbNotExecutable { addr: DTB }))
            .unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    // Later STARTs: ENODEV, and the check is not asked again.
    assert_eq!(errno(g.vm.start()), libc::ENODEV);
    assert_eq!(errno(g.vm.start_with(|_| Ok(()))), libc::ENODEV);
    // SPEC R-9: the vCPU reports LOAD_FAILED.
    assert_eq!(vcpu.run().unwrap(), Exit::Status(Status::LoadFailed));
}

#[test]
fn a_running_vm_starts_again_without_asking_the_check() {
    let Some(g) = guest() else { return };
    let asked = AtomicBool::new(false);
    g.vm.start_with(|vm| {
        asked.store(true, Ordering::SeqCst);
        // The check sees the VM's configuration.
        assert_eq!(vm.configs().0.map(|d| d.addr), Some(DTB));
        Ok(())
    })
    .unwrap();
    assert!(asked.load(Ordering::SeqCst));
    g.vm.start_with(|_| Err(Error::DtbNotExecutable { addr: DTB }))
        .unwrap();
}
