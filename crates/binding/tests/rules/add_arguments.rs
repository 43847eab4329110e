//! MAP_MEM add, the arguments: file creation (GM-1, GM-2), which VM and
//! file (B-ADD-2, B-ADD-3), flags (B-ADD-4..6), alignment (B-ADD-7,
//! B-ADD-7H), size and range (B-ADD-8).

use super::*;

// ----- GM-1, GM-2: creating files -----

#[test]
fn create_file_accepts_cloexec_and_hugepage_flags() {
    // SPEC GM-1
    let mut w = World::new();
    for flags in [
        0,
        file_flags::CLOEXEC,
        file_flags::ALLOW_HUGEPAGE,
        file_flags::CLOEXEC | file_flags::ALLOW_HUGEPAGE,
    ] {
        let f = w.file(4 * P, flags);
        assert_eq!(
            w.reg.file_info(f),
            Some(FileInfo {
                size: 4 * P,
                flags,
                rules: FileRules::FREE_STANDING,
                open: true,
                refs: 1,
            })
        );
    }
    let ids: std::collections::BTreeSet<_> = w.files.iter().collect();
    assert_eq!(ids.len(), 4, "every file gets its own id");
}

#[test]
fn create_file_rejects_unknown_flag_bits() {
    // SPEC GM-1
    let mut w = World::new();
    for bit in (0..64)
        .map(|b| 1u64 << b)
        .filter(|b| b & file_flags::ALL == 0)
    {
        for flags in [bit, bit | file_flags::CLOEXEC | file_flags::ALLOW_HUGEPAGE] {
            let err = w.file_refused(P, flags);
            assert_eq!(err, Error::UnknownFileFlags(bit));
        }
    }
}

#[test]
fn create_file_rejects_size_that_is_not_a_page_multiple() {
    // SPEC GM-2
    let mut w = World::new();
    for size in [1, P - 1, P + 1, 2 * P - 1, P / 2, u64::MAX] {
        assert_eq!(w.file_refused(size, 0), Error::BadFileSize(size));
    }
}

#[test]
fn create_file_rejects_size_zero() {
    // SPEC GM-2 [REC]
    let mut w = World::new();
    assert_eq!(w.file_refused(0, 0), Error::BadFileSize(0));
}

#[test]
fn create_file_owned_by_unknown_vm_is_ebadf() {
    // SPEC B-ADD-3 (a VM-owned file needs its VM)
    let mut w = World::new();
    let vm = w.vm();
    w.reg.destroy_vm(vm);
    let before = w.snapshot();
    let rules = FileRules {
        owner: Some(vm),
        ..FileRules::FREE_STANDING
    };
    let err = w.reg.create_file_with(P, 0, rules).unwrap_err();
    assert_eq!(err, Error::UnknownVm(vm));
    assert_eq!(err.errno(), libc::EBADF);
    assert_eq!(w.snapshot(), before);
}

// ----- B-ADD-2, B-ADD-3: which VM and file -----

#[test]
fn map_into_unknown_or_destroyed_vm_is_ebadf() {
    // SPEC §2.13 (a bad descriptor is EBADF; the VM is checked first)
    let (mut w, vm, f) = world();
    let gone = w.vm();
    w.reg.destroy_vm(gone);
    for target in [gone, VmId(777)] {
        let e = w.refused(target, args(GPA, f, 0, P, LEND_RWX), libc::EBADF);
        assert_eq!(e, Error::UnknownVm(target));
        // The VM is checked before anything else.
        let e = w.refused(target, args(1, FileId(999), 1, 0, u32::MAX), libc::EBADF);
        assert_eq!(e, Error::UnknownVm(target));
    }
    w.map(vm, args(GPA, f, 0, P, LEND_RWX));
}

#[test]
fn map_with_unknown_file_id_is_ebadf() {
    // SPEC B-ADD-2
    let (mut w, vm, f) = world();
    let unknown = FileId(f.0 + 100);
    let e = w.refused(vm, args(GPA, unknown, 0, P, LEND_RWX), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(unknown));
    let e = w.refused(vm, unmap(args(GPA, unknown, 0, P, LEND_RWX)), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(unknown));
}

#[test]
fn bad_file_reported_before_bad_flags_and_alignment() {
    // SPEC B-ADD-2 comes before B-ADD-4..8.
    let (mut w, vm, _) = world();
    let e = w.refused(vm, args(1, FileId(999), 1, 0, u32::MAX), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(FileId(999)));
}

