//! Guest memory files on the real kernel objects: KVM guest_memfd (needs
//! /dev/kvm) and sealed memfd. Where a behaviour applies to every
//! host-mappable kind, the same test body runs against each.
//!
//! Ports of the kernel's guest_memfd selftest ("KS") are marked as such.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use binding::{Access, BindingInfo, FileId, PAGE_SIZE, Perms, VmId, file_flags, map_flags};
use gmem::{Error, GuestMemFile, Kind, LentRange, Mode, PageState, ReclaimHook};
use kvm_ioctls::VmFd;

const P: u64 = PAGE_SIZE;
const VM: VmId = VmId(7);
const OTHER_VM: VmId = VmId(8);

/// The host-mappable kinds: a memfd always, a guest_memfd when KVM is here.
fn mappable_kinds(size: u64) -> Vec<GuestMemFile> {
    let mut files = vec![GuestMemFile::memfd(size, file_flags::CLOEXEC).unwrap()];
    if let Some(vm) = vm() {
        files.push(GuestMemFile::guest_memfd(&vm, size, Mode::HostMappable).unwrap());
    }
    files
}

fn vm() -> Option<VmFd> {
    testkit::kvm().map(|kvm| kvm.create_vm().unwrap())
}

fn binding(offset: u64, size: u64, access: Access) -> BindingInfo {
    BindingInfo {
        guest_addr: 0x1000_0000 + offset,
        size,
        file: FileId(1),
        offset,
        flags: map_flags(access, Perms::RWX),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read(f: &GuestMemFile, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    f.read_at(offset, &mut buf).unwrap();
    buf
}

// ----- creation -------------------------------------------------------------

// SPEC GM-2; KS test_create_guest_memfd_invalid_sizes.
#[test]
fn sizes_that_are_not_whole_pages_are_refused() {
    let vm = vm();
    for size in [
        0,
        1,
        P - 1,
        P + 1,
        3 * P / 2,
        u64::MAX,
        (i64::MAX as u64) + 1,
    ] {
        let err = GuestMemFile::memfd(size, 0).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "memfd size {size:#x}: {err}");
        if let Some(vm) = &vm {
            for mode in [Mode::HostMappable, Mode::Private] {
                let err = GuestMemFile::guest_memfd(vm, size, mode).unwrap_err();
                assert_eq!(err.errno(), libc::EINVAL, "gmem size {size:#x}: {err}");
            }
        }
    }
}

// SPEC GM-1; KS test_guest_memfd_flags.
// A file larger than the address space can map is refused with the
// kernel's errno (ENOMEM), not EIO (found by the gunyah_abi fuzz target).
#[test]
fn a_file_too_large_to_map_reports_enomem() {
    let err = GuestMemFile::memfd(1 << 55, 0).unwrap_err();
    assert_eq!(err.errno(), libc::ENOMEM, "{err}");
}

#[test]
fn unknown_file_flags_are_refused() {
    let err = GuestMemFile::memfd(P, 0b1000).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert!(err.to_string().contains("0x8"), "{err}");
    // The capability check names both masks in hex.
    let support = gmem::GuestMemfdSupport {
        available: true,
        flags: gmem::GUEST_MEMFD_FLAG_MMAP,
    };
    let err = support.require(Mode::HostMappable.kvm_flags()).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(
        err.to_string(),
        "guest_memfd flags 0x3 requested, host supports 0x1"
    );
    let none = gmem::GuestMemfdSupport {
        available: false,
        flags: 0,
    };
    assert_eq!(none.require(1).unwrap_err().errno(), libc::EOPNOTSUPP);
}

#[test]
fn this_host_supports_both_guest_memfd_modes() {
    let Some(vm) = vm() else { return };
    let support = gmem::GuestMemfdSupport::probe(&vm);
    assert!(support.available);
    // DESIGN §1: KVM_CAP_GUEST_MEMFD_FLAGS = MMAP | INIT_SHARED here.
    support.require(Mode::HostMappable.kvm_flags()).unwrap();
    support.require(Mode::Private.kvm_flags()).unwrap();
}

// SPEC GM-5; KS test_file_size.
#[test]
fn fstat_reports_size_and_page_block_size() {
    let mut files = mappable_kinds(4 * P);
    if let Some(vm) = vm() {
        files.push(GuestMemFile::guest_memfd(&vm, 4 * P, Mode::Private).unwrap());
    }
    for f in files {
        // SAFETY: fstat writes one struct stat into the zeroed buffer we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is live for the duration of the call.
        assert_eq!(unsafe { libc::fstat(f.as_raw_fd(), &mut st) }, 0);
        assert_eq!(st.st_size as u64, 4 * P, "{:?}", f.kind());
        assert_eq!(st.st_blksize as u64, P, "{:?}", f.kind());
        assert_eq!(f.size(), 4 * P);
    }
}

// SPEC GM-4.
#[test]
fn close_on_exec_follows_the_cloexec_flag() {
    let cloexec = |f: &GuestMemFile| {
        // SAFETY: F_GETFD on a live descriptor reads no memory.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    };
    assert!(cloexec(
        &GuestMemFile::memfd(P, file_flags::CLOEXEC).unwrap()
    ));
    assert!(!cloexec(&GuestMemFile::memfd(P, 0).unwrap()));
    // lendvm's own guest_memfds never leak into children.
    if let Some(vm) = vm() {
        assert!(cloexec(
            &GuestMemFile::guest_memfd(&vm, P, Mode::HostMappable).unwrap()
        ));
    }
}

// SPEC GM-7: the size is fixed for life.
#[test]
fn files_cannot_be_resized() {
    for f in mappable_kinds(4 * P) {
        for size in [2 * P, 8 * P] {
            // SAFETY: ftruncate on a live descriptor reads no memory.
            let rc = unsafe { libc::ftruncate(f.as_raw_fd(), size as libc::off_t) };
            assert_eq!(rc, -1, "{:?} resized to {size:#x}", f.kind());
        }
        // SAFETY: as above.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is live; st is ours.
        unsafe { libc::fstat(f.as_raw_fd(), &mut st) };
        assert_eq!(st.st_size as u64, 4 * P);
    }
}

// SPEC GM-6; KS test_file_read_write. Kernel-enforced for guest_memfd only.
#[test]
fn read_and_write_syscalls_fail_on_guest_memfd() {
    let Some(vm) = vm() else { return };
    for mode in [Mode::HostMappable, Mode::Private] {
        let f = GuestMemFile::guest_memfd(&vm, P, mode).unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: the buffer is ours and 16 bytes long.
        let r = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), 16) };
        assert_eq!(r, -1, "{mode:?} read");
        // SAFETY: as above.
        let w = unsafe { libc::pwrite(f.as_raw_fd(), buf.as_ptr().cast(), 16, 0) };
        assert_eq!(w, -1, "{mode:?} pwrite");
    }
}

