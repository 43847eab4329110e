//! lendvm's Gunyah ABI front without running a guest: MAP_MEM through real
//! descriptors, functions through user pointers, boot context through
//! register numbers. Mirrors Qualcomm's test VMM ("TV") where it has a case.

use std::os::fd::AsRawFd;
use std::sync::LazyLock;

use gunyah_abi::{FdTable, FlagEncoding, Profile};
use test_guests::testing::*;
use uapi::*;
use vmm::{Access, BindRequest, GuestAddress, GuestMem, Mode, Perms, Vm, map_flags};
use vmm_sys_util::eventfd::EventFd;

const M: u64 = 1 << 20;

/// This process's guest memory files by descriptor number.
static FILES: LazyLock<FdTable> = LazyLock::new(FdTable::default);

fn register(mem: GuestMem) -> i32 {
    FILES.insert(mem)
}

fn map(vm: &Vm, a: &gunyah_map_mem_args) -> vmm::Result<()> {
    gunyah_abi::map_mem(vm, a, &*FILES, FlagEncoding::Android)
}

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
    assert!(gunyah_abi::create_vm(&dev, 0, Profile::Strict).is_ok());
    assert_eq!(
        errno(gunyah_abi::create_vm(&dev, 1, Profile::Strict)),
        libc::EINVAL
    );
}

// SPEC GM-1..3 (TV create_mem_fd_invalid_flags), in both profiles.
#[test]
fn create_guest_mem_checks_flags_size_and_reserved_words() {
    let Some(dev) = device() else { return };
    for profile in [Profile::Strict, Profile::Compat] {
        let args = |flags, size, reserved| gunyah_create_mem_args {
            flags,
            size,
            reserved,
        };
        let good = args(GHMF_CLOEXEC, M, [0; 6]);
        assert!(gunyah_abi::create_guest_mem(&dev, &good, profile).is_ok());
        for bad in [
            args(0b1000, M, [0; 6]),
            args(0, 0, [0; 6]),
            args(0, M + 1, [0; 6]),
            args(0, M, [0, 0, 0, 1, 0, 0]),
        ] {
            assert_eq!(
                errno(gunyah_abi::create_guest_mem(&dev, &bad, profile)),
                libc::EINVAL,
                "{bad:?} {profile:?}"
            );
        }
    }
}

// SPEC B-ADD-2, B-ADD-3 through real descriptors.
#[test]
fn map_mem_resolves_real_descriptors() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let other = dev.create_vm().unwrap();
    let mine = register(vm.create_guest_memfd(2 * M, Mode::HostMappable).unwrap());
    let theirs = register(other.create_guest_memfd(2 * M, Mode::HostMappable).unwrap());
    let event = EventFd::new(0).unwrap();
    let a = |fd| args(fd, 0x1000_0000, Access::Lend, Perms::RW, 0, 2 * M);
    assert_eq!(errno(map(&vm, &a(1_000_000))), libc::EBADF, "not open");
    assert_eq!(errno(map(&vm, &a(-1))), libc::EBADF, "negative");
    assert_eq!(
        errno(map(&vm, &a(event.as_raw_fd()))),
        libc::EINVAL,
        "not a lendvm file"
    );
    assert_eq!(
        errno(map(&vm, &a(theirs))),
        libc::EINVAL,
        "another VM's guest_memfd"
    );
    assert!(vm.bindings().is_empty());
    map(&vm, &a(mine)).unwrap();
    assert_eq!(vm.bindings().len(), 1);
}

