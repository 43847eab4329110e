//! The Gunyah VM API on KVM without running a guest: MAP_MEM through real
//! descriptors, functions, boot context, DTB and START rules. Mirrors
//! Qualcomm's test VMM ("TV") where it has a case.

mod common;

use std::os::fd::AsRawFd;

use binding::{Access, Perms, map_flags};
use common::*;
use uapi::*;
use vmm_sys_util::eventfd::EventFd;

const M: u64 = 1 << 20;

fn args(
    fd: i32,
    gpa: u64,
    access: Access,
    perms: Perms,
    offset: u64,
    size: u64,
) -> gunyah_map_mem_args {
    gunyah_map_mem_args {
        guest_addr: gpa,
        flags: map_flags(access, perms),
        guest_mem_fd: fd as u32,
        offset,
        size,
    }
}

fn unmap(a: gunyah_map_mem_args) -> gunyah_map_mem_args {
    gunyah_map_mem_args {
        flags: a.flags | GUNYAH_MEM_UNMAP,
        ..a
    }
}

fn errno<T>(r: vmm::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

// SPEC B-VM-1.
#[test]
fn create_vm_takes_type_zero_only() {
    let Some(dev) = device() else { return };
    assert!(dev.create_vm_with_type(0).is_ok());
    assert_eq!(errno(dev.create_vm_with_type(1)), libc::EINVAL);
}

// SPEC B-ADD-2, B-ADD-3 through real descriptors.
#[test]
fn map_mem_resolves_real_descriptors() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let other = dev.create_vm().unwrap();
    let mine = vm
        .create_guest_memfd(2 * M, gmem::Mode::HostMappable)
        .unwrap();
    let theirs = other
        .create_guest_memfd(2 * M, gmem::Mode::HostMappable)
        .unwrap();
    let event = EventFd::new(0).unwrap();
    let a = |fd| args(fd, 0x1000_0000, Access::Lend, Perms::RW, 0, 2 * M);
    assert_eq!(errno(vm.map_mem(&a(1_000_000))), libc::EBADF, "not open");
    assert_eq!(errno(vm.map_mem(&a(-1))), libc::EBADF, "negative");
    assert_eq!(
        errno(vm.map_mem(&a(event.as_raw_fd()))),
        libc::EINVAL,
        "not a lendvm file"
    );
    assert_eq!(
        errno(vm.map_mem(&a(theirs.fd()))),
        libc::EINVAL,
        "another VM's guest_memfd"
    );
    assert!(vm.bindings().is_empty());
    vm.map_mem(&a(mine.fd())).unwrap();
    assert_eq!(vm.bindings().len(), 1);
}

// SPEC B-RM-1..6 with real slots (TV unmap_memory_single*, multiple_simple*).
#[test]
fn unmap_in_all_four_cases_keeps_slots_inside_bindings() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let mem = dev.create_guest_mem(30 * M, 0).unwrap();
    let fd = mem.fd();
    let whole = args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M);
    vm.map_mem(&whole).unwrap();
    // TV unmap_memory_single: wrong address, access, perms, offset.
    for bad in [
        gunyah_map_mem_args {
            guest_addr: 0x7000_0000,
            ..whole
        },
        args(fd, 0x8000_0000, Access::Lend, Perms::RWX, 0, 10 * M),
        args(fd, 0x8000_0000, Access::Share, Perms::RX, 0, 10 * M),
        args(fd, 0x8000_0000, Access::Share, Perms::RWX, M, 9 * M),
    ] {
        assert_eq!(errno(vm.map_mem(&unmap(bad))), libc::ENOENT, "{bad:?}");
    }
    // Middle: split in two.
    vm.map_mem(&unmap(args(
        fd,
        0x8040_0000,
        Access::Share,
        Perms::RWX,
        4 * M,
        2 * M,
    )))
    .unwrap();
    assert_installed_within_bindings(&vm);
    let b = vm.bindings();
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].guest_addr, b[0].size, b[0].offset),
        (0x8000_0000, 4 * M, 0)
    );
    assert_eq!(
        (b[1].guest_addr, b[1].size, b[1].offset),
        (0x8060_0000, 4 * M, 6 * M)
    );
    // Front of the second, back of the first, then the rest exactly.
    vm.map_mem(&unmap(args(
        fd,
        0x8060_0000,
        Access::Share,
        Perms::RWX,
        6 * M,
        M,
    )))
    .unwrap();
    vm.map_mem(&unmap(args(
        fd,
        0x8030_0000,
        Access::Share,
        Perms::RWX,
        3 * M,
        M,
    )))
    .unwrap();
    assert_installed_within_bindings(&vm);
    vm.map_mem(&unmap(args(
        fd,
        0x8000_0000,
        Access::Share,
        Perms::RWX,
        0,
        3 * M,
    )))
    .unwrap();
    vm.map_mem(&unmap(args(
        fd,
        0x8070_0000,
        Access::Share,
        Perms::RWX,
        7 * M,
        3 * M,
    )))
    .unwrap();
    assert!(vm.bindings().is_empty());
    assert!(vm.installed().is_empty(), "no slot may outlive its binding");
    // A range spanning two adjacent bindings is not contained in either.
    vm.map_mem(&args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M))
        .unwrap();
    vm.map_mem(&args(
        fd,
        0x80a0_0000,
        Access::Share,
        Perms::RWX,
        10 * M,
        10 * M,
    ))
    .unwrap();
    let span = args(fd, 0x8090_0000, Access::Share, Perms::RWX, 9 * M, 2 * M);
    assert_eq!(errno(vm.map_mem(&unmap(span))), libc::ENOENT);
}