// SPEC GM-MM-1; KS test_mmap_cow. Kernel rule on guest_memfd.
#[test]
fn private_copy_on_write_mappings_of_guest_memfd_are_refused() {
    let Some(vm) = vm() else { return };
    let f = GuestMemFile::guest_memfd(&vm, P, Mode::HostMappable).unwrap();
    // SAFETY: mmap with a null hint cannot clobber existing mappings; on
    // success the mapping would be unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            P as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(p, libc::MAP_FAILED);
    assert_eq!(errno, Some(libc::EINVAL));
}

// ----- host access that never faults ----------------------------------------

// SPEC GM-MM-4.1; KS test_fault_overflow: past the end is an error, not SIGBUS.
#[test]
fn accesses_past_the_end_are_errors_not_signals() {
    for f in mappable_kinds(4 * P) {
        let size = f.size();
        let mut buf = [0u8; 8];
        for (offset, len) in [(size, 1), (size - 4, 8), (u64::MAX, 8), (u64::MAX - 2, 8)] {
            let err = f.read_at(offset, &mut buf[..len]).unwrap_err();
            assert_eq!(err.errno(), libc::EFAULT, "{:?} read {offset:#x}", f.kind());
            let err = f.write_at(offset, &buf[..len]).unwrap_err();
            assert_eq!(err.errno(), libc::EFAULT);
        }
        // Zero-length accesses inside (or at the end of) the file succeed.
        f.read_at(size, &mut []).unwrap();
        f.write_at(0, &[]).unwrap();
        // Views: past the end, misaligned, empty, overflowing.
        for (offset, len) in [
            (size, P),
            (0, size + P),
            (1, P),
            (0, 1),
            (0, 0),
            (!(P - 1), P),
        ] {
            assert!(f.view(offset, len).is_err(), "view {offset:#x}+{len:#x}");
        }
        // The last byte is fine.
        f.write_at(size - 1, &[0xaa]).unwrap();
        assert_eq!(read(&f, size - 1, 1), [0xaa]);
    }
}

