//! MAP_MEM remove: which removals match (B-RM-1, B-RM-2), the four cases
//! (B-RM-3, B-RM-4), freed ranges (B-RM-5), reference counts (GM-LT-4,
//! B-RM-6) and VM teardown.

use super::*;

// ----- B-RM-1, B-RM-2: which removals match -----

#[test]
fn unmap_arguments_are_validated_before_matching() {
    // SPEC B-RM-1: a bad argument is EINVAL / EBADF even where a binding
    // exists, never ENOENT.
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 8 * P, LEND_RWX));
    let ok = unmap(args(GPA, f, 0, 4 * P, LEND_RWX));
    for (a, errno) in [
        (
            gunyah_map_mem_args {
                guest_mem_fd: 999,
                ..ok
            },
            libc::EBADF,
        ),
        (
            gunyah_map_mem_args {
                flags: ok.flags | unknown_map_bits()[0],
                ..ok
            },
            libc::EINVAL,
        ),
        (
            gunyah_map_mem_args {
                flags: GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_UNMAP,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            gunyah_map_mem_args {
                guest_addr: GPA + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (gunyah_map_mem_args { size: 0, ..ok }, libc::EINVAL),
        (gunyah_map_mem_args { size: 65 * P, ..ok }, libc::EINVAL),
    ] {
        w.refused(vm, a, errno);
    }
    w.map(vm, ok);
}

fn no_match(w: &mut World, vm: VmId, a: gunyah_map_mem_args) {
    let e = w.refused(vm, unmap(a), libc::ENOENT);
    assert_eq!(
        e,
        Error::NoMatchingBinding {
            guest_addr: a.guest_addr,
            size: a.size,
            file: FileId(a.guest_mem_fd),
            offset: a.offset,
            flags: a.flags,
        }
    );
}

#[test]
fn unmap_with_wrong_guest_address_is_enoent() {
    // SPEC B-RM-2 (b), (c)
    let (mut w, vm, f, _) = bound_world();
    no_match(&mut w, vm, args(GPA - P, f, 8 * P, P, LEND_RWX));
    no_match(&mut w, vm, args(GPA + P, f, 8 * P, P, LEND_RWX));
    no_match(&mut w, vm, args(2 * GPA, f, 8 * P, P, LEND_RWX));
}

#[test]
fn unmap_with_wrong_file_offset_is_enoent() {
    // SPEC B-RM-2 (c): same guest-to-file translation.
    let (mut w, vm, f, _) = bound_world();
    no_match(&mut w, vm, args(GPA, f, 9 * P, P, LEND_RWX));
    no_match(&mut w, vm, args(GPA + P, f, 8 * P, P, LEND_RWX));
    no_match(&mut w, vm, args(GPA, f, 0, 8 * P, LEND_RWX));
}

#[test]
fn unmap_with_wrong_file_is_enoent() {
    // SPEC B-RM-2: only bindings of this file.
    let (mut w, vm, _, _) = bound_world();
    let g = w.file(64 * P, 0);
    no_match(&mut w, vm, args(GPA, g, 8 * P, 8 * P, LEND_RWX));
}

#[test]
fn unmap_with_wrong_flags_is_enoent() {
    // SPEC B-RM-2 (a): exact flags (TV: Lend-vs-Share, Rx-vs-Rwx).
    let (mut w, vm, f, _) = bound_world();
    for flags in [
        SHARE_RWX,
        map_flags(Access::Lend, Perms::RX),
        map_flags(Access::Lend, Perms::RW),
        GUNYAH_MEM_DEFAULT_ACCESS | GUNYAH_MEM_ALLOW_RWX,
    ] {
        no_match(&mut w, vm, args(GPA, f, 8 * P, 8 * P, flags));
    }
}

#[test]
fn default_and_force_lend_do_not_match_each_other_on_unmap() {
    // SPEC B-RM-2: both lend, but different values.
    let (mut w, vm, f) = world();
    let default = GUNYAH_MEM_DEFAULT_ACCESS | GUNYAH_MEM_ALLOW_RWX;
    w.map(vm, args(GPA, f, 0, 4 * P, default));
    w.map(vm, args(GPA + 4 * P, f, 4 * P, 4 * P, LEND_RWX));
    no_match(&mut w, vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    no_match(&mut w, vm, args(GPA + 4 * P, f, 4 * P, 4 * P, default));
    w.map(vm, unmap(args(GPA, f, 0, 4 * P, default)));
    w.map(vm, unmap(args(GPA + 4 * P, f, 4 * P, 4 * P, LEND_RWX)));
    assert!(w.reg.bindings(vm).is_empty());
}

#[test]
fn unmap_spanning_two_adjacent_bindings_is_enoent() {
    // SPEC B-RM-2: the range must lie in one binding, even when two
    // bindings continue each other exactly.
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    w.map(vm, args(GPA + 4 * P, f, 4 * P, 4 * P, LEND_RWX));
    no_match(&mut w, vm, args(GPA, f, 0, 8 * P, LEND_RWX));
    no_match(&mut w, vm, args(GPA + 3 * P, f, 3 * P, 2 * P, LEND_RWX));
}

#[test]
fn unmap_reaching_past_the_binding_is_enoent() {
    // SPEC B-RM-2 (b): containment.
    let (mut w, vm, f, _) = bound_world();
    no_match(&mut w, vm, args(GPA, f, 8 * P, 9 * P, LEND_RWX));
    no_match(&mut w, vm, args(GPA + 7 * P, f, 15 * P, 2 * P, LEND_RWX));
}

#[test]
fn unmap_in_another_vm_or_unbound_range_is_enoent() {
    // SPEC B-RM-2: only this VM's bindings.
    let (mut w, _, f, _) = bound_world();
    let other = w.vm();
    no_match(&mut w, other, args(GPA, f, 8 * P, 8 * P, LEND_RWX));
    let (mut w, vm, f) = world();
    no_match(&mut w, vm, args(GPA, f, 0, P, LEND_RWX));
}

// ----- B-RM-3, B-RM-4: the four removal cases -----

#[test]
fn unmap_whole_binding_removes_it() {
    // SPEC B-RM-3 case 1, B-RM-4
    let (mut w, vm, f, b) = bound_world();
    let req = args(GPA, f, 8 * P, 8 * P, LEND_RWX);
    let plan = w.map(vm, unmap(req));
    assert_eq!(plan.change, Change::Removed(RemoveCase::Whole));
    assert_eq!(plan.reclaim, vec![b]);
    assert_eq!(plan.reclaim_bytes(), 8 * P);
    assert_eq!(plan.removed, vec![b]);
    assert_eq!(plan.added, vec![]);
    assert_eq!(plan.dropped_files, vec![]);
    assert!(w.reg.bindings(vm).is_empty());
    assert_eq!(w.reg.lookup(vm, GPA), None);
    assert_eq!(w.refs(f), 1);
}

#[test]
fn unmap_front_keeps_tail_with_offset_moved_forward() {
    // SPEC B-RM-3 case 2 (head = 0, tail > 0)
    let (mut w, vm, f, b) = bound_world();
    let plan = w.map(vm, unmap(args(GPA, f, 8 * P, 3 * P, LEND_RWX)));
    let tail = binding(GPA + 3 * P, f, 11 * P, 5 * P, LEND_RWX);
    assert_eq!(plan.change, Change::Removed(RemoveCase::Front));
    assert_eq!(plan.reclaim, vec![binding(GPA, f, 8 * P, 3 * P, LEND_RWX)]);
    assert_eq!(plan.removed, vec![b]);
    assert_eq!(plan.added, vec![tail]);
    assert_eq!(w.reg.bindings(vm), vec![tail]);
    assert_eq!(w.refs(f), 2);
}

#[test]
fn unmap_back_keeps_head_with_same_offset() {
    // SPEC B-RM-3 case 3 (head > 0, tail = 0)
    let (mut w, vm, f, b) = bound_world();
    let plan = w.map(vm, unmap(args(GPA + 6 * P, f, 14 * P, 2 * P, LEND_RWX)));
    let head = binding(GPA, f, 8 * P, 6 * P, LEND_RWX);
    assert_eq!(plan.change, Change::Removed(RemoveCase::Back));
    assert_eq!(
        plan.reclaim,
        vec![binding(GPA + 6 * P, f, 14 * P, 2 * P, LEND_RWX)]
    );
    assert_eq!(plan.removed, vec![b]);
    assert_eq!(plan.added, vec![head]);
    assert_eq!(w.reg.bindings(vm), vec![head]);
    assert_eq!(w.refs(f), 2);
}

#[test]
fn unmap_middle_splits_binding_in_two() {
    // SPEC B-RM-3 case 4: the tail takes its own file reference.
    let (mut w, vm, f, b) = bound_world();
    let plan = w.map(vm, unmap(args(GPA + 2 * P, f, 10 * P, 3 * P, LEND_RWX)));
    let head = binding(GPA, f, 8 * P, 2 * P, LEND_RWX);
    let tail = binding(GPA + 5 * P, f, 13 * P, 3 * P, LEND_RWX);
    assert_eq!(plan.change, Change::Removed(RemoveCase::Middle));
    assert_eq!(
        plan.reclaim,
        vec![binding(GPA + 2 * P, f, 10 * P, 3 * P, LEND_RWX)]
    );
    assert_eq!(plan.reclaim_bytes(), 3 * P);
    assert_eq!(plan.removed, vec![b]);
    assert_eq!(plan.added, vec![head, tail]);
    assert_eq!(w.reg.bindings(vm), vec![head, tail]);
    assert_eq!(
        w.reg.file_bindings(f, 0, 64 * P),
        vec![(vm, head), (vm, tail)]
    );
    assert_eq!(w.reg.lookup(vm, GPA + 3 * P), None);
    assert_eq!(w.refs(f), 3);
    // The pieces are bindings in their own right.
    let e = w.refused(
        vm,
        unmap(args(GPA, f, 8 * P, 8 * P, LEND_RWX)),
        libc::ENOENT,
    );
    assert!(matches!(e, Error::NoMatchingBinding { .. }));
    w.map(vm, unmap(args(GPA + 5 * P, f, 13 * P, 3 * P, LEND_RWX)));
    assert_eq!(w.reg.bindings(vm), vec![head]);
}

#[test]
fn unmap_middle_of_hugepage_binding_splits_on_2mib_boundaries() {
    // SPEC B-RM-3 case 4 with B-ADD-7H units.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(8 * H, file_flags::ALLOW_HUGEPAGE);
    let flags = map_flags(Access::Share, Perms::RW);
    w.map(vm, args(0, f, 2 * H, 4 * H, flags));
    let plan = w.map(vm, unmap(args(H, f, 3 * H, 2 * H, flags)));
    assert_eq!(plan.change, Change::Removed(RemoveCase::Middle));
    assert_eq!(
        plan.added,
        vec![
            binding(0, f, 2 * H, H, flags),
            binding(3 * H, f, 5 * H, H, flags)
        ]
    );
    assert_eq!(w.refs(f), 3);
}

// ----- B-RM-5: removed ranges are free again -----

#[test]
fn removed_file_range_can_be_bound_again_in_another_vm() {
    // SPEC B-RM-5
    let (mut w, vm, f, _) = bound_world();
    let other = w.vm();
    w.map(vm, unmap(args(GPA + 2 * P, f, 10 * P, 3 * P, LEND_RWX)));
    w.refused(other, args(0, f, 9 * P, 2 * P, LEND_RWX), libc::EEXIST);
    w.map(other, args(0, f, 10 * P, 3 * P, SHARE_RWX));
}

#[test]
fn removed_guest_range_can_be_bound_to_another_file() {
    // SPEC B-RM-5
    let (mut w, vm, f, _) = bound_world();
    let g = w.file(64 * P, 0);
    w.map(vm, unmap(args(GPA + 2 * P, f, 10 * P, 3 * P, LEND_RWX)));
    w.refused(vm, args(GPA + 2 * P, g, 0, 4 * P, LEND_RWX), libc::EEXIST);
    w.map(vm, args(GPA + 2 * P, g, 0, 3 * P, LEND_RWX));
    // Refilling the hole exactly gives three adjacent bindings, which a
    // single removal cannot span.
    let e = w.refused(
        vm,
        unmap(args(GPA, f, 8 * P, 8 * P, LEND_RWX)),
        libc::ENOENT,
    );
    assert!(matches!(e, Error::NoMatchingBinding { .. }));
    assert_eq!(w.reg.binding_count(vm), 3);
}

// ----- GM-LT-4, B-RM-6: reference counts -----

#[test]
fn reference_counts_follow_binding_count() {
    // SPEC GM-LT-4, B-RM-6, B-ADD-12
    let (mut w, vm, f) = world();
    assert_eq!(w.refs(f), 1); // the open handle
    w.map(vm, args(GPA, f, 0, 16 * P, LEND_RWX));
    assert_eq!(w.refs(f), 2); // +1 per add
    w.map(vm, args(2 * GPA, f, 32 * P, 4 * P, LEND_RWX));
    assert_eq!(w.refs(f), 3);
    w.refused(vm, args(GPA, f, 0, P, LEND_RWX), libc::EEXIST);
    w.refused(vm, unmap(args(GPA, f, P, P, LEND_RWX)), libc::ENOENT);
    assert_eq!(w.refs(f), 3); // failures change nothing
    w.map(vm, unmap(args(GPA + 4 * P, f, 4 * P, 4 * P, LEND_RWX)));
    assert_eq!(w.refs(f), 4); // +1 per split
    w.map(vm, unmap(args(GPA, f, 0, P, LEND_RWX)));
    assert_eq!(w.refs(f), 4); // front shrink: 0
    w.map(vm, unmap(args(GPA + 15 * P, f, 15 * P, P, LEND_RWX)));
    assert_eq!(w.refs(f), 4); // back shrink: 0
    w.map(vm, unmap(args(2 * GPA, f, 32 * P, 4 * P, LEND_RWX)));
    assert_eq!(w.refs(f), 3); // -1 per whole removal
    w.reg.destroy_vm(vm);
    assert_eq!(w.refs(f), 1);
}

// ----- VM teardown -----

#[test]
fn destroy_vm_frees_every_file_range() {
    // SPEC B-VM-8, L-2 (DESIGN §6 invariant 5)
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(16 * P, 0);
    let g = w.file(2 * H, file_flags::ALLOW_HUGEPAGE);
    let b1 = w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX)).added[0];
    let b2 = w.map(vm, args(0, g, 0, H, SHARE_RWX)).added[0];
    let b3 = w.map(vm, args(2 * GPA, f, 8 * P, 8 * P, LEND_RWX)).added[0];
    let plan = w.reg.destroy_vm(vm);
    assert_eq!(plan.vm, vm);
    assert_eq!(plan.change, Change::VmDestroyed);
    assert_eq!(plan.removed, vec![b2, b1, b3]);
    assert_eq!(plan.reclaim, vec![b2, b1, b3]);
    assert_eq!(plan.added, vec![]);
    assert_eq!(plan.dropped_files, vec![]);
    assert!(!w.reg.vm_exists(vm));
    assert!(w.reg.bindings(vm).is_empty());
    assert_eq!(w.refs(f), 1);
    assert_eq!(w.refs(g), 1);
    let e = w.refused(vm, args(GPA, f, 0, P, LEND_RWX), libc::EBADF);
    assert_eq!(e, Error::UnknownVm(vm));
    // Every range it held is free for another VM.
    let other = w.vm();
    w.map(other, args(GPA, f, 0, 16 * P, LEND_RWX));
    w.map(other, args(0, g, 0, 2 * H, LEND_RWX));
}

#[test]
fn destroy_vm_leaves_other_vms_alone() {
    // SPEC B-VM-8
    let (mut w, a, f) = world();
    let b = w.vm();
    w.map(a, args(GPA, f, 0, 4 * P, LEND_RWX));
    let kept = w.map(b, args(GPA, f, 4 * P, 4 * P, LEND_RWX)).added[0];
    w.reg.destroy_vm(a);
    assert_eq!(w.reg.bindings(b), vec![kept]);
    assert_eq!(w.refs(f), 2);
}

#[test]
fn destroy_unknown_vm_changes_nothing() {
    // SPEC B-VM-8
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX));
    let before = w.snapshot();
    let plan = w.reg.destroy_vm(VmId(999));
    assert!(plan.removed.is_empty() && plan.reclaim.is_empty() && plan.dropped_files.is_empty());
    assert_eq!(w.snapshot(), before);
}
