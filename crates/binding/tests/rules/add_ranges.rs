//! MAP_MEM add, the ranges: what a kind of file cannot do (DESIGN D6, D3),
//! file-range and guest-range exclusivity (B-ADD-9, B-ADD-10), and what a
//! successful add records (B-ADD-11).

use super::*;

// ----- DESIGN D6, D3: what a kind of file cannot do -----

fn private_rules() -> FileRules {
    FileRules {
        owner: None,
        share_allowed: false,
        write_required: true,
    }
}

#[test]
fn share_binding_of_private_file_is_refused() {
    // DESIGN D6
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(
        8 * P,
        0,
        FileRules {
            share_allowed: false,
            ..FileRules::FREE_STANDING
        },
    );
    let e = w.refused(vm, args(GPA, f, 0, P, SHARE_RWX), libc::EINVAL);
    assert_eq!(e, Error::ShareNotAllowed(f));
    w.map(vm, args(GPA, f, 0, P, LEND_RWX));
    w.map(
        vm,
        args(
            GPA + P,
            f,
            P,
            P,
            GUNYAH_MEM_DEFAULT_ACCESS | Perms::R.bits(),
        ),
    );
}

#[test]
fn binding_without_write_of_write_required_file_is_refused() {
    // DESIGN D3
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(
        8 * P,
        0,
        FileRules {
            write_required: true,
            ..FileRules::FREE_STANDING
        },
    );
    for perms in [Perms::R, Perms::RX, Perms::new(false, false, true)] {
        for access in [Access::Lend, Access::Share] {
            let e = w.refused(
                vm,
                args(GPA, f, 0, P, map_flags(access, perms)),
                libc::EINVAL,
            );
            assert_eq!(e, Error::WriteRequired(f));
        }
    }
    w.map(vm, args(GPA, f, 0, P, map_flags(Access::Share, Perms::RW)));
    w.map(
        vm,
        args(
            GPA + P,
            f,
            P,
            P,
            map_flags(Access::Lend, Perms::new(false, true, false)),
        ),
    );
}

#[test]
fn share_refusal_reported_before_write_refusal() {
    // DESIGN D6 before D3.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(8 * P, 0, private_rules());
    let flags = map_flags(Access::Share, Perms::R);
    let e = w.refused(vm, args(GPA, f, 0, P, flags), libc::EINVAL);
    assert_eq!(e, Error::ShareNotAllowed(f));
}

#[test]
fn range_checks_come_before_file_kind_rules() {
    // SPEC B-ADD-8 before DESIGN D6.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(8 * P, 0, private_rules());
    let e = w.refused(vm, args(GPA, f, 0, 9 * P, SHARE_RWX), libc::EINVAL);
    assert!(matches!(e, Error::BeyondEndOfFile { .. }), "{e:?}");
}

#[test]
fn file_kind_rules_come_before_overlap_checks() {
    // DESIGN D3 before SPEC B-ADD-9: EINVAL, not EEXIST.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(8 * P, 0, private_rules());
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    let flags = map_flags(Access::Lend, Perms::RX);
    let e = w.refused(vm, args(GPA, f, 0, 4 * P, flags), libc::EINVAL);
    assert_eq!(e, Error::WriteRequired(f));
    let e = w.refused(vm, args(GPA, f, 0, 4 * P, SHARE_RWX), libc::EINVAL);
    assert_eq!(e, Error::ShareNotAllowed(f));
}

#[test]
fn removal_is_not_subject_to_file_kind_rules() {
    // SPEC B-RM-2: a removal only has to match; flags no binding can have
    // simply match nothing.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file_with(8 * P, 0, private_rules());
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    let e = w.refused(vm, unmap(args(GPA, f, 0, 4 * P, SHARE_RWX)), libc::ENOENT);
    assert!(matches!(e, Error::NoMatchingBinding { .. }), "{e:?}");
    let rx = map_flags(Access::Lend, Perms::RX);
    w.refused(vm, unmap(args(GPA, f, 0, 4 * P, rx)), libc::ENOENT);
}

// ----- B-ADD-9: file-range exclusivity -----

#[test]
fn same_file_range_in_two_vms_is_refused() {
    // SPEC B-ADD-9
    let (mut w, a, f) = world();
    let b = w.vm();
    let existing = w.map(a, args(GPA, f, 4 * P, 4 * P, LEND_RWX)).added[0];
    let e = w.refused(b, args(GPA, f, 4 * P, 4 * P, LEND_RWX), libc::EEXIST);
    assert_eq!(
        e,
        Error::FileRangeBound {
            offset: 4 * P,
            size: 4 * P,
            vm: a,
            existing
        }
    );
    w.refused(b, args(0, f, 4 * P, 4 * P, SHARE_RWX), libc::EEXIST);
}