// DESIGN §2, KS test_fault_private: the kernel SIGBUSes host faults on a
// private file; lendvm refuses first, so the process never sees a signal.
#[test]
fn private_files_refuse_every_host_access_without_a_signal() {
    let Some(vm) = vm() else { return };
    let f = GuestMemFile::guest_memfd(&vm, 4 * P, Mode::Private).unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(f.read_at(0, &mut buf), Err(Error::Private)));
    assert!(matches!(f.write_at(0, &buf), Err(Error::Private)));
    assert!(matches!(f.view(0, P), Err(Error::Private)));
    assert!(matches!(
        f.write_for_guest(VM, 0, &buf),
        Err(Error::Private)
    ));
    assert_eq!(f.read_at(0, &mut buf).unwrap_err().errno(), libc::EACCES);
    // Sharing a private file is refused (DESIGN D6); lending is fine.
    assert!(f.bind(VM, &binding(0, P, Access::Share)).is_err());
    f.bind(VM, &binding(0, 4 * P, Access::Lend)).unwrap();
    assert_eq!(f.kind(), Kind::GuestMemfd(Mode::Private));
}

#[test]
fn write_then_read_round_trips_through_the_api_and_views() {
    for f in mappable_kinds(8 * P) {
        let data = pattern(3 * P as usize, 5);
        f.write_at(P / 2, &data).unwrap();
        assert_eq!(read(&f, P / 2, data.len()), data);
        let view = f.view(0, 4 * P).unwrap();
        let mut via_view = vec![0u8; data.len()];
        view.read(P as usize / 2, &mut via_view).unwrap();
        assert_eq!(via_view, data);
        view.fill(0, 16, 0x5a).unwrap();
        assert_eq!(read(&f, 0, 16), [0x5a; 16]);
        // View accesses out of the view's bounds are errors.
        assert!(view.read(4 * P as usize - 4, &mut [0u8; 8]).is_err());
        assert!(view.write(usize::MAX, &[1]).is_err());
        assert_eq!(f.views_over(0, P), 1);
        drop(view);
        assert_eq!(f.views_over(0, 8 * P), 0);
    }
}

// ----- ownership and lending --------------------------------------------------

