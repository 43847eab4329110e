//! Legacy user memory regions (SPEC B-VM-7): the caller's own memory,
//! shared (SET_USER_MEM_REGION) or lent (ANDROID_LEND_USER_MEM).

use binding::{Access, Perms};
use test_guests::holding_cell::{Cell, CellError, protocol::*};
use test_guests::testing::*;
use uapi::{GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_RWX, gunyah_userspace_memory_region};
use vmm::Exit;
use vmm::{BindRequest, GuestAddress};

const SIZE: usize = 2 << 20;

/// Anonymous memory owned by the test, unmapped on drop.
struct Anon(*mut u8);

impl Anon {
    fn new() -> Anon {
        // SAFETY: a fresh private anonymous mapping; nothing else uses it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Anon(p.cast())
    }
    fn addr(&self) -> u64 {
        self.0 as u64
    }
    fn write_u64(&self, at: usize, v: u64) {
        // SAFETY: in bounds of our mapping; volatile because the guest may
        // write it concurrently.
        unsafe { std::ptr::write_volatile(self.0.add(at).cast::<u64>(), v) }
    }
    fn read_u64(&self, at: usize) -> u64 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(self.0.add(at).cast::<u64>()) }
    }
    /// Whether the host can read the range, asked without touching it
    /// (process_vm_readv reports EFAULT instead of faulting).
    fn host_can_read(&self) -> bool {
        let mut b = [0u8; 8];
        let local = libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: self.0.cast(),
            iov_len: 8,
        };
        // SAFETY: reads into our own buffer; bad source memory is EFAULT.
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) == 8 }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer used.
        unsafe { libc::munmap(self.0.cast(), SIZE) };
    }
}

fn region(label: u32, flags: u32, gpa: u64, addr: u64) -> gunyah_userspace_memory_region {
    gunyah_userspace_memory_region {
        label,
        flags,
        guest_phys_addr: gpa,
        memory_size: SIZE as u64,
        userspace_addr: addr,
    }
}

// SPEC B-VM-7, B-AC-1.
#[test]
fn a_shared_user_region_is_coherent_with_the_callers_memory() {
    let Some(g) = guest() else { return };
    let mem = Anon::new();
    mem.write_u64(0x100, 0xfeed);
    // SAFETY: `mem` outlives the VM (dropped after `g`) and is only
    // accessed with volatile reads and writes.
    unsafe {
        gunyah_abi::set_user_mem_region(
            &g.vm,
            &region(1, GUNYAH_MEM_ALLOW_RWX, DATA, mem.addr()),
            false,
        )
    }
    .unwrap();
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    assert_eq!(cell.read(DATA + 0x100, 8).unwrap(), 0xfeed);
    cell.write(DATA + 0x200, 0xbeef, 8).unwrap();
    assert_eq!(mem.read_u64(0x200), 0xbeef);
    drop(vcpu);
    drop(g);
    assert!(mem.host_can_read());
}

// SPEC B-VM-7, B-AC-2: the host loses access to a lent region while the
// VM has it, and gets it back zeroed (DESIGN D5).
#[test]
fn a_lent_user_region_is_out_of_the_hosts_reach_until_teardown() {
    let mem = Anon::new();
    mem.write_u64(0x100, 0xfeed);
    {
        let Some(g) = guest() else { return };
        // SAFETY: nothing touches `mem` until the VM is gone.
        unsafe {
            gunyah_abi::set_user_mem_region(
                &g.vm,
                &region(7, GUNYAH_MEM_ALLOW_RWX, DATA, mem.addr()),
                true,
            )
        }
        .unwrap();
        assert!(!mem.host_can_read(), "the host must lose access");
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(
            cell.read(DATA + 0x100, 8).unwrap(),
            0xfeed,
            "content moves with the lend"
        );
        cell.write(DATA + 0x300, 0x5ec2e7, 8).unwrap();
        assert!(!mem.host_can_read());
    }
    assert!(mem.host_can_read(), "teardown gives the range back");
    assert_eq!(mem.read_u64(0x100), 0, "zeroed before the host gets it");
    assert_eq!(mem.read_u64(0x300), 0);
    mem.write_u64(0, 1);
    assert_eq!(mem.read_u64(0), 1, "and writable again");
}