#[test]
fn map_with_closed_file_is_ebadf() {
    // SPEC B-ADD-2, GM-LT-1: a closed file keeps its bindings but is no
    // longer an open fd.
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA, f, 0, P, LEND_RWX));
    assert_eq!(w.reg.close_file(f), Ok(false));
    let e = w.refused(vm, args(GPA + P, f, P, P, LEND_RWX), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(f));
    let e = w.refused(vm, unmap(args(GPA, f, 0, P, LEND_RWX)), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(f));

    let g = w.file(P, 0);
    assert_eq!(w.reg.close_file(g), Ok(true));
    let e = w.refused(vm, args(GPA + P, g, 0, P, LEND_RWX), libc::EBADF);
    assert_eq!(e, Error::UnknownFile(g));
}

#[test]
fn file_owned_by_another_vm_is_refused() {
    // SPEC B-ADD-3
    let mut w = World::new();
    let owner = w.vm();
    let other = w.vm();
    let rules = FileRules {
        owner: Some(owner),
        ..FileRules::FREE_STANDING
    };
    let f = w.file_with(8 * P, 0, rules);
    let e = w.refused(other, args(GPA, f, 0, P, LEND_RWX), libc::EINVAL);
    assert_eq!(
        e,
        Error::ForeignFile {
            file: f,
            owner,
            vm: other
        }
    );
    w.refused(other, unmap(args(GPA, f, 0, P, LEND_RWX)), libc::EINVAL);
    w.map(owner, args(GPA, f, 0, P, LEND_RWX));
}

#[test]
fn foreign_file_reported_before_flag_checks() {
    // SPEC B-ADD-3 comes before B-ADD-4.
    let mut w = World::new();
    let owner = w.vm();
    let other = w.vm();
    let rules = FileRules {
        owner: Some(owner),
        ..FileRules::FREE_STANDING
    };
    let f = w.file_with(8 * P, 0, rules);
    let e = w.refused(other, args(1, f, 0, 0, u32::MAX), libc::EINVAL);
    assert!(matches!(e, Error::ForeignFile { .. }), "{e:?}");
}

// ----- B-ADD-4..6: flags -----

fn bad_access_values() -> Vec<u32> {
    (0..=GUNYAH_MEM_ACCESS_MASK)
        .filter(|v| v & !GUNYAH_MEM_ACCESS_MASK == 0)
        .filter(|v| {
            ![
                GUNYAH_MEM_DEFAULT_ACCESS,
                GUNYAH_MEM_FORCE_LEND,
                GUNYAH_MEM_FORCE_SHARE,
            ]
            .contains(v)
        })
        .collect()
}

#[test]
fn unknown_map_flag_bits_are_refused() {
    // SPEC B-ADD-4, B-RM-1
    let (mut w, vm, f) = world();
    let bits = unknown_map_bits();
    assert_eq!(bits.len(), 32 - 3 - 3 - 1);
    for bit in bits {
        for flags in [LEND_RWX | bit, LEND_RWX | bit | GUNYAH_MEM_UNMAP] {
            let e = w.refused(vm, args(GPA, f, 0, P, flags), libc::EINVAL);
            assert_eq!(e, Error::UnknownMapFlags(bit));
        }
    }
}

#[test]
fn unknown_flag_bit_reported_before_missing_permission() {
    // SPEC B-ADD-4 comes before B-ADD-5.
    let (mut w, vm, f) = world();
    let bit = unknown_map_bits()[0];
    let e = w.refused(vm, args(GPA, f, 0, P, bit), libc::EINVAL);
    assert_eq!(e, Error::UnknownMapFlags(bit));
}

#[test]
fn map_without_any_permission_is_refused() {
    // SPEC B-ADD-5, B-RM-1
    let (mut w, vm, f) = world();
    for access in [
        GUNYAH_MEM_DEFAULT_ACCESS,
        GUNYAH_MEM_FORCE_LEND,
        GUNYAH_MEM_FORCE_SHARE,
    ] {
        for flags in [access, access | GUNYAH_MEM_UNMAP] {
            let e = w.refused(vm, args(GPA, f, 0, P, flags), libc::EINVAL);
            assert_eq!(e, Error::NoPermission);
        }
    }
}

#[test]
fn missing_permission_reported_before_bad_access() {
    // SPEC B-ADD-5 comes before B-ADD-6.
    let (mut w, vm, f) = world();
    let e = w.refused(vm, args(GPA, f, 0, P, bad_access_values()[0]), libc::EINVAL);
    assert_eq!(e, Error::NoPermission);
}