// SPEC B-ADD-9 across VMs (TV map_memory_ioff).
#[test]
fn a_file_range_binds_once_across_all_vms() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let vm2 = dev.create_vm().unwrap();
    let mem = dev.create_guest_mem(20 * M, 0).unwrap();
    let fd = mem.fd();
    vm.map_mem(&args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M))
        .unwrap();
    for (v, gpa, access) in [
        (&vm, 0x80a0_0000, Access::Share),
        (&vm, 0x8000_0000, Access::Lend),
        (&vm, 0x80a0_0000, Access::Lend),
        (&vm2, 0x80a0_0000, Access::Lend),
    ] {
        assert_eq!(
            errno(v.map_mem(&args(fd, gpa, access, Perms::RWX, 0, 10 * M))),
            libc::EEXIST
        );
    }
    // Adjacent file range: fine, in either VM.
    vm2.map_mem(&args(
        fd,
        0x80a0_0000,
        Access::Share,
        Perms::RWX,
        10 * M,
        10 * M,
    ))
    .unwrap();
}

// DESIGN D3, D6; the system region (native_abi).
#[test]
fn kind_rules_and_the_system_region_are_enforced_at_map_mem() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let hm = vm
        .create_guest_memfd(4 * M, gmem::Mode::HostMappable)
        .unwrap();
    let private = vm.create_guest_memfd(4 * M, gmem::Mode::Private).unwrap();
    let memfd = dev.create_guest_mem(4 * M, 0).unwrap();
    // D3: guest_memfd slots cannot be read-only.
    assert_eq!(
        errno(vm.bind(&hm, 0x1000_0000, 0, M, Access::Lend, Perms::RX)),
        libc::EINVAL
    );
    vm.bind(&memfd, 0x1000_0000, 0, M, Access::Lend, Perms::RX)
        .unwrap();
    // D6: a private file can be lent, never shared.
    assert_eq!(
        errno(vm.bind(&private, 0x2000_0000, 0, M, Access::Share, Perms::RW)),
        libc::EINVAL
    );
    vm.bind(&private, 0x2000_0000, 0, M, Access::Lend, Perms::RW)
        .unwrap();
    // lendvm's own memory cannot be overlapped.
    let base = vmm::native_abi::SYSTEM_REGION_BASE;
    let err = vm
        .bind(&hm, base - M, 0, 2 * M, Access::Lend, Perms::RW)
        .unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
    assert!(err.to_string().contains("system region"), "{err}");
    assert_eq!(vm.bindings().len(), 2);
}

