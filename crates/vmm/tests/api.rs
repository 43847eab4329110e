//! The Gunyah VM API on KVM in lendvm's typed form, without running a guest
//! (or with a brief one): binding kinds, functions, boot context, DTB and
//! START rules. The raw ABI's own tests are in the gunyah-abi crate.

use test_guests::testing::*;
use vmm::{Access, BindRequest, GuestAddress, Ioevent, Mode, PageState, Perms};
use vmm_sys_util::eventfd::EventFd;

const M: u64 = 1 << 20;

fn errno<T>(r: vmm::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

// DESIGN D3, D6; the system region (native_abi).
#[test]
fn kind_rules_and_the_system_region_are_enforced_at_map_mem() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let hm = vm.create_guest_memfd(4 * M, Mode::HostMappable).unwrap();
    let private = vm.create_guest_memfd(4 * M, Mode::Private).unwrap();
    let memfd = dev.create_guest_mem(4 * M, 0).unwrap();
    // D3: guest_memfd slots cannot be read-only.
    assert_eq!(
        errno(vm.bind(&BindRequest::new(
            &hm,
            GuestAddress(0x1000_0000),
            0,
            M,
            Access::Lend,
            Perms::RX
        ))),
        libc::EINVAL
    );
    vm.bind(&BindRequest::new(
        &memfd,
        GuestAddress(0x1000_0000),
        0,
        M,
        Access::Lend,
        Perms::RX,
    ))
    .unwrap();
    // D6: a private file can be lent, never shared.
    assert_eq!(
        errno(vm.bind(&BindRequest::new(
            &private,
            GuestAddress(0x2000_0000),
            0,
            M,
            Access::Share,
            Perms::RW
        ))),
        libc::EINVAL
    );
    vm.bind(&BindRequest::new(
        &private,
        GuestAddress(0x2000_0000),
        0,
        M,
        Access::Lend,
        Perms::RW,
    ))
    .unwrap();
    // lendvm's own memory cannot be overlapped.
    let base = vmm::native_abi::SYSTEM_REGION_BASE;
    let err = vm
        .bind(&BindRequest::new(
            &hm,
            GuestAddress(base - M),
            0,
            2 * M,
            Access::Lend,
            Perms::RW,
        ))
        .unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
    assert!(err.to_string().contains("system region"), "{err}");
    assert_eq!(vm.bindings().len(), 2);
}

// SPEC F-6 (TV ioeventfd create_many, multiple_datamatch, drops).
#[test]
fn ioeventfd_registrations_follow_gunyah_conflicts() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let e = EventFd::new(0).unwrap();
    let io = |addr, len, datamatch| Ioevent {
        addr,
        len,
        datamatch,
    };
    for addr in [0x8000, 0x8008, 0x800a, 0x100] {
        vm.add_ioeventfd(&e, &io(addr, 8, None)).unwrap();
    }
    assert_eq!(
        errno(vm.add_ioeventfd(&e, &io(0x8000, 4, None))),
        libc::EEXIST
    );
    assert_eq!(
        errno(vm.add_ioeventfd(&e, &io(0x8000, 8, None))),
        libc::EEXIST
    );
    assert_eq!(
        errno(vm.add_ioeventfd(&e, &io(0x8000, 8, Some(1)))),
        libc::EEXIST
    );
    for v in [1, 2, 3] {
        vm.add_ioeventfd(&e, &io(0x9000, 4, Some(v))).unwrap();
    }
    vm.add_ioeventfd(&e, &io(0x9000, 8, Some(1))).unwrap();
    assert_eq!(
        errno(vm.add_ioeventfd(&e, &io(0x9000, 4, Some(2)))),
        libc::EEXIST
    );
    // Argument rules.
    for (addr, len, dm) in [
        (0xa000, 3, None),
        (0xa000, 0, Some(1)),
        (u64::MAX - 2, 8, None),
    ] {
        assert_eq!(
            errno(vm.add_ioeventfd(&e, &io(addr, len, dm))),
            libc::EINVAL,
            "{addr:#x} {len}"
        );
    }
    // Removal: exact match; then the key is free again (TV drops).
    assert_eq!(
        errno(vm.remove_ioeventfd(&io(0x9000, 4, Some(7)))),
        libc::ENOENT
    );
    vm.remove_ioeventfd(&io(0x9000, 4, Some(2))).unwrap();
    vm.add_ioeventfd(&e, &io(0x9000, 4, Some(2))).unwrap();
    vm.remove_ioeventfd(&io(0x8000, 8, None)).unwrap();
    vm.add_ioeventfd(&e, &io(0x8000, 4, None)).unwrap();
    assert_eq!(vm.function_counts().1, 8);
}