// SPEC B-VM-7 rules; SPEC R-5 for read-only regions.
#[test]
fn user_region_rules_and_read_only_enforcement() {
    let Some(g) = guest() else { return };
    let (a, b) = (Anon::new(), Anon::new());
    let add = |r: gunyah_userspace_memory_region| {
        // SAFETY: `a` and `b` outlive the VM; accessed volatile only.
        unsafe { gunyah_abi::set_user_mem_region(&g.vm, &r, false) }.map_err(|e| e.errno())
    };
    assert_eq!(
        add(region(1, 0x8, DATA, a.addr())),
        Err(libc::EINVAL),
        "unknown flag"
    );
    assert_eq!(
        add(region(1, 0, DATA, a.addr())),
        Err(libc::EINVAL),
        "no permission"
    );
    assert_eq!(
        add(region(1, GUNYAH_MEM_ALLOW_RWX, DATA + 1, a.addr())),
        Err(libc::EINVAL)
    );
    assert_eq!(
        add(region(1, GUNYAH_MEM_ALLOW_RWX, DATA, a.addr() + 8)),
        Err(libc::EINVAL)
    );
    add(region(1, GUNYAH_MEM_ALLOW_READ, DATA, a.addr())).unwrap();
    assert_eq!(
        add(region(1, GUNYAH_MEM_ALLOW_RWX, DATA + (4 << 20), b.addr())),
        Err(libc::EEXIST),
        "label"
    );
    assert_eq!(
        add(region(2, GUNYAH_MEM_ALLOW_RWX, DATA + (1 << 20), b.addr())),
        Err(libc::EEXIST),
        "overlap"
    );
    // Bindings and regions keep out of each other.
    let f = g.file(FileKind::Memfd, 4 << 20);
    assert_eq!(
        g.vm.bind(&BindRequest::new(
            &f,
            GuestAddress(DATA - (2 << 20)),
            0,
            4 << 20,
            Access::Share,
            Perms::RW
        ))
        .map_err(|e| e.errno()),
        Err(libc::EEXIST)
    );
    g.vm.bind(&BindRequest::new(
        &f,
        GuestAddress(DATA + (8 << 20)),
        0,
        4 << 20,
        Access::Share,
        Perms::RW,
    ))
    .unwrap();
    assert_eq!(
        add(region(3, GUNYAH_MEM_ALLOW_RWX, DATA + (8 << 20), b.addr())),
        Err(libc::EEXIST)
    );
    // The read-only region: reads work, writes fault -EPERM.
    a.write_u64(0, 42);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    assert_eq!(cell.read(DATA, 8).unwrap(), 42);
    cell.send(CMD_WRITE, &[DATA, 1, 8]).unwrap();
    match cell.finish() {
        Err(CellError::Exit(Exit::PageFault { attempt, .. })) => assert_eq!(attempt, -libc::EPERM),
        other => panic!("expected a page fault, got {other:?}"),
    }
    assert_eq!(a.read_u64(0), 42);
}

// SPEC §2.13 EFAULT: the caller's memory is checked, not trusted. A hole
// is refused for SET_USER_MEM_REGION and ANDROID_LEND_USER_MEM alike, and
// lending a range that is lent already (no longer readable) is refused
// instead of faulting lendvm; nothing is registered either way (found by
// the gunyah_abi fuzz target's author).
#[test]
fn unmapped_or_already_lent_caller_memory_is_efault() {
    let Some(g) = guest() else { return };
    // Far from where the kernel places mappings (tests run in parallel
    // threads, so a freshly unmapped range could be taken by another).
    let hole: u64 = 0x3000_0000_0000;
    let mut residency = vec![0u8; SIZE / 4096];
    // SAFETY: mincore only writes `residency` (one byte per page); it
    // reports ENOMEM for an unmapped range without touching it.
    let r = unsafe { libc::mincore(hole as *mut libc::c_void, SIZE, residency.as_mut_ptr()) };
    assert_eq!(r, -1, "the test's hole is mapped");
    let add = |label, gpa, addr, lend| {
        // SAFETY: every range given is either unmapped (refused without
        // being touched) or `mem` below, which outlives the VM and is not
        // accessed while lent.
        unsafe {
            gunyah_abi::set_user_mem_region(
                &g.vm,
                &region(label, GUNYAH_MEM_ALLOW_RWX, gpa, addr),
                lend,
            )
        }
        .map_err(|e| e.errno())
    };
    assert_eq!(
        add(1, DATA, hole, false),
        Err(libc::EFAULT),
        "share of a hole"
    );
    assert_eq!(
        add(1, DATA, hole, true),
        Err(libc::EFAULT),
        "lend of a hole"
    );
    let mem = Anon::new();
    mem.write_u64(0, 7);
    add(1, DATA, mem.addr(), true).unwrap();
    assert_eq!(
        add(2, DATA + (4 << 20), mem.addr(), true),
        Err(libc::EFAULT),
        "lend of a range lent already"
    );
    // Label 2 was not taken by the refusals.
    let other = Anon::new();
    add(2, DATA + (4 << 20), other.addr(), false).unwrap();
    drop(g);
    assert!(mem.host_can_read());
}