// SPEC GM-LT-1: bindings keep a closed file alive; its number is EBADF.
#[test]
fn a_closed_file_stays_bound_and_its_descriptor_is_dead_for_map_mem() {
    let Some(g) = guest() else { return };
    let mem = g.file(FileKind::GuestMemfd, 2 * M);
    let fd = mem.fd();
    g.vm.bind(&mem, DATA, 0, 2 * M, Access::Share, Perms::RW)
        .unwrap();
    mem.write_at(0, &0xabcu64.to_le_bytes()).unwrap();
    drop(mem);
    let again = args(fd, DATA + 4 * M, Access::Share, Perms::RW, 0, M);
    assert_eq!(errno(g.vm.map_mem(&again)), libc::EBADF);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = vmm::holding_cell::Cell::new(&mut vcpu);
    assert_eq!(
        cell.read(DATA, 8).unwrap(),
        0xabc,
        "the guest keeps its memory"
    );
}

// SPEC F-3 (TV add_vcpu).
#[test]
fn vcpu_functions_follow_the_id_rules() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let add = |id: u32| {
        let arg = gunyah_fn_vcpu_arg { id };
        vm.add_function(&gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        })
    };
    let remove = |id: u32| {
        let arg = gunyah_fn_vcpu_arg { id };
        vm.remove_function(&gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        })
    };
    let v0 = add(0).unwrap();
    assert_eq!(errno(add(0)), libc::EEXIST);
    let (_v1, _v2) = (add(1).unwrap(), add(2).unwrap());
    remove(0).unwrap();
    assert_eq!(errno(remove(0)), libc::ENOENT);
    assert_eq!(errno(remove(500)), libc::ENOENT);
    remove(1).unwrap();
    remove(2).unwrap();
    let vmm::Function::Vcpu(v0) = v0 else {
        panic!("a vCPU function returns a vCPU")
    };
    assert_eq!(v0.page().exit_reason, GUNYAH_VCPU_EXIT_UNKNOWN);
    // Wrong size for the type, and F-1's general rules.
    let arg = gunyah_fn_vcpu_arg { id: 3 };
    let p = &arg as *const _ as u64;
    let desc = |type_, arg_size, arg| gunyah_fn_desc {
        type_,
        arg_size,
        arg,
    };
    assert_eq!(
        errno(vm.add_function(&desc(GUNYAH_FN_VCPU, 8, p))),
        libc::EINVAL
    );
    assert_eq!(
        errno(vm.add_function(&desc(GUNYAH_FN_VCPU, 257, p))),
        libc::EINVAL
    );
    assert_eq!(
        errno(vm.add_function(&desc(GUNYAH_FN_VCPU, 4, 16))),
        libc::EFAULT
    );
    assert_eq!(errno(vm.add_function(&desc(9, 4, p))), libc::ENOENT);
}

// SPEC F-5 (TV irqfd create_many).
#[test]
fn irqfd_labels_are_unique_and_checked() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let events: Vec<EventFd> = (0..6).map(|_| EventFd::new(0).unwrap()).collect();
    for (label, e) in events[..4].iter().enumerate() {
        vm.add_irqfd(e.as_raw_fd(), label as u32, label % 2 == 1)
            .unwrap();
    }
    assert_eq!(
        errno(vm.add_irqfd(events[4].as_raw_fd(), 0, false)),
        libc::EEXIST
    );
    assert_eq!(
        errno(vm.add_irqfd(events[4].as_raw_fd(), 0, true)),
        libc::EEXIST
    );
    // Raw flags, descriptors and x86's label range.
    let raw = |fd: u32, label: u32, flags: u32| {
        let arg = gunyah_fn_irqfd_arg {
            fd,
            label,
            flags,
            padding: 0,
        };
        vm.add_function(&gunyah_fn_desc {
            type_: GUNYAH_FN_IRQFD,
            arg_size: 16,
            arg: &arg as *const _ as u64,
        })
    };
    let e5 = events[5].as_raw_fd() as u32;
    assert_eq!(errno(raw(e5, 9, 0x2)), libc::EINVAL, "unknown flag");
    assert_eq!(errno(raw(1_000_000, 9, 0)), libc::EBADF);
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert_eq!(
        errno(raw(file.as_raw_fd() as u32, 9, 0)),
        libc::EINVAL,
        "not an eventfd"
    );
    assert_eq!(
        errno(raw(e5, 24, 0)),
        libc::EINVAL,
        "no such interrupt line"
    );
    assert!(matches!(
        raw(e5, 9, GUNYAH_IRQFD_FLAGS_LEVEL),
        Ok(vmm::Function::Irqfd)
    ));
    assert_eq!(vm.function_counts().0, 5);
    // Removal matches on the label only.
    vm.remove_irqfd(0).unwrap();
    assert_eq!(errno(vm.remove_irqfd(0)), libc::ENOENT);
    vm.add_irqfd(events[4].as_raw_fd(), 0, false).unwrap();
}

