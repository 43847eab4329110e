//! Closing files (GM-LT-1), plans, and the errno values.

use super::*;

// ----- GM-LT-1: closing files -----

#[test]
fn closing_an_unbound_file_drops_it_at_once() {
    // SPEC GM-LT-1
    let (mut w, _, f) = world();
    assert_eq!(w.reg.close_file(f), Ok(true));
    assert_eq!(w.reg.file_info(f), None);
}

#[test]
fn closing_a_file_twice_or_an_unknown_file_is_ebadf() {
    // SPEC GM-LT-1, B-ADD-2
    let (mut w, vm, f) = world();
    let g = w.file(P, 0);
    w.map(vm, args(GPA, f, 0, P, LEND_RWX));
    assert_eq!(w.reg.close_file(f), Ok(false));
    assert_eq!(w.reg.close_file(g), Ok(true));
    for id in [f, g, FileId(999)] {
        let before = w.snapshot();
        let e = w.reg.close_file(id).unwrap_err();
        assert_eq!(e, Error::UnknownFile(id));
        assert_eq!(e.errno(), libc::EBADF);
        assert_eq!(w.snapshot(), before);
    }
}

#[test]
fn closed_file_stays_alive_while_bound() {
    // SPEC GM-LT-1: each binding holds the file.
    let (mut w, vm, f) = world();
    let a = w.map(vm, args(GPA, f, 0, 4 * P, LEND_RWX)).added[0];
    let b = w.map(vm, args(2 * GPA, f, 8 * P, 4 * P, LEND_RWX)).added[0];
    assert_eq!(w.reg.close_file(f), Ok(false));
    let info = w.reg.file_info(f).expect("kept alive");
    assert!(!info.open);
    assert_eq!(info.refs, 2);
    assert_eq!(info.size, 64 * P);
    assert_eq!(w.reg.bindings(vm), vec![a, b]);
    assert_eq!(w.reg.file_bindings(f, 0, 64 * P), vec![(vm, a), (vm, b)]);
    // Its id is no longer an open file for MAP_MEM.
    w.refused(vm, args(3 * GPA, f, 16 * P, P, LEND_RWX), libc::EBADF);
}

#[test]
fn last_teardown_of_a_closed_file_lists_it_in_dropped_files() {
    // SPEC GM-LT-1: the record goes with its last binding.
    let mut w = World::new();
    let a = w.vm();
    let b = w.vm();
    let f = w.file(16 * P, 0);
    let g = w.file(16 * P, 0);
    w.map(a, args(GPA, f, 0, 4 * P, LEND_RWX));
    w.map(b, args(GPA, f, 4 * P, 4 * P, LEND_RWX));
    w.map(a, args(0, g, 0, 4 * P, LEND_RWX));
    assert_eq!(w.reg.close_file(f), Ok(false));

    let plan = w.reg.destroy_vm(a);
    assert_eq!(plan.dropped_files, vec![], "still bound in VM b; g is open");
    assert_eq!(w.reg.file_info(f).map(|i| i.refs), Some(1));

    let plan_b = w.reg.plan_destroy_vm(b);
    assert_eq!(plan_b.dropped_files, vec![f]);
    assert!(w.reg.file_info(f).is_some(), "a plan changes nothing");
    w.reg.commit(plan_b).unwrap();
    assert_eq!(w.reg.file_info(f), None);
    assert_eq!(w.refs(g), 1);
}

// ----- plans -----

