//! Additions for the Gunyah compat profile (DESIGN D13): memfd files that
//! grow and shrink, fallocate against their current size, and mappings the
//! program made itself (user views). None of this needs /dev/kvm.

use std::os::fd::AsRawFd;

use binding::{Access, BindingInfo, FileId, PAGE_SIZE, Perms, VmId, file_flags, map_flags};
use gmem::{Error, GuestMemFile, PageState};

const P: u64 = PAGE_SIZE;
const M: u64 = 1 << 20;
const VM: VmId = VmId(3);
const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;

fn st_size(f: &GuestMemFile) -> u64 {
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is the file's own, open while `f` lives.
    assert_eq!(unsafe { libc::fstat(f.as_raw_fd(), &mut st) }, 0);
    st.st_size as u64
}

fn lend_binding(offset: u64, size: u64) -> BindingInfo {
    BindingInfo {
        guest_addr: 0x8000_0000 + offset,
        size,
        file: FileId(1),
        offset,
        flags: map_flags(Access::Lend, Perms::RWX),
    }
}

#[test]
fn a_resizable_file_grows_and_shrinks_within_its_capacity() {
    let f = GuestMemFile::memfd_resizable(4 * M, 128 * M, 0).unwrap();
    assert_eq!(st_size(&f), 4 * M);
    assert_eq!(f.size(), 128 * M, "lendvm sees the capacity");
    f.set_len(100 * M).unwrap();
    assert_eq!(st_size(&f), 100 * M);
    f.set_len(10 * M).unwrap();
    assert_eq!(st_size(&f), 10 * M);
    let err = f.set_len(128 * M + P).unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG, "{err}");
    assert_eq!(st_size(&f), 10 * M, "a refused resize changes nothing");
}

#[test]
fn a_resizable_file_descriptor_is_close_on_exec_and_flags_are_checked() {
    let f = GuestMemFile::memfd_resizable(P, M, 0).unwrap();
    // SAFETY: F_GETFD only reads the descriptor's flags.
    let fd_flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
    assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    assert_eq!(f.flags(), 0, "the caller's flags are recorded as given");
    let err = GuestMemFile::memfd_resizable(P, M, 0b1000).err().unwrap();
    assert_eq!(err.errno(), libc::EINVAL);
    let err = GuestMemFile::memfd_resizable(2 * M, M, 0).err().unwrap();
    assert_eq!(err.errno(), libc::EFBIG);
}

#[test]
fn fixed_size_files_still_refuse_resizing() {
    let f = GuestMemFile::memfd(M, file_flags::CLOEXEC).unwrap();
    // The seals refuse shrinking (SPEC GM-7's immutable size for lendvm's
    // own files); growing is past the size the file was made with.
    assert_eq!(f.set_len(M / 2).unwrap_err().errno(), libc::EPERM);
    assert_eq!(f.set_len(2 * M).unwrap_err().errno(), libc::EFBIG);
    f.set_len(M).unwrap();
    assert_eq!(st_size(&f), M);
}

// SPEC GM-FA-1..5 against the current size (TV guest_mem::{fallocate,setlen,dup}).
#[test]
fn fallocate_within_measures_against_the_current_size() {
    let f = GuestMemFile::memfd_resizable(4 * M, 128 * M, 0).unwrap();
    let size = 4 * M;
    f.fallocate_within(size, KEEP, 0, 4 * M).unwrap();
    for (off, len) in [(0, 1), (1, 4 * M), (1, 10 * M)] {
        let err = f.fallocate_within(size, KEEP, off, len).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "({off:#x}, {len:#x}): {err}");
    }
    let err = f.fallocate_within(size, KEEP, 4 * M, M).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL, "allocating past the end: {err}");
    let err = f.fallocate_within(size, 0, 0, M).unwrap_err();
    assert_eq!(err.errno(), libc::EOPNOTSUPP, "no KEEP_SIZE: {err}");
    // Punching past the end succeeds and touches nothing there.
    f.fallocate_within(size, KEEP | PUNCH, 5 * M, M).unwrap();
    f.fallocate_within(size, KEEP | PUNCH, 3 * M, 8 * M)
        .unwrap();
    assert_eq!(st_size(&f), 4 * M, "KEEP_SIZE never changes the size");
    // After growing, the same allocation is fine.
    f.set_len(50 * M).unwrap();
    f.fallocate_within(50 * M, KEEP, 49 * M, M).unwrap();
    assert_eq!(
        f.fallocate_within(50 * M, KEEP, 50 * M, M)
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
}

