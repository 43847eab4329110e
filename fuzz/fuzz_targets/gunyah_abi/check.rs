//! What the `gunyah_abi` target asserts: the errnos SPEC §2.13 allows for
//! each request, the exact answers where the SPEC's order of checks fixes
//! them, and lendvm's own consistency (bindings never overlap, within a VM
//! or on a file across VMs; every installed memslot lies inside a binding,
//! a user region or lendvm's system region).

use std::ops::Range;

use libc::{EBADF, EBUSY, EEXIST, EFAULT, EINTR, EINVAL, ENODEV, ENOENT, ENOSPC, EOVERFLOW};
use vmm::native_abi::{SYSTEM_REGION_BASE, SYSTEM_REGION_SIZE};
use vmm::{BindingInfo, Vm};

/// A raw request, for the errno table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    CreateVm,
    CreateMem,
    MapAdd,
    MapRemove,
    AddFunction,
    RemoveFunction,
    SetDtb,
    SetFw,
    SetBootContext,
    Start,
    VcpuRun,
    UserMem,
}

/// SPEC §2.13 by request. lendvm adds one errno the SPEC has no row for:
/// ENOSPC (`vmm::Error::NoSlots`), when a binding, a split, a user region
/// or the DTB hand-over would need more KVM memslots than the VM has left.
pub fn allowed(req: Request) -> &'static [i32] {
    match req {
        // "CREATE_VM arg ≠ 0; CREATE_GUEST_MEM bad flags/size".
        Request::CreateVm | Request::CreateMem => &[EINVAL],
        // Bad fd; wrong kind, flags, alignment, size, range; already bound.
        Request::MapAdd => &[EBADF, EINVAL, EEXIST, ENOSPC],
        // As add, but no match is ENOENT; reclaim refused is EBUSY.
        Request::MapRemove => &[EBADF, EINVAL, ENOENT, EBUSY, ENOSPC],
        // Size/type/flags EINVAL, unknown type ENOENT, duplicate EEXIST,
        // bad irqfd/ioeventfd fd EBADF, copy_from_user EFAULT.
        Request::AddFunction => &[EINVAL, ENOENT, EEXIST, EBADF, EFAULT],
        Request::RemoveFunction => &[EINVAL, ENOENT, EFAULT],
        // Wrap EOVERFLOW; after START EBUSY (B-VM-4, [REC]).
        Request::SetDtb | Request::SetFw => &[EOVERFLOW, EBUSY],
        Request::SetBootContext => &[EINVAL],
        // Failed/exited ENODEV; DTB outside one binding ENOENT; unset or
        // refused by a rule EINVAL; DTB pages host-mapped EBUSY (B-VM-3.4).
        Request::Start => &[ENODEV, ENOENT, EINVAL, EBUSY, ENOSPC],
        Request::VcpuRun => &[ENODEV, EINTR, EINVAL],
        // B-VM-7: flags/alignment EINVAL, label or overlap EEXIST.
        Request::UserMem => &[EINVAL, EEXIST, ENOSPC],
    }
}

/// What the harness knows the answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Ok,
    Errno(i32),
    /// Anything [`allowed`] for the request.
    Allowed,
    /// Success or one of these.
    OkOr(&'static [i32]),
    /// Anything [`allowed`], or one of these (known findings).
    AllowedOr(&'static [i32]),
}

/// Panic unless `r` is what `expect` and the errno table allow.
pub fn check_result<T>(
    req: Request,
    expect: Expect,
    r: &vmm::Result<T>,
    what: &dyn std::fmt::Debug,
) {
    match (r, expect) {
        (Ok(_), Expect::Ok | Expect::Allowed | Expect::OkOr(_) | Expect::AllowedOr(_)) => {}
        (Ok(_), Expect::Errno(e)) => panic!("{req:?} {what:?}: succeeded, expected errno {e}"),
        (Err(e), Expect::Ok) => panic!(
            "{req:?} {what:?}: expected success, got {e} (errno {})",
            e.errno()
        ),
        (Err(e), Expect::Errno(want)) => {
            assert_eq!(e.errno(), want, "{req:?} {what:?}: wrong errno for {e}")
        }
        (Err(e), Expect::OkOr(errnos)) => assert!(
            errnos.contains(&e.errno()),
            "{req:?} {what:?}: errno {} ({e}), expected success or one of {errnos:?}",
            e.errno()
        ),
        (Err(e), Expect::AllowedOr(known)) => assert!(
            allowed(req).contains(&e.errno()) || known.contains(&e.errno()),
            "{req:?} {what:?}: errno {} ({e}) is not one SPEC §2.13 allows ({:?}) nor a known finding ({known:?})",
            e.errno(),
            allowed(req)
        ),
        (Err(e), Expect::Allowed) => assert!(
            allowed(req).contains(&e.errno()),
            "{req:?} {what:?}: errno {} ({e}) is not one SPEC §2.13 allows ({:?})",
            e.errno(),
            allowed(req)
        ),
    }
}

/// True if raw MAP_MEM `flags` pass B-ADD-4..6 in their encoding.
pub fn map_flags_valid(flags: u32, upstream: bool) -> bool {
    let (perms, access) = if upstream {
        ((flags >> 4) & 7, flags & 7)
    } else {
        (flags & 7, (flags >> 4) & 7)
    };
    let unknown = flags & !(0x7 | 0x70 | 0x100);
    unknown == 0 && perms != 0 && access <= 2
}

/// The flags a binding made with valid raw `flags` records: Android
/// (`uapi`) encoding, UNMAP clear.
pub fn recorded_flags(flags: u32, upstream: bool) -> u32 {
    if upstream {
        ((flags & 7) << 4) | ((flags >> 4) & 7)
    } else {
        flags & 0x77
    }
}

/// lendvm's consistency checks on one VM: bindings sorted and disjoint,
/// and every installed memslot inside a binding, a user region of `user`
/// or the system region.
pub fn check_vm(vm: &Vm, user: &[Range<u64>]) {
    let bindings = vm.bindings();
    for w in bindings.windows(2) {
        assert!(
            w[0].guest_end() <= w[1].guest_addr,
            "bindings overlap or are out of order: {:x?} then {:x?}",
            w[0],
            w[1]
        );
    }
    let system = SYSTEM_REGION_BASE..SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE;
    for (r, slot) in vm.installed() {
        let inside = |o: &Range<u64>| o.start <= r.start && r.end <= o.end;
        let covered = inside(&system)
            || user.iter().any(inside)
            || bindings
                .iter()
                .any(|b| inside(&(b.guest_addr..b.guest_end())));
        assert!(
            covered,
            "memslot {slot} {r:x?} lies outside every binding and user region; bindings {bindings:x?}, user regions {user:x?}"
        );
    }
}

/// SPEC B-ADD-9 across VMs: no two bindings hold the same page of a file.
pub fn check_file_ranges(all: &[BindingInfo]) {
    let mut v: Vec<&BindingInfo> = all.iter().collect();
    v.sort_by_key(|b| (b.file, b.offset));
    for w in v.windows(2) {
        if w[0].file == w[1].file {
            assert!(
                w[0].file_end() <= w[1].offset,
                "two bindings hold the same file range: {:x?} and {:x?}",
                w[0],
                w[1]
            );
        }
    }
}