#[test]
fn plan_functions_change_nothing() {
    // SPEC B-ADD-12, B-RM-4 (DESIGN §3: decide, apply, then commit)
    let (w, vm, f, _) = bound_world();
    let before = w.snapshot();
    let plans = [
        w.reg.plan_map_mem(vm, &args(0, f, 0, 4 * P, LEND_RWX)),
        w.reg
            .plan_map_mem(vm, &unmap(args(GPA + P, f, 9 * P, P, LEND_RWX))),
        w.reg
            .plan_map_mem(vm, &unmap(args(GPA, f, 8 * P, 8 * P, LEND_RWX))),
        w.reg.plan_map_mem(vm, &args(GPA, f, 8 * P, P, LEND_RWX)),
    ];
    assert!(plans[..3].iter().all(Result::is_ok));
    assert!(plans[3].is_err());
    let d = w.reg.plan_destroy_vm(vm);
    assert_eq!(d.removed.len(), 1);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn committed_plan_does_what_map_mem_does() {
    // SPEC B-ADD-11, B-RM-3 (DESIGN §3)
    let build = || {
        let (mut w, vm, f, _) = bound_world();
        w.map(vm, args(0, f, 0, 4 * P, SHARE_RWX));
        (w, vm, f)
    };
    let ops = |f: FileId| {
        [
            unmap(args(GPA + 2 * P, f, 10 * P, 2 * P, LEND_RWX)),
            args(GPA + 2 * P, f, 40 * P, 2 * P, LEND_RWX),
            unmap(args(0, f, 0, P, SHARE_RWX)),
        ]
    };
    let (mut direct, vm, f) = build();
    let (mut planned, _, _) = build();
    for a in ops(f) {
        let d = direct.map(vm, a);
        let p = planned.reg.plan_map_mem(vm, &a).unwrap();
        assert_eq!(p, d);
        planned.reg.commit(p).unwrap();
        assert_eq!(planned.snapshot(), direct.snapshot());
    }
}

#[test]
fn stale_plan_is_refused_and_changes_nothing() {
    // SPEC B-ADD-12 (DESIGN §3: a stale plan must not commit)
    let (mut w, vm, f, _) = bound_world();
    let stale = w
        .reg
        .plan_map_mem(vm, &unmap(args(GPA, f, 8 * P, 8 * P, LEND_RWX)))
        .unwrap();
    w.map(vm, args(0, f, 0, P, LEND_RWX));
    let before = w.snapshot();
    let e = w.reg.commit(stale).unwrap_err();
    assert_eq!(e, Error::StalePlan);
    assert_eq!(e.errno(), libc::EAGAIN);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn any_change_makes_earlier_plans_stale() {
    // SPEC B-ADD-12 (DESIGN §3)
    type Change = fn(&mut World, VmId, FileId);
    let changes: [(&str, Change); 5] = [
        ("create_vm", |w, _, _| {
            w.vm();
        }),
        ("create_file", |w, _, _| {
            w.file(P, 0);
        }),
        ("close_file", |w, _, f| {
            w.reg.close_file(f).unwrap();
        }),
        ("destroy_vm", |w, vm, _| {
            w.reg.destroy_vm(vm);
        }),
        ("map_mem", |w, vm, f| {
            w.map(vm, args(0, f, 0, P, LEND_RWX));
        }),
    ];
    for (name, change) in changes {
        let (mut w, vm, f, _) = bound_world();
        let add = w
            .reg
            .plan_map_mem(vm, &args(2 * GPA, f, 32 * P, P, LEND_RWX))
            .unwrap();
        let destroy = w.reg.plan_destroy_vm(vm);
        change(&mut w, vm, f);
        let before = w.snapshot();
        assert_eq!(w.reg.commit(add), Err(Error::StalePlan), "after {name}");
        assert_eq!(w.reg.commit(destroy), Err(Error::StalePlan), "after {name}");
        assert_eq!(w.snapshot(), before, "after {name}");
    }
}

#[test]
fn a_plan_commits_only_once() {
    // SPEC B-ADD-12 (DESIGN §3)
    let (mut w, vm, f) = world();
    let plan = w
        .reg
        .plan_map_mem(vm, &args(GPA, f, 0, P, LEND_RWX))
        .unwrap();
    w.reg.commit(plan.clone()).unwrap();
    let before = w.snapshot();
    assert_eq!(w.reg.commit(plan), Err(Error::StalePlan));
    assert_eq!(w.snapshot(), before);
}

// ----- errno values -----

#[test]
fn errno_constants_equal_libc() {
    // SPEC §2.13
    assert_eq!(errno::ENOENT, libc::ENOENT);
    assert_eq!(errno::EBADF, libc::EBADF);
    assert_eq!(errno::EAGAIN, libc::EAGAIN);
    assert_eq!(errno::EEXIST, libc::EEXIST);
    assert_eq!(errno::EINVAL, libc::EINVAL);
    assert_eq!(errno::ENOSPC, libc::ENOSPC);
}

#[test]
fn every_error_reports_the_spec_errno() {
    // SPEC §2.13
    let f = FileId(1);
    let vm = VmId(2);
    let b = binding(0, f, 0, P, LEND_RWX);
    let cases = [
        (Error::UnknownVm(vm), libc::EBADF),
        (Error::UnknownFile(f), libc::EBADF),
        (Error::BadFileSize(1), libc::EINVAL),
        (Error::UnknownFileFlags(!file_flags::ALL), libc::EINVAL),
        (Error::OutOfFileIds, libc::ENOSPC),
        (
            Error::ForeignFile {
                file: f,
                owner: vm,
                vm,
            },
            libc::EINVAL,
        ),
        (Error::UnknownMapFlags(unknown_map_bits()[0]), libc::EINVAL),
        (Error::NoPermission, libc::EINVAL),
        (Error::BadAccess(GUNYAH_MEM_ACCESS_MASK), libc::EINVAL),
        (
            Error::Misaligned {
                what: "size",
                value: 1,
                unit: Alignment::Page,
            },
            libc::EINVAL,
        ),
        (Error::EmptyRange, libc::EINVAL),
        (
            Error::RangeWraps {
                what: "guest range",
                start: 0,
                size: 0,
            },
            libc::EINVAL,
        ),
        (
            Error::BeyondEndOfFile {
                offset: 0,
                size: 0,
                file_size: 0,
            },
            libc::EINVAL,
        ),
        (Error::ShareNotAllowed(f), libc::EINVAL),
        (Error::WriteRequired(f), libc::EINVAL),
        (
            Error::FileRangeBound {
                offset: 0,
                size: P,
                vm,
                existing: b,
            },
            libc::EEXIST,
        ),
        (
            Error::GuestRangeBound {
                guest_addr: 0,
                size: P,
                existing: b,
            },
            libc::EEXIST,
        ),
        (
            Error::NoMatchingBinding {
                guest_addr: 0,
                size: P,
                file: f,
                offset: 0,
                flags: LEND_RWX,
            },
            libc::ENOENT,
        ),
        (Error::StalePlan, libc::EAGAIN),
    ];
    for (e, want) in cases {
        assert_eq!(e.errno(), want, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn typed_requests_build_the_raw_arguments() {
    // SPEC R-ABI-1: flags come from named constants.
    let f = FileId(3);
    let req = MapRequest::new(GPA, f, P, 2 * P, Access::Lend, Perms::RX);
    let a = req.args();
    assert_eq!(
        a,
        args(
            GPA,
            f,
            P,
            2 * P,
            GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_EXEC
        )
    );
    assert_eq!(req.unmap_args(), unmap(a));
    assert_eq!(
        map_flags(Access::Share, Perms::new(false, true, false)),
        GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_WRITE
    );
}