// SPEC B-RM-1..6 with real slots (TV unmap_memory_single*, multiple_simple*).
#[test]
fn unmap_in_all_four_cases_keeps_slots_inside_bindings() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let fd = register(dev.create_guest_mem(30 * M, 0).unwrap());
    let whole = args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M);
    map(&vm, &whole).unwrap();
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
        assert_eq!(errno(map(&vm, &unmap(bad))), libc::ENOENT, "{bad:?}");
    }
    // Middle: split in two.
    map(
        &vm,
        &unmap(args(
            fd,
            0x8040_0000,
            Access::Share,
            Perms::RWX,
            4 * M,
            2 * M,
        )),
    )
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
    map(
        &vm,
        &unmap(args(fd, 0x8060_0000, Access::Share, Perms::RWX, 6 * M, M)),
    )
    .unwrap();
    map(
        &vm,
        &unmap(args(fd, 0x8030_0000, Access::Share, Perms::RWX, 3 * M, M)),
    )
    .unwrap();
    assert_installed_within_bindings(&vm);
    map(
        &vm,
        &unmap(args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 3 * M)),
    )
    .unwrap();
    map(
        &vm,
        &unmap(args(
            fd,
            0x8070_0000,
            Access::Share,
            Perms::RWX,
            7 * M,
            3 * M,
        )),
    )
    .unwrap();
    assert!(vm.bindings().is_empty());
    let system = vmm::native_abi::SYSTEM_REGION_BASE;
    let system = system..system + vmm::native_abi::SYSTEM_REGION_SIZE;
    assert!(
        vm.installed()
            .iter()
            .all(|(r, _)| system.start <= r.start && r.end <= system.end),
        "no slot may outlive its binding (only lendvm's own regions stay)"
    );
    // A range spanning two adjacent bindings is not contained in either.
    map(
        &vm,
        &args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M),
    )
    .unwrap();
    map(
        &vm,
        &args(fd, 0x80a0_0000, Access::Share, Perms::RWX, 10 * M, 10 * M),
    )
    .unwrap();
    let span = args(fd, 0x8090_0000, Access::Share, Perms::RWX, 9 * M, 2 * M);
    assert_eq!(errno(map(&vm, &unmap(span))), libc::ENOENT);
}

// SPEC B-ADD-9 across VMs (TV map_memory_ioff).
#[test]
fn a_file_range_binds_once_across_all_vms() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let vm2 = dev.create_vm().unwrap();
    let fd = register(dev.create_guest_mem(20 * M, 0).unwrap());
    map(
        &vm,
        &args(fd, 0x8000_0000, Access::Share, Perms::RWX, 0, 10 * M),
    )
    .unwrap();
    for (v, gpa, access) in [
        (&vm, 0x80a0_0000, Access::Share),
        (&vm, 0x8000_0000, Access::Lend),
        (&vm, 0x80a0_0000, Access::Lend),
        (&vm2, 0x80a0_0000, Access::Lend),
    ] {
        assert_eq!(
            errno(map(v, &args(fd, gpa, access, Perms::RWX, 0, 10 * M))),
            libc::EEXIST
        );
    }
    // Adjacent file range: fine, in either VM.
    map(
        &vm2,
        &args(fd, 0x80a0_0000, Access::Share, Perms::RWX, 10 * M, 10 * M),
    )
    .unwrap();
}

// SPEC GM-LT-1: bindings keep a closed file alive; its number is EBADF.
#[test]
fn a_closed_file_stays_bound_and_its_descriptor_is_dead_for_map_mem() {
    let Some(g) = guest() else { return };
    let fd = register(g.file(FileKind::GuestMemfd, 2 * M));
    let mem = FILES.get(fd).unwrap();
    g.vm.bind(&BindRequest::new(
        &mem,
        GuestAddress(DATA),
        0,
        2 * M,
        Access::Share,
        Perms::RW,
    ))
    .unwrap();
    mem.write_at(0, &0xabcu64.to_le_bytes()).unwrap();
    drop(mem);
    FILES.close(fd);
    let again = args(fd, DATA + 4 * M, Access::Share, Perms::RW, 0, M);
    assert_eq!(errno(map(&g.vm, &again)), libc::EBADF);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = test_guests::holding_cell::Cell::new(&mut vcpu);
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
        gunyah_abi::add_function(
            &vm,
            &gunyah_fn_desc {
                type_: GUNYAH_FN_VCPU,
                arg_size: 4,
                arg: &arg as *const _ as u64,
            },
        )
    };
    let remove = |id: u32| {
        let arg = gunyah_fn_vcpu_arg { id };
        gunyah_abi::remove_function(
            &vm,
            &gunyah_fn_desc {
                type_: GUNYAH_FN_VCPU,
                arg_size: 4,
                arg: &arg as *const _ as u64,
            },
        )
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
    assert_eq!(v0.last_exit(), None, "a new vCPU has no exit yet");
    // Wrong size for the type, and F-1's general rules.
    let arg = gunyah_fn_vcpu_arg { id: 3 };
    let p = &arg as *const _ as u64;
    let desc = |type_, arg_size, arg| gunyah_fn_desc {
        type_,
        arg_size,
        arg,
    };
    assert_eq!(
        errno(gunyah_abi::add_function(&vm, &desc(GUNYAH_FN_VCPU, 8, p))),
        libc::EINVAL
    );
    assert_eq!(
        errno(gunyah_abi::add_function(&vm, &desc(GUNYAH_FN_VCPU, 257, p))),
        libc::EINVAL
    );
    assert_eq!(
        errno(gunyah_abi::add_function(&vm, &desc(GUNYAH_FN_VCPU, 4, 16))),
        libc::EFAULT
    );
    assert_eq!(
        errno(gunyah_abi::add_function(&vm, &desc(9, 4, p))),
        libc::ENOENT
    );
}