#[test]
fn same_file_range_twice_in_one_vm_is_refused_even_as_share() {
    // SPEC B-ADD-9 (TV map_memory_ioff)
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    for flags in [LEND_RWX, SHARE_RWX, GUNYAH_MEM_ALLOW_READ] {
        let e = w.refused(vm, args(2 * GPA, f, 0, 4 * P, flags), libc::EEXIST);
        assert!(matches!(e, Error::FileRangeBound { vm: v, .. } if v == vm));
    }
}

#[test]
fn partial_file_range_overlap_is_refused() {
    // SPEC B-ADD-9: any shared file page counts.
    let (mut w, a, f) = world();
    let b = w.vm();
    w.map(a, args(GPA, f, 8 * P, 4 * P, LEND_RWX));
    for (offset, size) in [
        (7 * P, 2 * P),  // over the first page
        (11 * P, 2 * P), // over the last page
        (9 * P, P),      // inside
        (4 * P, 16 * P), // around
        (8 * P, 4 * P),  // exactly
    ] {
        let e = w.refused(b, args(GPA, f, offset, size, LEND_RWX), libc::EEXIST);
        assert!(matches!(e, Error::FileRangeBound { .. }), "{e:?}");
    }
}

#[test]
fn adjacent_file_ranges_are_accepted() {
    // SPEC B-ADD-9: ranges that only touch do not intersect.
    let (mut w, a, f) = world();
    let b = w.vm();
    w.map(a, args(GPA, f, 8 * P, 4 * P, LEND_RWX));
    w.map(b, args(GPA, f, 4 * P, 4 * P, LEND_RWX)); // ends where it starts
    w.map(b, args(GPA + 4 * P, f, 12 * P, 4 * P, SHARE_RWX)); // starts where it ends
    w.map(a, args(GPA + 4 * P, f, 16 * P, P, LEND_RWX));
    assert_eq!(w.reg.file_bindings(f, 0, 64 * P).len(), 4);
}

#[test]
fn file_overlap_reported_before_guest_overlap() {
    // SPEC B-ADD-9 comes before B-ADD-10.
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    let e = w.refused(vm, args(GPA, f, 0, 4 * P, LEND_RWX), libc::EEXIST);
    assert!(matches!(e, Error::FileRangeBound { .. }), "{e:?}");
}

// ----- B-ADD-10: guest-range exclusivity -----

#[test]
fn guest_range_overlap_in_same_vm_is_refused() {
    // SPEC B-ADD-10: whatever the file.
    let (mut w, vm, f) = world();
    let g = w.file(64 * P, 0);
    let existing = w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX)).added[0];
    for (guest, size) in [
        (GPA - P, 2 * P),
        (GPA + 3 * P, 2 * P),
        (GPA + P, P),
        (GPA - 4 * P, 16 * P),
        (GPA, 4 * P),
    ] {
        let e = w.refused(vm, args(guest, g, 0, size, LEND_RWX), libc::EEXIST);
        assert_eq!(
            e,
            Error::GuestRangeBound {
                guest_addr: guest,
                size,
                existing
            }
        );
    }
}

#[test]
fn adjacent_guest_ranges_are_accepted() {
    // SPEC B-ADD-10: ranges that only touch do not intersect.
    let (mut w, vm, f) = world();
    let g = w.file(64 * P, 0);
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    w.map(vm, args(GPA - 2 * P, g, 0, 2 * P, LEND_RWX));
    w.map(vm, args(GPA + 4 * P, g, 2 * P, 2 * P, SHARE_RWX));
    assert_eq!(w.reg.bindings_in(vm, GPA - 2 * P, 8 * P).len(), 3);
}

#[test]
fn same_guest_range_in_another_vm_is_accepted() {
    // SPEC B-ADD-10 is per VM.
    let (mut w, a, f) = world();
    let b = w.vm();
    w.map(a, args(GPA, f, 0, 4 * P, LEND_RWX));
    w.map(b, args(GPA, f, 4 * P, 4 * P, LEND_RWX));
}

// ----- B-ADD-11: what a successful add records -----