#[test]
fn every_nonempty_permission_set_and_access_is_accepted() {
    // SPEC B-ADD-5, B-ADD-6, B-ADD-11
    let (mut w, vm, f) = world();
    let mut n = 0;
    for access in [
        GUNYAH_MEM_DEFAULT_ACCESS,
        GUNYAH_MEM_FORCE_LEND,
        GUNYAH_MEM_FORCE_SHARE,
    ] {
        for perms in 1..=GUNYAH_MEM_ALLOW_RWX {
            let plan = w.map(vm, args(GPA + n * P, f, n * P, P, access | perms));
            assert_eq!(plan.added[0].flags, access | perms);
            n += 1;
        }
    }
    assert_eq!(w.reg.binding_count(vm), 21);
}

#[test]
fn invalid_access_values_are_refused() {
    // SPEC B-ADD-6, B-RM-1
    let (mut w, vm, f) = world();
    let bad = bad_access_values();
    assert_eq!(bad.len(), 5);
    for value in bad {
        for flags in [
            value | GUNYAH_MEM_ALLOW_READ,
            value | GUNYAH_MEM_ALLOW_RWX | GUNYAH_MEM_UNMAP,
        ] {
            let e = w.refused(vm, args(GPA, f, 0, P, flags), libc::EINVAL);
            assert_eq!(e, Error::BadAccess(value));
        }
    }
}

#[test]
fn bad_access_reported_before_misalignment() {
    // SPEC B-ADD-6 comes before B-ADD-7.
    let (mut w, vm, f) = world();
    let flags = bad_access_values()[0] | GUNYAH_MEM_ALLOW_READ;
    let e = w.refused(vm, args(GPA + 1, f, 1, 1, flags), libc::EINVAL);
    assert!(matches!(e, Error::BadAccess(_)), "{e:?}");
}

// ----- B-ADD-7, B-ADD-7H: alignment -----

#[test]
fn misaligned_guest_address_offset_or_size_is_refused() {
    // SPEC B-ADD-7, B-RM-1
    let (mut w, vm, f) = world();
    for bad in [1, P / 2, P - 1] {
        for (a, what, value) in [
            (
                args(GPA + bad, f, 0, P, LEND_RWX),
                "guest address",
                GPA + bad,
            ),
            (args(GPA, f, P + bad, P, LEND_RWX), "file offset", P + bad),
            (args(GPA, f, 0, P + bad, LEND_RWX), "size", P + bad),
        ] {
            for a in [a, unmap(a)] {
                let e = w.refused(vm, a, libc::EINVAL);
                assert_eq!(
                    e,
                    Error::Misaligned {
                        what,
                        value,
                        unit: Alignment::Page
                    }
                );
            }
        }
    }
}

#[test]
fn misalignment_reported_guest_then_offset_then_size() {
    // SPEC B-ADD-7: the arguments are checked in this order.
    let (mut w, vm, f) = world();
    let what = |e: Error| match e {
        Error::Misaligned { what, .. } => what,
        other => panic!("{other:?}"),
    };
    let e = w.refused(vm, args(1, f, 1, 1, LEND_RWX), libc::EINVAL);
    assert_eq!(what(e), "guest address");
    let e = w.refused(vm, args(0, f, 1, 1, LEND_RWX), libc::EINVAL);
    assert_eq!(what(e), "file offset");
}

#[test]
fn misalignment_reported_before_size_and_range_checks() {
    // SPEC B-ADD-7 comes before B-ADD-8.
    let (mut w, vm, f) = world();
    let e = w.refused(vm, args(GPA + 1, f, 0, 0, LEND_RWX), libc::EINVAL);
    assert!(matches!(e, Error::Misaligned { .. }), "{e:?}");
    let e = w.refused(vm, args(u64::MAX, f, 0, P, LEND_RWX), libc::EINVAL);
    assert!(matches!(e, Error::Misaligned { .. }), "{e:?}");
}