// SPEC F-5 (TV irqfd create_many).
#[test]
fn irqfd_labels_are_unique_and_checked() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let events: Vec<EventFd> = (0..6).map(|_| EventFd::new(0).unwrap()).collect();
    for (label, e) in events[..4].iter().enumerate() {
        vm.add_irqfd(e, label as u32, label % 2 == 1).unwrap();
    }
    assert_eq!(errno(vm.add_irqfd(&events[4], 0, false)), libc::EEXIST);
    assert_eq!(errno(vm.add_irqfd(&events[4], 0, true)), libc::EEXIST);
    // Raw flags, descriptors and x86's label range.
    let raw = |fd: u32, label: u32, flags: u32| {
        let arg = gunyah_fn_irqfd_arg {
            fd,
            label,
            flags,
            padding: 0,
        };
        gunyah_abi::add_function(
            &vm,
            &gunyah_fn_desc {
                type_: GUNYAH_FN_IRQFD,
                arg_size: 16,
                arg: &arg as *const _ as u64,
            },
        )
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
    vm.add_irqfd(&events[4], 0, false).unwrap();
}

// SPEC B-VM-6 on x86 (TV set_boot_context).
#[test]
fn boot_context_accepts_the_x86_registers_only() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let set = |reg: u32, reserved: u32| {
        gunyah_abi::set_boot_context(
            &vm,
            &gunyah_vm_boot_context {
                reg,
                reserved,
                value: 0xd00d,
            },
            Profile::Strict,
        )
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

// SPEC F-6: the argument's length, range and DATAMATCH rules come before
// its descriptor, as in Gunyah: a bad length with a closed descriptor is
// EINVAL, not EBADF. (Found by the `gunyah_abi` fuzz target.)
#[test]
fn ioeventfd_values_are_checked_before_the_descriptor() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let add = |addr: u64, len: u32, fd: i32, flags: u32| {
        let arg = gunyah_fn_ioeventfd_arg {
            datamatch: 7,
            addr,
            len,
            fd,
            flags,
            padding: 0,
        };
        gunyah_abi::add_function(
            &vm,
            &gunyah_fn_desc {
                type_: GUNYAH_FN_IOEVENTFD,
                arg_size: 32,
                arg: &arg as *const _ as u64,
            },
        )
    };
    let closed = 1_000_000;
    assert_eq!(errno(add(0x9000, 3, closed, 0)), libc::EINVAL, "length 3");
    assert_eq!(errno(add(0x9000, 111, -1, 0)), libc::EINVAL, "length 111");
    assert_eq!(
        errno(add(u64::MAX - 3, 8, closed, 0)),
        libc::EINVAL,
        "range wraps"
    );
    assert_eq!(
        errno(add(0x9000, 0, closed, GUNYAH_IOEVENTFD_FLAGS_DATAMATCH)),
        libc::EINVAL,
        "DATAMATCH without a length"
    );
    // Valid values: now the descriptor decides.
    assert_eq!(errno(add(0x9000, 4, closed, 0)), libc::EBADF);
    let event = EventFd::new(0).unwrap();
    assert!(add(0x9000, 4, event.as_raw_fd(), 0).is_ok());
    assert_eq!(vm.function_counts().1, 1);
}