// DESIGN §6 invariant 2: a lent range has no lendvm view and every API
// access to it is refused.
#[test]
fn lent_pages_have_no_view_and_refuse_every_access() {
    for f in mappable_kinds(8 * P) {
        f.bind(VM, &binding(0, 8 * P, Access::Lend)).unwrap();
        // DESIGN D2: lend-bound, untouched pages are still host-usable.
        f.write_at(2 * P, b"loaded by host").unwrap();
        f.lend_window(VM, 2 * P..4 * P).unwrap();
        assert_eq!(f.page_state(2 * P), PageState::Lent(VM));
        assert_eq!(f.views_over(2 * P, 2 * P), 0);
        let mut buf = [0u8; 4];
        for (offset, len) in [(2 * P, 4), (2 * P - 2, 4), (4 * P - 1, 1)] {
            let err = f.read_at(offset, &mut buf[..len]).unwrap_err();
            assert!(matches!(err, Error::Lent { vm: VM, .. }), "{err}");
            assert!(matches!(
                f.write_at(offset, &buf[..len]),
                Err(Error::Lent { .. })
            ));
        }
        assert!(matches!(f.view(P, 2 * P), Err(Error::Lent { .. })));
        assert!(matches!(f.view(3 * P, P), Err(Error::Lent { .. })));
        // DESIGN D4: a range spanning lent and free pages is refused whole;
        // the free part was not written.
        let before = read(&f, P, 8);
        assert!(f.write_at(P, &[0xff; 2 * P as usize]).is_err());
        assert_eq!(read(&f, P, 8), before);
        // Pages outside the lent range stay usable.
        f.write_at(4 * P, b"ok").unwrap();
    }
}

// SPEC GM-MM-6.
#[test]
fn a_live_view_blocks_lending_with_ebusy() {
    for f in mappable_kinds(4 * P) {
        f.bind(VM, &binding(0, 4 * P, Access::Lend)).unwrap();
        let view = f.view(P, P).unwrap();
        let err = f.lend_window(VM, 0..4 * P).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{err}");
        assert_eq!(f.page_state(P), PageState::LendBound(VM));
        // DESIGN D2: the view refuses its whole chunk, not just its page.
        assert!(f.lend_window(VM, 0..4 * P).is_err());
        assert_eq!(f.page_state(3 * P), PageState::LendBound(VM));
        // A chunk the view does not reach is lent.
        f.lend_window(VM, 2 * P..4 * P).unwrap();
        drop(view);
        f.lend_window(VM, 0..4 * P).unwrap();
        assert_eq!(f.page_state(P), PageState::Lent(VM));
    }
}

// DESIGN D5, D11: a lend the guest never received is undone page by page:
// only what that lend added becomes host-accessible again; pages the guest
// had been lent before (and may have written) stay lent.
#[test]
fn cancelling_a_lend_undoes_only_the_pages_it_lent() {
    for f in mappable_kinds(8 * P) {
        f.bind(VM, &binding(0, 8 * P, Access::Lend)).unwrap();
        assert_eq!(f.lend_window(VM, 2 * P..3 * P).unwrap(), vec![2 * P..3 * P]);
        f.write_for_guest(VM, 2 * P, b"guest secret").unwrap();
        // A later chunk lend around the page: only the rest is new.
        let fresh = f.lend_window(VM, 0..4 * P).unwrap();
        assert_eq!(fresh, vec![0..2 * P, 3 * P..4 * P]);
        f.cancel_lend(VM, &fresh).unwrap();
        assert_eq!(f.page_state(P), PageState::LendBound(VM));
        assert_eq!(f.page_state(3 * P), PageState::LendBound(VM));
        assert_eq!(f.page_state(2 * P), PageState::Lent(VM));
        let mut buf = [0u8; 12];
        assert!(matches!(
            f.read_at(2 * P, &mut buf),
            Err(Error::Lent { vm: VM, .. })
        ));
    }
}