#[test]
fn hugepage_file_requires_2mib_alignment() {
    // SPEC B-ADD-7H, B-RM-1
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(4 * H, file_flags::ALLOW_HUGEPAGE);
    for (a, what, value) in [
        (args(GPA + P, f, 0, H, LEND_RWX), "guest address", GPA + P),
        (args(GPA, f, P, H, LEND_RWX), "file offset", P),
        (args(GPA, f, 0, H - P, LEND_RWX), "size", H - P),
        (args(GPA, f, 0, H + P, LEND_RWX), "size", H + P),
    ] {
        for a in [a, unmap(a)] {
            let e = w.refused(vm, a, libc::EINVAL);
            assert_eq!(
                e,
                Error::Misaligned {
                    what,
                    value,
                    unit: Alignment::HugePage
                }
            );
        }
    }
    w.map(vm, args(GPA, f, H, 2 * H, LEND_RWX));
    // Removal at 4 KiB granularity is refused the same way.
    let e = w.refused(vm, unmap(args(GPA, f, H, P, LEND_RWX)), libc::EINVAL);
    assert!(matches!(
        e,
        Error::Misaligned {
            unit: Alignment::HugePage,
            ..
        }
    ));
}

#[test]
fn page_alignment_of_all_arguments_checked_before_hugepage_alignment() {
    // SPEC B-ADD-7 for all three arguments, then B-ADD-7H.
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(4 * H, file_flags::ALLOW_HUGEPAGE);
    let e = w.refused(vm, args(GPA + P, f, 1, H, LEND_RWX), libc::EINVAL);
    assert_eq!(
        e,
        Error::Misaligned {
            what: "file offset",
            value: 1,
            unit: Alignment::Page
        }
    );
}

#[test]
fn regular_file_needs_only_page_alignment() {
    // SPEC B-ADD-7H applies to ALLOW_HUGEPAGE files only.
    let (mut w, vm, f) = world();
    w.map(vm, args(GPA + P, f, P, 3 * P, LEND_RWX));
}

// ----- B-ADD-8: size and range -----

#[test]
fn empty_range_is_refused() {
    // SPEC B-ADD-8 [REC], B-RM-1
    let (mut w, vm, f) = world();
    for a in [
        args(GPA, f, 0, 0, LEND_RWX),
        unmap(args(GPA, f, 0, 0, LEND_RWX)),
    ] {
        assert_eq!(w.refused(vm, a, libc::EINVAL), Error::EmptyRange);
    }
}

#[test]
fn guest_range_wrapping_past_2_pow_64_is_refused() {
    // SPEC B-ADD-8
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(4 * P, 0);
    let top = 0u64.wrapping_sub(P);
    let e = w.refused(vm, args(top, f, 0, P, LEND_RWX), libc::EINVAL);
    assert_eq!(
        e,
        Error::RangeWraps {
            what: "guest range",
            start: top,
            size: P
        }
    );
    w.refused(vm, args(top - P, f, 0, 4 * P, LEND_RWX), libc::EINVAL);
    // The highest range that does not wrap is fine.
    let plan = w.map(vm, args(top - P, f, 0, P, LEND_RWX));
    assert_eq!(plan.added[0].guest_end(), top);
    assert_eq!(w.reg.lookup(vm, top - 1), Some(plan.added[0]));
    assert_eq!(w.reg.lookup(vm, top), None);
}

#[test]
fn file_range_wrapping_is_refused() {
    // SPEC B-ADD-8
    let (mut w, vm, f) = world();
    let top = 0u64.wrapping_sub(P);
    let e = w.refused(vm, args(GPA, f, top, 2 * P, LEND_RWX), libc::EINVAL);
    assert_eq!(
        e,
        Error::RangeWraps {
            what: "file range",
            start: top,
            size: 2 * P
        }
    );
}

#[test]
fn guest_wrap_reported_before_file_wrap() {
    // SPEC B-ADD-8: guest range first.
    let (mut w, vm, f) = world();
    let top = 0u64.wrapping_sub(P);
    let e = w.refused(vm, args(top, f, top, P, LEND_RWX), libc::EINVAL);
    assert!(
        matches!(
            e,
            Error::RangeWraps {
                what: "guest range",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn file_range_beyond_end_of_file_is_refused() {
    // SPEC B-ADD-8, B-RM-1
    let (mut w, vm, f) = world();
    for (offset, size) in [(0, 65 * P), (64 * P, P), (60 * P, 8 * P), (1 << 40, P)] {
        let a = args(GPA, f, offset, size, LEND_RWX);
        for a in [a, unmap(a)] {
            let e = w.refused(vm, a, libc::EINVAL);
            assert_eq!(
                e,
                Error::BeyondEndOfFile {
                    offset,
                    size,
                    file_size: 64 * P
                }
            );
        }
    }
    // Ending exactly at the end of the file is fine.
    w.map(vm, args(GPA, f, 60 * P, 4 * P, LEND_RWX));
}