// SPEC B-VM-3/4/6 with a real guest: the boot context reaches the vCPU and
// is frozen by START.
#[test]
fn boot_context_reaches_the_vcpu_and_is_frozen_at_start() {
    let Some(g) = guest() else { return };
    // R12 (X12) and R13 (X13) are not touched by the guest before its
    // first exit.
    g.vm.set_boot_reg(vmm::BootReg::Gpr(12), 0x2222).unwrap();
    g.vm.set_boot_reg(vmm::BootReg::Gpr(13), 0x3333).unwrap();
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    assert_eq!(
        errno(g.vm.set_boot_reg(vmm::BootReg::Gpr(3), 1)),
        libc::EINVAL
    );
    assert_eq!(errno(g.vm.set_dtb_config(GuestAddress(0), 1)), libc::EBUSY);
    // Stop at the guest's first exit (its hello), before it changes much.
    let _ = vcpu.run().unwrap();
    let regs = vcpu.regs().unwrap();
    assert_eq!((regs.r12, regs.r13), (0x2222, 0x3333));
}

// SPEC B-VM-4 (TV set_dtb_config) and B-VM-3 START rules (TV
// vm_dtb_no_map, bad_dtb_access, shared_vm; START is idempotent).
#[test]
fn dtb_config_and_start_follow_the_rules() {
    let Some(dev) = device() else { return };
    // Accepted on a VM without memory; validated at START.
    let vm = dev.create_vm().unwrap();
    vm.set_dtb_config(GuestAddress(0), M).unwrap();
    assert_eq!(
        errno(vm.set_dtb_config(GuestAddress(u64::MAX - 10), 100)),
        libc::EOVERFLOW
    );
    assert_eq!(errno(vm.start()), libc::ENOENT, "DTB outside any binding");
    assert_eq!(errno(vm.start()), libc::ENODEV, "a failed START is final");
    // SPEC B-VM-3: a DTB whose last page would end at 2^64 lies in no
    // binding (ENOENT at START, not an overflow; found by fuzzing).
    let vm = dev.create_vm().unwrap();
    vm.set_dtb_config(GuestAddress(0), u64::MAX).unwrap();
    assert_eq!(errno(vm.start()), libc::ENOENT);

    let start_with = |access: Access, perms: Perms, view: bool| {
        let vm = dev.create_vm().unwrap();
        let mem = dev.create_guest_mem(16 << 10, 0).unwrap();
        vm.bind(&BindRequest::new(
            &mem,
            GuestAddress(0x8000_0000),
            0,
            16 << 10,
            access,
            perms,
        ))
        .unwrap();
        vm.set_dtb_config(GuestAddress(0x8000_0000), 4096).unwrap();
        let v = view.then(|| mem.view(0, 16 << 10).unwrap());
        let r = vm.start();
        drop(v);
        (r, vm, mem)
    };
    // vm_dtb_no_map: lent DTB pages mapped by the host → START fails.
    assert_eq!(
        errno(start_with(Access::Lend, Perms::RWX, true).0),
        libc::EBUSY
    );
    // bad_dtb_access: a lend binding without X.
    assert_eq!(
        errno(start_with(Access::Lend, Perms::RW, false).0),
        libc::EINVAL
    );
    // shared_vm: a shared DTB without a host view starts, and its pages
    // are handed over lent whatever the binding says (SPEC B-AC-5); a live
    // host view of them refuses START like a lent DTB's.
    let (r, vm, mem) = start_with(Access::Share, Perms::RWX, false);
    r.unwrap();
    assert_eq!(mem.page_state(0), PageState::Lent(vm.id()));
    assert!(
        mem.read_at(0, &mut [0u8; 8]).is_err(),
        "the DTB left the host"
    );
    assert_eq!(mem.page_state(4096), PageState::Shared(vm.id()));
    assert_eq!(
        errno(start_with(Access::Share, Perms::RWX, true).0),
        libc::EBUSY
    );
    // A good lent DTB is handed over at START and START is idempotent.
    let (r, vm, mem) = start_with(Access::Lend, Perms::RWX, false);
    r.unwrap();
    vm.start().unwrap();
    assert_eq!(mem.page_state(0), PageState::Lent(vm.id()));
    assert_eq!(mem.page_state(4096), PageState::LendBound(vm.id()));
    // SPEC B-VM-5: the firmware config is validated like the DTB's.
    let vm = dev.create_vm().unwrap();
    vm.set_fw_config(GuestAddress(0x1000), 0x2000).unwrap();
    assert_eq!(
        errno(vm.set_fw_config(GuestAddress(u64::MAX), 2)),
        libc::EOVERFLOW
    );
    assert_eq!(
        vm.configs().1,
        Some(vmm::Location {
            addr: 0x1000,
            size: 0x2000
        })
    );
}

