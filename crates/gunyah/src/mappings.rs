//! The program's own mappings of guest memory files.
//!
//! A program maps its guest memory descriptor with `mmap` to load images
//! and DTBs (TV does, GUNYAH-USERSPACE §1.6–1.7). The kernel makes the
//! mapping; the library records it and registers it with lendvm as a user
//! view, so that while it lives none of its pages can be lent (a guest
//! touching them gets PAGE_FAULT -EPERM; START fails if they hold the DTB
//! of a lend binding: SPEC GM-MM-6, TV `vm_dtb_no_map`). Pages that were
//! already lent when the mapping was made are made inaccessible
//! (`PROT_NONE`: a host access is SIGSEGV, where Gunyah gives SIGBUS) and
//! get the program's protection back when lendvm returns them (UNMAP, VM
//! teardown: [`refresh`]).
//!
//! `munmap`, `mremap`, `mprotect` and `MAP_FIXED` mappings over recorded
//! ranges keep the records exact; a record splits where a call covers only
//! part of it.

use std::ffi::{c_int, c_void};
use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::{self, GuestMem, UserView};
use crate::guard::Errno;

const PAGE: usize = 4096;

/// One recorded mapping (or piece of one).
struct Record {
    /// Page-aligned address range in the program's address space.
    addr: Range<usize>,
    /// File offset of `addr.start`.
    offset: u64,
    /// The protection the program asked for.
    prot: c_int,
    /// lendvm's registration of the pages.
    view: UserView,
    /// Some pages are `PROT_NONE` because they are lent.
    hidden: bool,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());
/// Number of records, for the cheap "nothing recorded" test.
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn records() -> MutexGuard<'static, Vec<Record>> {
    RECORDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn store(recs: &mut Vec<Record>, rec: Record) {
    recs.push(rec);
    COUNT.store(recs.len(), Ordering::Relaxed);
}

fn round_up(len: usize) -> usize {
    len.div_ceil(PAGE) * PAGE
}

/// True if any mapping is recorded.
#[inline]
pub(crate) fn any() -> bool {
    COUNT.load(Ordering::Relaxed) != 0
}

/// True if `[addr, addr + len)` touches a recorded mapping.
pub(crate) fn overlaps(addr: usize, len: usize) -> bool {
    let end = addr.saturating_add(round_up(len));
    records()
        .iter()
        .any(|r| r.addr.start < end && addr < r.addr.end)
}

fn set_prot(addr: Range<usize>, prot: c_int) {
    if addr.is_empty() {
        return;
    }
    // SAFETY: `addr` lies inside a mapping of a guest memory file the
    // program made and the library recorded; changing its protection
    // touches no memory Rust code refers to.
    unsafe { libc::mprotect(addr.start as *mut c_void, addr.end - addr.start, prot) };
}

impl Record {
    fn file_to_addr(&self, r: &Range<u64>) -> Range<usize> {
        let start = self.addr.start + (r.start - self.offset) as usize;
        start..start + (r.end - r.start) as usize
    }

    /// Give lent pages no access and every other page the program's
    /// protection.
    fn apply(&mut self, restore: bool) {
        let lent = backend::lent_ranges(&self.view);
        let mut at = self.addr.start;
        for r in &lent {
            let hide = self.file_to_addr(r);
            if restore {
                set_prot(at..hide.start, self.prot);
            }
            set_prot(hide.clone(), libc::PROT_NONE);
            at = hide.end;
        }
        if restore {
            set_prot(at..self.addr.end, self.prot);
        }
        self.hidden = !lent.is_empty();
    }

    /// The part of the record in `addr` (inside it), as a record of its own.
    fn piece(&self, addr: Range<usize>) -> Result<Record, Errno> {
        let offset = self.offset + (addr.start - self.addr.start) as u64;
        let view = backend::split_user_view(&self.view, offset, (addr.end - addr.start) as u64)?;
        Ok(Record {
            addr,
            offset,
            prot: self.prot,
            view,
            hidden: self.hidden,
        })
    }
}

/// Split records so that none straddles `at`.
fn split_at(recs: &mut Vec<Record>, at: usize) -> Result<(), Errno> {
    let Some(i) = recs
        .iter()
        .position(|r| r.addr.start < at && at < r.addr.end)
    else {
        return Ok(());
    };
    let (left, right) = {
        let r = &recs[i];
        (r.piece(r.addr.start..at)?, r.piece(at..r.addr.end)?)
    };
    // New registrations exist before the old one goes: the pages are
    // covered throughout.
    recs[i] = left;
    store(recs, right);
    Ok(())
}

/// Split at both ends of `range` and return the indexes of the records
/// inside it.
fn isolate(recs: &mut Vec<Record>, range: &Range<usize>) -> Result<Vec<usize>, Errno> {
    split_at(recs, range.start)?;
    split_at(recs, range.end)?;
    Ok(recs
        .iter()
        .enumerate()
        .filter(|(_, r)| range.start <= r.addr.start && r.addr.end <= range.end)
        .map(|(i, _)| i)
        .collect())
}

/// Forget the records inside `range` (the program unmapped it or mapped
/// something else over it).
fn forget(recs: &mut Vec<Record>, range: Range<usize>) -> Result<(), Errno> {
    let mut inside = isolate(recs, &range)?;
    inside.sort_unstable();
    for i in inside.into_iter().rev() {
        recs.swap_remove(i);
    }
    COUNT.store(recs.len(), Ordering::Relaxed);
    Ok(())
}

