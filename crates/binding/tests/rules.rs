//! One test (or a few) per SPEC rule of the binding engine: file creation
//! (GM-1, GM-2), lifetime and references (GM-LT-1, GM-LT-4), MAP_MEM add
//! (B-ADD-2..11, DESIGN D3/D6), remove (B-RM-1..6), access (B-AC-3), VM
//! teardown, and plans. Every refused call is also checked to leave the
//! registry exactly as it was.

use binding::{
    Access, Alignment, BindingInfo, Bindings, Change, Error, FileId, FileInfo, FileRules,
    HUGE_PAGE_SIZE, MapRequest, PAGE_SIZE, Perms, Plan, RemoveCase, VmId, errno, file_flags,
    map_flags,
};
use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_RWX,
    GUNYAH_MEM_ALLOW_WRITE, GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND,
    GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP, gunyah_map_mem_args,
};

const P: u64 = PAGE_SIZE;
const H: u64 = HUGE_PAGE_SIZE;
const LEND_RWX: u32 = GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_RWX;
const SHARE_RWX: u32 = GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_RWX;
const GPA: u64 = 0x4000_0000;

// ----- helpers -----

fn args(guest_addr: u64, file: FileId, offset: u64, size: u64, flags: u32) -> gunyah_map_mem_args {
    gunyah_map_mem_args {
        guest_addr,
        flags,
        guest_mem_fd: file.0,
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

fn binding(guest_addr: u64, file: FileId, offset: u64, size: u64, flags: u32) -> BindingInfo {
    BindingInfo {
        guest_addr,
        size,
        file,
        offset,
        flags,
    }
}

/// Everything a caller can observe about a registry.
#[derive(Debug, PartialEq)]
struct Snapshot {
    vms: Vec<(VmId, bool, Vec<BindingInfo>)>,
    files: Vec<(FileId, Option<FileInfo>)>,
}

/// A registry that remembers every id it handed out, so a snapshot covers
/// all of them (including destroyed VMs and closed files).
struct World {
    reg: Bindings,
    vms: Vec<VmId>,
    files: Vec<FileId>,
}

impl World {
    fn new() -> World {
        World {
            reg: Bindings::new(),
            vms: Vec::new(),
            files: Vec::new(),
        }
    }

    fn vm(&mut self) -> VmId {
        let vm = self.reg.create_vm();
        self.vms.push(vm);
        vm
    }

    fn file(&mut self, size: u64, flags: u64) -> FileId {
        let f = self.reg.create_file(size, flags).expect("create_file");
        self.files.push(f);
        f
    }

    fn file_with(&mut self, size: u64, flags: u64, rules: FileRules) -> FileId {
        let f = self
            .reg
            .create_file_with(size, flags, rules)
            .expect("create_file_with");
        self.files.push(f);
        f
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            vms: self
                .vms
                .iter()
                .map(|&v| (v, self.reg.vm_exists(v), self.reg.bindings(v)))
                .collect(),
            files: self
                .files
                .iter()
                .map(|&f| (f, self.reg.file_info(f)))
                .collect(),
        }
    }

    fn map(&mut self, vm: VmId, a: gunyah_map_mem_args) -> Plan {
        self.reg
            .map_mem(vm, &a)
            .unwrap_or_else(|e| panic!("map_mem({a:x?}) refused: {e}"))
    }

    /// MAP_MEM must fail with `errno` and change nothing.
    fn refused(&mut self, vm: VmId, a: gunyah_map_mem_args, errno: i32) -> Error {
        let before = self.snapshot();
        let err = self
            .reg
            .map_mem(vm, &a)
            .expect_err(&format!("map_mem({a:x?}) accepted"));
        assert_eq!(err.errno(), errno, "map_mem({a:x?}): {err}");
        assert_eq!(
            self.snapshot(),
            before,
            "map_mem({a:x?}) changed the registry"
        );
        err
    }

    /// create_file must fail with EINVAL and change nothing.
    fn file_refused(&mut self, size: u64, flags: u64) -> Error {
        let before = self.snapshot();
        let err = self
            .reg
            .create_file(size, flags)
            .expect_err(&format!("create_file({size:#x}, {flags:#x}) accepted"));
        assert_eq!(err.errno(), libc::EINVAL, "{err}");
        assert_eq!(self.snapshot(), before);
        err
    }

    fn refs(&self, f: FileId) -> u32 {
        self.reg.file_info(f).expect("file record").refs
    }
}

/// A world with one VM and one 64-page file.
fn world() -> (World, VmId, FileId) {
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(64 * P, 0);
    (w, vm, f)
}

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

fn unknown_map_bits() -> Vec<u32> {
    let known = GUNYAH_MEM_ALLOW_RWX | GUNYAH_MEM_ACCESS_MASK | GUNYAH_MEM_UNMAP;
    (0..32)
        .map(|b| 1u32 << b)
        .filter(|b| b & known == 0)
        .collect()
}

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

/// A VM with an 8-page lend binding at GPA backed by file pages 8..16.
fn bound_world() -> (World, VmId, FileId, BindingInfo) {
    let (mut w, vm, f) = world();
    let b = w.map(vm, args(GPA, f, 8 * P, 8 * P, LEND_RWX)).added[0];
    (w, vm, f, b)
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