#[test]
fn add_records_the_binding_and_reports_it_in_the_plan() {
    // SPEC B-ADD-11, GM-LT-4
    let (mut w, vm, f) = world();
    let req = MapRequest::new(GPA, f, 2 * P, 4 * P, Access::Share, Perms::RW);
    let plan = w.map(vm, req.args());
    let b = binding(GPA, f, 2 * P, 4 * P, map_flags(Access::Share, Perms::RW));
    assert_eq!(plan.vm, vm);
    assert_eq!(plan.change, Change::Added);
    assert_eq!(plan.added, vec![b]);
    assert!(plan.reclaim.is_empty() && plan.removed.is_empty() && plan.dropped_files.is_empty());
    assert_eq!(plan.reclaim_bytes(), 0);
    assert_eq!(w.reg.bindings(vm), vec![b]);
    assert_eq!(w.reg.binding_count(vm), 1);
    assert_eq!(w.reg.lookup(vm, GPA), Some(b));
    assert_eq!(w.reg.lookup(vm, GPA + 4 * P - 1), Some(b));
    assert_eq!(w.reg.lookup(vm, GPA + 4 * P), None);
    assert_eq!(w.reg.lookup(vm, GPA - 1), None);
    assert_eq!(w.reg.file_bindings(f, 0, 3 * P), vec![(vm, b)]);
    assert_eq!(w.reg.file_bindings(f, 0, 2 * P), vec![]);
    assert_eq!(w.refs(f), 2);
}

#[test]
fn bindings_are_listed_in_guest_address_order() {
    // SPEC B-ADD-11: recorded in the VM keyed by guest range.
    // Bindings::bindings is sorted by guest address.
    let (mut w, vm, f) = world();
    for (i, slot) in [5u64, 1, 9, 3, 7].into_iter().enumerate() {
        w.map(vm, args(slot * 4 * P, f, i as u64 * P, P, LEND_RWX));
    }
    let addrs: Vec<u64> = w.reg.bindings(vm).iter().map(|b| b.guest_addr).collect();
    assert_eq!(addrs, [1, 3, 5, 7, 9].map(|s| s * 4 * P));
}

#[test]
fn range_queries_return_intersecting_bindings_only() {
    // SPEC B-ADD-11: recorded in the VM and in the file.
    let (mut w, vm, f) = world();
    let a = w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX)).added[0];
    let b = w
        .map(vm, args(GPA + 8 * P, f, 8 * P, 4 * P, LEND_RWX))
        .added[0];
    assert_eq!(w.reg.bindings_in(vm, GPA, 12 * P), vec![a, b]);
    assert_eq!(w.reg.bindings_in(vm, GPA + 3 * P, 6 * P), vec![a, b]);
    assert_eq!(w.reg.bindings_in(vm, GPA + 4 * P, 4 * P), vec![]);
    assert_eq!(w.reg.bindings_in(vm, GPA + 4 * P - 1, 1), vec![a]);
    assert_eq!(w.reg.file_bindings(f, 3 * P, 6 * P), vec![(vm, a), (vm, b)]);
    assert_eq!(w.reg.file_bindings(f, 4 * P, 4 * P), vec![]);
    assert_eq!(w.reg.bindings_in(VmId(999), 0, u64::MAX), vec![]);
    assert_eq!(w.reg.file_bindings(FileId(999), 0, u64::MAX), vec![]);
}

#[test]
fn empty_query_range_intersects_nothing() {
    // SPEC B-ADD-11; an empty range holds no byte, even inside a binding
    // (the engine returned the binding around it before the fix in
    // `all_overlapping`).
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    for at in [GPA, GPA + P, GPA + 4 * P - 1] {
        assert_eq!(w.reg.bindings_in(vm, at, 0), vec![], "at {at:#x}");
    }
    for at in [0, P, 4 * P - 1] {
        assert_eq!(w.reg.file_bindings(f, at, 0), vec![], "at {at:#x}");
    }
}

#[test]
fn default_access_behaves_as_lend() {
    // SPEC B-AC-3
    let (mut w, vm, f) = world();
    let d = w.map(
        vm,
        args(
            GPA,
            f,
            0,
            P,
            GUNYAH_MEM_DEFAULT_ACCESS | GUNYAH_MEM_ALLOW_READ,
        ),
    );
    let l = w.map(
        vm,
        args(
            GPA + P,
            f,
            P,
            P,
            GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_READ,
        ),
    );
    let s = w.map(vm, args(GPA + 2 * P, f, 2 * P, P, SHARE_RWX));
    assert!(d.added[0].is_lend() && d.added[0].access() == Access::Lend);
    assert!(l.added[0].is_lend());
    assert!(!s.added[0].is_lend() && s.added[0].access() == Access::Share);
    assert_eq!(d.added[0].perms(), Perms::R);
    // Still distinct values: DEFAULT stays DEFAULT in the record.
    assert_eq!(
        d.added[0].flags & GUNYAH_MEM_ACCESS_MASK,
        GUNYAH_MEM_DEFAULT_ACCESS
    );
}