// DESIGN D5: lent pages come back zeroed; shared pages keep their content.
#[test]
fn release_zeroes_lent_pages_and_keeps_shared_ones() {
    for f in mappable_kinds(8 * P) {
        let data = pattern(8 * P as usize, 1);
        f.write_at(0, &data).unwrap();
        f.bind(VM, &binding(0, 4 * P, Access::Lend)).unwrap();
        f.bind(VM, &binding(4 * P, 4 * P, Access::Share)).unwrap();
        // Page 1 is touched (lent), pages 0, 2, 3 stay lend-bound.
        f.lend_window(VM, P..2 * P).unwrap();
        // The guest writes its secret into the lent page.
        f.write_for_guest(VM, P, b"guest secret").unwrap();
        // Another VM cannot release these pages.
        assert!(f.release(OTHER_VM, 0, 4 * P).is_err());
        f.release(VM, 0, 4 * P).unwrap();
        f.release(VM, 4 * P, 4 * P).unwrap();
        assert_eq!(read(&f, P, P as usize), vec![0u8; P as usize]);
        // Untouched lend-bound and shared pages keep the host's bytes.
        assert_eq!(read(&f, 0, P as usize), data[..P as usize]);
        assert_eq!(read(&f, 2 * P, 6 * P as usize), data[2 * P as usize..]);
        assert_eq!(
            f.page_states(0, 8 * P).unwrap(),
            vec![(0..8 * P, PageState::Host)]
        );
    }
}

/// A reclaim hook that records its calls and answers as told.
struct RecordingHook {
    calls: Mutex<Vec<Vec<LentRange>>>,
    fail: bool,
}

impl ReclaimHook for RecordingHook {
    fn reclaim(&self, file: &GuestMemFile, offset: u64, len: u64) -> Result<u64, Error> {
        file.reclaim_with(offset, len, |ranges| {
            // Taking back runs with no gmem lock held: querying the file works.
            for r in ranges {
                assert_eq!(file.page_state(r.offset), PageState::Reclaiming(r.vm));
            }
            self.calls.lock().unwrap().push(ranges.to_vec());
            if self.fail {
                return Err(Error::ReclaimFailed {
                    offset: ranges[0].offset,
                    len: ranges[0].len,
                    errno: libc::EBUSY,
                    reason: "the guest holds it".into(),
                });
            }
            Ok(())
        })
    }
}

// SPEC L-1..L-5, DESIGN D5, D8.
#[test]
fn explicit_reclaim_runs_the_hook_then_zeroes_and_rebinds() {
    for f in mappable_kinds(8 * P) {
        f.bind(VM, &binding(0, 8 * P, Access::Lend)).unwrap();
        f.lend_window(VM, 2 * P..5 * P).unwrap();
        f.write_for_guest(VM, 3 * P, b"guest data").unwrap();
        // Without a hook nothing can take the pages back.
        let err = f.reclaim(0, 8 * P).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        assert_eq!(f.page_state(3 * P), PageState::Lent(VM));

        let failing = Arc::new(RecordingHook {
            calls: Mutex::default(),
            fail: true,
        });
        f.set_reclaim_hook(failing.clone());
        assert!(f.reclaim(0, 8 * P).is_err());
        assert_eq!(failing.calls.lock().unwrap().len(), 1);
        // L-1: a refused reclaim leaves the pages with the guest.
        assert_eq!(f.page_state(3 * P), PageState::Lent(VM));

        let hook = Arc::new(RecordingHook {
            calls: Mutex::default(),
            fail: false,
        });
        f.set_reclaim_hook(hook.clone());
        // L-3/L-4: exactly the lent pages inside the range are reclaimed.
        assert_eq!(f.reclaim(P, 3 * P).unwrap(), 2 * P);
        assert_eq!(
            hook.calls.lock().unwrap()[0],
            vec![LentRange {
                vm: VM,
                offset: 2 * P,
                len: 2 * P
            }]
        );
        // L-5: still bound, host-usable again, and zeroed (D5).
        assert_eq!(f.page_state(3 * P), PageState::LendBound(VM));
        assert_eq!(f.page_state(4 * P), PageState::Lent(VM));
        assert_eq!(read(&f, 3 * P, 10), [0u8; 10]);
        // A later touch lends it again.
        f.lend_window(VM, 3 * P..4 * P).unwrap();
        assert_eq!(f.page_state(3 * P), PageState::Lent(VM));
        // Nothing lent in range: no hook call.
        assert_eq!(f.reclaim(6 * P, P).unwrap(), 0);
        assert_eq!(hook.calls.lock().unwrap().len(), 1);
    }
}