// VmOptions: a VM without an interrupt controller refuses irqfds clearly
// and still runs guests.
#[test]
fn a_vm_without_irqchip_refuses_irqfds_and_still_runs() {
    let Some(dev) = device() else { return };
    let vm = dev
        .create_vm_with(vmm::VmOptions {
            irqchip: false,
            ..Default::default()
        })
        .unwrap();
    let e = EventFd::new(0).unwrap();
    let err = vm.add_irqfd(&e, 1, false).unwrap_err();
    assert_eq!(err.errno(), libc::EOPNOTSUPP);
    assert!(err.to_string().contains("interrupt controller"), "{err}");
    // ioeventfds need no interrupt controller.
    vm.add_ioeventfd(
        &e,
        &Ioevent {
            addr: 0xd000_0000,
            len: 8,
            datamatch: None,
        },
    )
    .unwrap();
    let image = dev.create_guest_mem(IMAGE_SIZE, 0).unwrap();
    vm.bind(&BindRequest::new(
        &image,
        GuestAddress(IMAGE_BASE),
        0,
        IMAGE_SIZE,
        Access::Lend,
        Perms::RWX,
    ))
    .unwrap();
    vmm::loader::ElfImage::parse(test_guests::images::HOLDING_CELL)
        .unwrap()
        .load(&vm)
        .unwrap();
    vm.set_dtb_config(GuestAddress(DTB), 4096).unwrap();
    let (mut v0, mut v1) = (vm.add_vcpu(0).unwrap(), vm.add_vcpu(1).unwrap());
    vm.start().unwrap();
    use test_guests::holding_cell::{Cell, protocol::PING_REPLY};
    assert_eq!(Cell::new(&mut v0).ping().unwrap(), PING_REPLY);
    assert_eq!(Cell::new(&mut v1).ping().unwrap(), PING_REPLY);
}

// SPEC F-5 lets one eventfd ring several doorbells; KVM does not. The
// second registration is refused with the errno lendvm uses for host
// limits (EOPNOTSUPP) and a message saying why, nothing is registered,
// and a separate eventfd works (found by the gunyah_abi fuzz target,
// which saw KVM's raw EBUSY).
#[test]
fn one_eventfd_cannot_drive_two_irqfds_and_says_why() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let shared = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    vm.add_irqfd(&shared, 3, false).unwrap();
    let err = vm.add_irqfd(&shared, 0, false).unwrap_err();
    assert_eq!(err.errno(), libc::EOPNOTSUPP, "{err}");
    assert!(err.to_string().contains("label 0"), "{err}");
    assert_eq!(
        errno(vm.remove_irqfd(0)),
        libc::ENOENT,
        "nothing registered"
    );
    let own = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    vm.add_irqfd(&own, 0, false).unwrap();
    vm.remove_irqfd(3).unwrap();
    vm.add_irqfd(&shared, 1, true).unwrap();
}