// SPEC F-6 (TV ioeventfd create_many, multiple_datamatch, drops).
#[test]
fn ioeventfd_registrations_follow_gunyah_conflicts() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let e = EventFd::new(0).unwrap();
    let fd = e.as_raw_fd();
    for addr in [0x8000, 0x8008, 0x800a, 0x100] {
        vm.add_ioeventfd(fd, addr, 8, None).unwrap();
    }
    assert_eq!(errno(vm.add_ioeventfd(fd, 0x8000, 4, None)), libc::EEXIST);
    assert_eq!(errno(vm.add_ioeventfd(fd, 0x8000, 8, None)), libc::EEXIST);
    assert_eq!(
        errno(vm.add_ioeventfd(fd, 0x8000, 8, Some(1))),
        libc::EEXIST
    );
    for v in [1, 2, 3] {
        vm.add_ioeventfd(fd, 0x9000, 4, Some(v)).unwrap();
    }
    vm.add_ioeventfd(fd, 0x9000, 8, Some(1)).unwrap();
    assert_eq!(
        errno(vm.add_ioeventfd(fd, 0x9000, 4, Some(2))),
        libc::EEXIST
    );
    // Argument rules.
    for (addr, len, dm) in [
        (0xa000, 3, None),
        (0xa000, 0, Some(1)),
        (u64::MAX - 2, 8, None),
    ] {
        assert_eq!(
            errno(vm.add_ioeventfd(fd, addr, len, dm)),
            libc::EINVAL,
            "{addr:#x} {len}"
        );
    }
    assert_eq!(
        errno(vm.add_ioeventfd(1_000_000, 0xa000, 8, None)),
        libc::EBADF
    );
    // Removal: exact match; then the key is free again (TV drops).
    assert_eq!(errno(vm.remove_ioeventfd(0x9000, 4, Some(7))), libc::ENOENT);
    vm.remove_ioeventfd(0x9000, 4, Some(2)).unwrap();
    vm.add_ioeventfd(fd, 0x9000, 4, Some(2)).unwrap();
    vm.remove_ioeventfd(0x8000, 8, None).unwrap();
    vm.add_ioeventfd(fd, 0x8000, 4, None).unwrap();
    assert_eq!(vm.function_counts().1, 8);
}