#[test]
fn fallocate_within_still_refuses_to_punch_lent_pages() {
    let f = GuestMemFile::memfd_resizable(16 * P, M, 0).unwrap();
    f.bind(VM, &lend_binding(0, 4 * P)).unwrap();
    f.lend_window(VM, P..2 * P).unwrap();
    let err = f
        .fallocate_within(16 * P, KEEP | PUNCH, 0, 4 * P)
        .unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY, "DESIGN D10: {err}");
}

// SPEC GM-MM-1.
#[test]
fn private_user_mappings_are_refused() {
    let f = GuestMemFile::memfd_resizable(4 * P, M, 0).unwrap();
    let err = f.add_user_view(0, P, false).unwrap_err();
    assert!(matches!(err, Error::PrivateMapping), "{err}");
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(f.views_over(0, 4 * P), 0);
}

#[test]
fn user_views_must_be_whole_pages_inside_the_file() {
    let f = GuestMemFile::memfd_resizable(4 * P, 8 * P, 0).unwrap();
    for (off, len) in [
        (0, 0),
        (1, P),
        (0, P + 1),
        (4 * P, 8 * P),
        (u64::MAX - P + 1, P),
    ] {
        assert!(
            f.add_user_view(off, len, true).is_err(),
            "({off:#x}, {len:#x})"
        );
    }
    // Up to the capacity, past the current size: the kernel allows such a
    // mapping, so lendvm must track it too.
    let v = f.add_user_view(4 * P, 4 * P, true).unwrap();
    assert_eq!((v.offset(), v.len()), (4 * P, 4 * P));
}

// SPEC GM-MM-6: a mapping the program made blocks lending like a view.
#[test]
fn a_live_user_view_blocks_lending_until_dropped() {
    let f = GuestMemFile::memfd_resizable(8 * P, M, 0).unwrap();
    f.bind(VM, &lend_binding(0, 8 * P)).unwrap();
    let v = f.add_user_view(2 * P, 2 * P, true).unwrap();
    assert_eq!(f.views_over(0, 8 * P), 1);
    let err = f.lend_window(VM, 0..8 * P).unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY, "{err}");
    // A chunk beside the view can be lent.
    f.lend_window(VM, 4 * P..8 * P).unwrap();
    assert!(v.lent_ranges().is_empty());
    drop(v);
    f.lend_window(VM, 0..4 * P).unwrap();
    assert_eq!(f.page_state(2 * P), PageState::Lent(VM));
}

#[test]
fn a_user_view_over_lent_pages_reports_them_until_they_come_back() {
    let f = GuestMemFile::memfd_resizable(8 * P, M, 0).unwrap();
    f.bind(VM, &lend_binding(0, 8 * P)).unwrap();
    f.lend_window(VM, 2 * P..5 * P).unwrap();
    // Unlike a HostView (refused over lent pages), a user view is recorded:
    // the program already has the mapping.
    assert!(f.view(0, 8 * P).is_err());
    let v = f.add_user_view(0, 8 * P, true).unwrap();
    assert_eq!(v.lent_ranges(), vec![2 * P..5 * P]);
    // The binding goes: the pages return to the host (zeroed, D5).
    f.release(VM, 0, 8 * P).unwrap();
    assert!(v.lent_ranges().is_empty());
    assert_eq!(f.page_state(3 * P), PageState::Host);
}

// Found by the gunyah_abi fuzz target: a resizable file's mapping covers
// its capacity, but only its current length exists, and touching past it
// is SIGBUS. Every host access checks the current length (EFAULT, as past
// the end of any file), and a shrink under one of lendvm's host views is
// EBUSY; a program's own mapping may outlive the end, as with any file.
#[test]
fn host_access_past_the_current_length_is_an_error_not_a_signal() {
    let f = GuestMemFile::memfd_resizable(P, 64 * P, 0).unwrap();
    let mut buf = [0u8; 2];
    for at in [P, 41 * P, P - 1] {
        assert_eq!(f.write_at(at, &[1, 2]).unwrap_err().errno(), libc::EFAULT);
        assert_eq!(f.read_at(at, &mut buf).unwrap_err().errno(), libc::EFAULT);
    }
    assert!(f.view(0, 2 * P).is_err());
    f.set_len(8 * P).unwrap();
    f.write_at(7 * P, &[1, 2]).unwrap();
    f.write_at(8 * P - 2, &[1, 2]).unwrap();
    let view = f.view(4 * P, 4 * P).unwrap();
    assert_eq!(f.set_len(2 * P).unwrap_err().errno(), libc::EBUSY);
    f.write_at(8 * P - 2, &[3, 4]).unwrap();
    drop(view);
    let user = f.add_user_view(0, 8 * P, true).unwrap();
    f.set_len(2 * P).unwrap();
    assert_eq!(
        f.read_at(2 * P, &mut buf).unwrap_err().errno(),
        libc::EFAULT
    );
    f.read_at(2 * P - 2, &mut buf).unwrap();
    drop(user);
}