// ----- fallocate ----------------------------------------------------------------

// SPEC GM-FA-1..5; KS test_invalid_punch_hole, test_fallocate.
#[test]
fn fallocate_follows_the_spec_rules() {
    const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
    let mut files = mappable_kinds(4 * P);
    if let Some(vm) = vm() {
        files.push(GuestMemFile::guest_memfd(&vm, 4 * P, Mode::Private).unwrap());
    }
    for f in files {
        let size = f.size();
        // GM-FA-1/2: modes.
        for mode in [0, PUNCH, KEEP | libc::FALLOC_FL_ZERO_RANGE, KEEP | 0x100] {
            assert_eq!(
                f.fallocate(mode, 0, P).unwrap_err().errno(),
                libc::EOPNOTSUPP
            );
        }
        // GM-FA-3: alignment (the selftest's list), zero length, sign, overflow.
        for (off, len) in [
            (0, 1),
            (0, P - 1),
            (0, P + 1),
            (1, 1),
            (1, P - 1),
            (1, P),
            (1, P + 1),
            (P, 1),
            (P, P - 1),
            (P, P + 1),
            (0, 0),
            (1 << 63, P),
        ] {
            for mode in [KEEP, KEEP | PUNCH] {
                let err = f.fallocate(mode, off, len).unwrap_err();
                assert_eq!(
                    err.errno(),
                    libc::EINVAL,
                    "({off:#x}, {len:#x}) mode {mode:#x}"
                );
            }
        }
        let big = (i64::MAX as u64) & !(P - 1);
        assert_eq!(
            f.fallocate(KEEP, big, 2 * P).unwrap_err().errno(),
            libc::EFBIG
        );
        // GM-FA-4: allocate inside the file only.
        f.fallocate(KEEP, 0, size).unwrap();
        assert_eq!(
            f.fallocate(KEEP, size, P).unwrap_err().errno(),
            libc::EINVAL
        );
        assert_eq!(
            f.fallocate(KEEP, size - P, 2 * P).unwrap_err().errno(),
            libc::EINVAL
        );
        // GM-FA-5: punching past the end succeeds.
        f.fallocate(KEEP | PUNCH, size, P).unwrap();
        f.fallocate(KEEP | PUNCH, size - P, 4 * P).unwrap();
        f.fallocate(KEEP | PUNCH, 0, size).unwrap();
    }
}

// SPEC GM-FA-6; KS test_mmap_supported: punch zeroes exactly the range.
#[test]
fn punch_hole_zeroes_exactly_the_range() {
    for f in mappable_kinds(6 * P) {
        let data = pattern(6 * P as usize, 9);
        f.write_at(0, &data).unwrap();
        let view = f.view(0, 6 * P).unwrap();
        f.punch_hole(2 * P, 2 * P).unwrap();
        let mut all = vec![0u8; 6 * P as usize];
        view.read(0, &mut all).unwrap();
        let (p, q) = (2 * P as usize, 4 * P as usize);
        assert_eq!(all[..p], data[..p]);
        assert!(all[p..q].iter().all(|&b| b == 0));
        assert_eq!(all[q..], data[q..]);
    }
}

// DESIGN D10 / SPEC GM-FA-7.
#[test]
fn punch_hole_over_lent_pages_is_busy_and_frees_nothing() {
    for f in mappable_kinds(8 * P) {
        let data = pattern(8 * P as usize, 3);
        f.write_at(0, &data).unwrap();
        f.bind(VM, &binding(0, 4 * P, Access::Lend)).unwrap();
        f.bind(VM, &binding(4 * P, 4 * P, Access::Share)).unwrap();
        f.lend_window(VM, P..2 * P).unwrap();
        let err = f.punch_hole(0, 8 * P).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{err}");
        // Nothing freed anywhere in the range.
        assert_eq!(read(&f, 0, P as usize), data[..P as usize]);
        assert_eq!(read(&f, 4 * P, 8), data[4 * P as usize..4 * P as usize + 8]);
        // Share-bound and untouched lend-bound pages are freed and read zero.
        f.punch_hole(2 * P, 6 * P).unwrap();
        assert!(read(&f, 2 * P, 6 * P as usize).iter().all(|&b| b == 0));
        assert_eq!(f.page_state(5 * P), PageState::Shared(VM));
    }
}