// SPEC B-VM-6 on x86 (TV set_boot_context).
#[test]
fn boot_context_accepts_the_x86_registers_only() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let set = |reg: u32, reserved: u32| {
        vm.set_boot_context(&gunyah_vm_boot_context {
            reg,
            reserved,
            value: 0xd00d,
        })
    };
    for i in 0..16 {
        set(gunyah_vm_boot_context_reg(REG_SET_X, i), 0).unwrap();
    }
    for i in [16, 31, 32, 255] {
        assert_eq!(
            errno(set(gunyah_vm_boot_context_reg(REG_SET_X, i), 0)),
            libc::EINVAL
        );
    }
    set(gunyah_vm_boot_context_reg(REG_SET_PC, 0), 0).unwrap();
    set(gunyah_vm_boot_context_reg(REG_SET_SP, 0), 0).unwrap();
    for reg in [
        gunyah_vm_boot_context_reg(REG_SET_PC, 1),
        gunyah_vm_boot_context_reg(REG_SET_SP, 1),
        gunyah_vm_boot_context_reg(3, 0),
        1 << 16,
    ] {
        assert_eq!(errno(set(reg, 0)), libc::EINVAL, "reg {reg:#x}");
    }
    assert_eq!(errno(set(0, 1)), libc::EINVAL, "reserved must be zero");
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
    assert_eq!(
        errno(g.vm.set_dtb_config(&gunyah_vm_dtb_config {
            guest_phys_addr: 0,
            size: 1
        })),
        libc::EBUSY
    );
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
    let cfg = |gpa, size| gunyah_vm_dtb_config {
        guest_phys_addr: gpa,
        size,
    };
    // Accepted on a VM without memory; validated at START.
    let vm = dev.create_vm().unwrap();
    vm.set_dtb_config(&cfg(0, M)).unwrap();
    assert_eq!(
        errno(vm.set_dtb_config(&cfg(u64::MAX - 10, 100))),
        libc::EOVERFLOW
    );
    assert_eq!(errno(vm.start()), libc::ENOENT, "DTB outside any binding");
    assert_eq!(errno(vm.start()), libc::ENODEV, "a failed START is final");

    let start_with = |access: Access, perms: Perms, view: bool| {
        let vm = dev.create_vm().unwrap();
        let mem = dev.create_guest_mem(16 << 10, 0).unwrap();
        vm.bind(&mem, 0x8000_0000, 0, 16 << 10, access, perms)
            .unwrap();
        vm.set_dtb_config(&cfg(0x8000_0000, 4096)).unwrap();
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
    // shared_vm: a shared DTB, host view or not.
    assert_eq!(errno(start_with(Access::Share, Perms::RWX, true).0), 0);
    // A good lent DTB is handed over at START and START is idempotent.
    let (r, vm, mem) = start_with(Access::Lend, Perms::RWX, false);
    r.unwrap();
    vm.start().unwrap();
    assert_eq!(mem.page_state(0), gmem::PageState::Lent(vm.id()));
    assert_eq!(mem.page_state(4096), gmem::PageState::LendBound(vm.id()));
    // SPEC B-VM-5: the firmware config is validated like the DTB's.
    let vm = dev.create_vm().unwrap();
    let fw = |gpa, size| gunyah_vm_firmware_config {
        guest_phys_addr: gpa,
        size,
    };
    vm.set_fw_config(&fw(0x1000, 0x2000)).unwrap();
    assert_eq!(errno(vm.set_fw_config(&fw(u64::MAX, 2))), libc::EOVERFLOW);
    assert_eq!(vm.configs().1, Some(fw(0x1000, 0x2000)));
}

// VmOptions: a VM without an interrupt controller refuses irqfds clearly
// and still runs guests.
#[test]
fn a_vm_without_irqchip_refuses_irqfds_and_still_runs() {
    let Some(dev) = device() else { return };
    let vm = dev
        .create_vm_with(vmm::VmOptions { irqchip: false })
        .unwrap();
    let e = EventFd::new(0).unwrap();
    let err = vm.add_irqfd(e.as_raw_fd(), 1, false).unwrap_err();
    assert_eq!(err.errno(), libc::EOPNOTSUPP);
    assert!(err.to_string().contains("interrupt controller"), "{err}");
    // ioeventfds need no interrupt controller.
    vm.add_ioeventfd(e.as_raw_fd(), 0xd000_0000, 8, None)
        .unwrap();
    let image = dev.create_guest_mem(IMAGE_SIZE, 0).unwrap();
    vm.bind(&image, IMAGE_BASE, 0, IMAGE_SIZE, Access::Lend, Perms::RWX)
        .unwrap();
    vmm::loader::ElfImage::parse(vmm::images::HOLDING_CELL)
        .unwrap()
        .load(&vm)
        .unwrap();
    vm.set_dtb_config(&gunyah_vm_dtb_config {
        guest_phys_addr: DTB,
        size: 4096,
    })
    .unwrap();
    let (mut v0, mut v1) = (vm.add_vcpu(0).unwrap(), vm.add_vcpu(1).unwrap());
    vm.start().unwrap();
    use vmm::holding_cell::{Cell, protocol::PING_REPLY};
    assert_eq!(Cell::new(&mut v0).ping().unwrap(), PING_REPLY);
    assert_eq!(Cell::new(&mut v1).ping().unwrap(), PING_REPLY);
}