/// `mmap` of guest memory file `mem` through descriptor `fd`.
pub(crate) fn map(
    mem: &GuestMem,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: RawFd,
    offset: libc::off_t,
) -> Result<*mut c_void, Errno> {
    // The kernel's own checks first, so nothing is registered for a call
    // it would refuse.
    let offset = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    if len == 0 || !offset.is_multiple_of(PAGE as u64) {
        return Err(Errno::EINVAL);
    }
    let shared = matches!(
        flags & libc::MAP_TYPE,
        libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE
    );
    // Register only what lendvm tracks (up to the file's capacity): past
    // it no page can ever be bound.
    let tracked = (round_up(len) as u64).min(backend::capacity(mem).saturating_sub(offset));
    let view = if tracked > 0 {
        Some(backend::add_user_view(mem, offset, tracked, shared)?)
    } else if !shared {
        // SPEC GM-MM-1, also past the capacity.
        return Err(Errno::EINVAL);
    } else {
        None
    };
    let next = crate::next::mmap().ok_or(Errno(libc::ENOSYS))?;
    let mut recs = records();
    // SAFETY: the program's own mmap call, passed on unchanged.
    let p = unsafe { next(addr, len, prot, flags, fd, offset as libc::off_t) };
    if p == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    let start = p as usize;
    if flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0 {
        // What was mapped there before is gone.
        let _ = forget(&mut recs, start..start + round_up(len));
    }
    if let Some(view) = view {
        let mut rec = Record {
            addr: start..start + tracked as usize,
            offset,
            prot,
            view,
            hidden: false,
        };
        rec.apply(false);
        store(&mut recs, rec);
    }
    Ok(p)
}

/// After a successful `munmap` (or `MAP_FIXED` mapping of anything else)
/// over `[addr, addr + len)`.
pub(crate) fn unmapped(addr: usize, len: usize) {
    let end = addr.saturating_add(round_up(len));
    let _ = forget(&mut records(), addr..end);
}

/// After a successful `mremap` of `[old, old + old_len)` to
/// `[new, new + new_len)` with `flags`.
pub(crate) fn remapped(old: usize, old_len: usize, new: usize, new_len: usize, flags: c_int) {
    let mut recs = records();
    // The recorded mapping the old range starts in, if any, gives the new
    // mapping its file offset and protection.
    let moved = recs
        .iter()
        .find(|r| r.addr.start <= old && old < r.addr.end)
        .and_then(|r| {
            let offset = r.offset + (old - r.addr.start) as u64;
            let capacity = r.view.file().size();
            let tracked = (round_up(new_len) as u64).min(capacity.saturating_sub(offset));
            let view = (tracked > 0)
                .then(|| backend::split_user_view(&r.view, offset, tracked).ok())
                .flatten()?;
            Some(Record {
                addr: new..new + tracked as usize,
                offset,
                prot: r.prot,
                view,
                hidden: false,
            })
        });
    // Old size 0 makes a second mapping, and MREMAP_DONTUNMAP keeps the
    // old range mapped (to fresh memory for anonymous mappings only; kept
    // recorded either way, erring on the side of blocking lending).
    if old_len != 0 && flags & libc::MREMAP_DONTUNMAP == 0 {
        let _ = forget(&mut recs, old..old.saturating_add(round_up(old_len)));
    }
    // Whatever the new range replaced (MREMAP_FIXED) is gone.
    let _ = forget(&mut recs, new..new.saturating_add(round_up(new_len)));
    if let Some(mut rec) = moved {
        rec.apply(false);
        store(&mut recs, rec);
    }
}

/// `mprotect` over recorded mappings: the program's protection is
/// recorded, and lent pages keep no access throughout (the call is split
/// around them, so they are never accessible even for a moment).
pub(crate) fn protect(addr: usize, len: usize, prot: c_int) -> Result<c_int, Errno> {
    let next = crate::next::mprotect().ok_or(Errno(libc::ENOSYS))?;
    if !addr.is_multiple_of(PAGE) {
        // The kernel's answer, before anything is split.
        return Err(Errno::EINVAL);
    }
    let mut recs = records();
    let range = addr..addr.saturating_add(round_up(len));
    let inside = isolate(&mut recs, &range)?;
    let mut hidden: Vec<Range<usize>> = inside
        .iter()
        .flat_map(|&i| {
            let r = &recs[i];
            backend::lent_ranges(&r.view)
                .iter()
                .map(|l| r.file_to_addr(l))
                .collect::<Vec<_>>()
        })
        .collect();
    hidden.sort_by_key(|h| h.start);
    let mut at = range.start;
    for piece in hidden
        .iter()
        .cloned()
        .chain(std::iter::once(range.end..range.end))
    {
        if piece.start > at {
            // SAFETY: the program's own mprotect call, for the part of its
            // range that holds no lent page.
            if unsafe { next(at as *mut c_void, piece.start - at, prot) } != 0 {
                return Err(Errno::last());
            }
        }
        at = at.max(piece.end);
    }
    for i in inside {
        recs[i].prot = prot;
    }
    Ok(0)
}

/// Re-apply protections after lendvm may have returned lent pages.
pub(crate) fn refresh() {
    if !any() {
        return;
    }
    for rec in records().iter_mut().filter(|r| r.hidden) {
        rec.apply(true);
    }
}