// GM-FA-6 (memory really freed): memfd reports its blocks; guest_memfd
// memory shows in the cgroup.
#[test]
fn punch_hole_really_frees_memory() {
    const SIZE: u64 = 64 << 20;
    let f = GuestMemFile::memfd(SIZE, 0).unwrap();
    let blocks = |f: &GuestMemFile| {
        // SAFETY: fstat writes into our zeroed buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: live descriptor, buffer ours.
        unsafe { libc::fstat(f.as_raw_fd(), &mut st) };
        st.st_blocks as u64 * 512
    };
    f.allocate(0, SIZE).unwrap();
    assert_eq!(blocks(&f), SIZE);
    f.punch_hole(0, SIZE / 2).unwrap();
    assert_eq!(blocks(&f), SIZE / 2);

    let Some(vm) = vm() else { return };
    let g = GuestMemFile::guest_memfd(&vm, SIZE, Mode::HostMappable).unwrap();
    let Some(before) = testkit::cgroup_memory_bytes() else {
        println!("no memory cgroup figure on this host; checked memfd only");
        return;
    };
    g.allocate(0, SIZE).unwrap();
    let allocated = testkit::cgroup_memory_bytes().unwrap();
    g.punch_hole(0, SIZE).unwrap();
    let after = testkit::cgroup_memory_bytes().unwrap();
    // Other tests share the cgroup, so allow slack around the 64 MiB.
    assert!(
        allocated >= before + SIZE * 3 / 4,
        "{before} -> {allocated}"
    );
    assert!(allocated >= after + SIZE * 3 / 4, "{allocated} -> {after}");
}

// ----- concurrency ---------------------------------------------------------------

// SPEC C-1: host accesses racing lend / release never fault and never see
// a lent page: a reader either gets the whole buffer or Error::Lent.
#[test]
fn host_access_racing_lend_and_release_never_faults() {
    for f in mappable_kinds(16 * P) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (f, stop) = (f.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut refused) = (0u32, 0u32);
                let mut buf = vec![0u8; 3 * P as usize];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match f.read_at(P, &mut buf) {
                        Ok(()) => {
                            // Only zeros or the host's own bytes are visible.
                            assert!(buf.iter().all(|&b| b == 0 || b == 0x11));
                            ok += 1;
                        }
                        Err(Error::Lent { .. }) => refused += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                (ok, refused)
            })
        };
        for _ in 0..300 {
            f.bind(VM, &binding(0, 16 * P, Access::Lend)).unwrap();
            f.write_at(0, &[0x11; 4 * P as usize]).unwrap();
            f.lend_window(VM, 0..16 * P).unwrap();
            f.write_for_guest(VM, P, &[0x22; 3 * P as usize]).unwrap();
            f.release(VM, 0, 16 * P).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, refused) = reader.join().unwrap();
        assert!(ok + refused > 0);
    }
}

// ----- punch hole: one answer at every entry point ---------------------------------

/// Every kind of file, with the size its fallocate rules are measured
/// against: a memfd, a resizable memfd (its current size is smaller than
/// its capacity) and, with KVM, both guest_memfd modes.
fn every_kind(size: u64) -> Vec<(GuestMemFile, u64)> {
    let mut files = vec![
        (
            GuestMemFile::memfd(size, file_flags::CLOEXEC).unwrap(),
            size,
        ),
        (
            GuestMemFile::memfd_resizable(size, 4 * size, 0).unwrap(),
            size,
        ),
    ];
    if let Some(vm) = vm() {
        for mode in [Mode::HostMappable, Mode::Private] {
            files.push((GuestMemFile::guest_memfd(&vm, size, mode).unwrap(), size));
        }
    }
    files
}

/// The errno of a result, 0 for success.
fn errno_of(r: Result<(), Error>) -> i32 {
    r.err().map_or(0, |e| e.errno())
}

// SPEC GM-FA-3 (issue 8 item 9): a misaligned or empty punch is EINVAL
// whether it comes through `punch_hole`, `fallocate` or
// `fallocate_within`, wherever the range lies (inside, across or past the
// end: GM-FA-3 is checked before GM-FA-5), and it frees nothing.
#[test]
fn punch_hole_refuses_a_misaligned_or_empty_range_with_einval_at_every_entry_point() {
    const KEEP_PUNCH: i32 = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE;
    let size = 8 * P;
    for (f, current) in every_kind(size) {
        let data = pattern(size as usize, 5);
        let private = f.kind() == Kind::GuestMemfd(Mode::Private);
        if !private {
            f.write_at(0, &data).unwrap();
        }
        for (off, len) in [
            (0, 1),
            (0, P - 1),
            (0, P + 1),
            (1, P),
            (P + 1, 2 * P),
            (P, P + 1),
            (2 * P - 1, 2 * P + 2),
            (size - 1, 1),
            (size - P + 1, P),
            (size + 1, P),
            (size, P + 1),
            (16 * size + 3, 5),
            (0, 0),
            (P, 0),
            (1, 0),
        ] {
            let what = format!("{} [{off:#x}, +{len:#x})", f.kind());
            let Err(punch) = f.punch_hole(off, len) else {
                panic!("punch_hole {what} succeeded");
            };
            assert!(
                matches!(punch, Error::FallocateRange { .. }),
                "punch_hole {what}: {punch}"
            );
            assert_eq!(punch.errno(), libc::EINVAL, "punch_hole {what}");
            assert_eq!(
                errno_of(f.fallocate(KEEP_PUNCH, off, len)),
                libc::EINVAL,
                "fallocate {what}"
            );
            assert_eq!(
                errno_of(f.fallocate_within(current, KEEP_PUNCH, off, len)),
                libc::EINVAL,
                "fallocate_within {what}"
            );
        }
        if !private {
            assert_eq!(
                read(&f, 0, size as usize),
                data,
                "{}: nothing freed",
                f.kind()
            );
        }
    }
}

// SPEC GM-FA-3, GM-FA-5: `punch_hole` gives the answer a punch through
// `fallocate(KEEP_SIZE | PUNCH_HOLE)` gives, for every range: the same
// errno, or success for both.
#[test]
fn punch_hole_answers_like_fallocate_punch_for_every_range() {
    const KEEP_PUNCH: i32 = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE;
    let size = 8 * P;
    let big = (i64::MAX as u64) & !(P - 1);
    for (f, current) in every_kind(size) {
        for (off, len) in [
            (0, P),
            (0, size),
            (size - P, 4 * P),
            (size, P),
            (4 * size, P),
            (0, 1),
            (3, P),
            (0, 0),
            (1 << 63, P),
            (0, 1 << 63),
            (big, 2 * P),
            (big, P),
            (P, !(P - 1)),
        ] {
            let what = format!("{} [{off:#x}, +{len:#x})", f.kind());
            let via_fallocate = errno_of(f.fallocate(KEEP_PUNCH, off, len));
            assert_eq!(
                errno_of(f.punch_hole(off, len)),
                via_fallocate,
                "punch_hole vs fallocate, {what}"
            );
            assert_eq!(
                errno_of(f.fallocate_within(current, KEEP_PUNCH, off, len)),
                via_fallocate,
                "fallocate_within vs fallocate, {what}"
            );
        }
    }
}
