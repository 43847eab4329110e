//! A guest memory file: the kernel object, its one kernel-facing mapping,
//! its page ownership, and the only host access to its memory.

use std::fs::File;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use binding::{Access, BindingInfo, PAGE_SIZE, VmId, file_flags};
use kvm_bindings::kvm_create_guest_memfd;
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegion;
use vm_memory::volatile_memory::VolatileMemory;
use vm_memory::{FileOffset, VolatileSlice};

use crate::caps::{GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GuestMemfdSupport};
use crate::pages::{Ownership, PageState};
use crate::view::HostView;
use crate::{Error, sys};

/// How the host may use a VM-owned guest_memfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `MMAP | INIT_SHARED`: host-mappable; share or lend, with lending
    /// enforced by lendvm refusing every host access to lent pages.
    HostMappable,
    /// `MMAP` only: the kernel refuses every host access (a host fault is
    /// SIGBUS, read/write fail), so lendvm refuses them first. Lend only.
    Private,
}

impl Mode {
    /// The guest_memfd creation flags of this mode.
    pub const fn kvm_flags(self) -> u64 {
        match self {
            Mode::HostMappable => GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
            Mode::Private => GUEST_MEMFD_FLAG_MMAP,
        }
    }
}

/// The kernel object behind a guest memory file (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A KVM guest_memfd created by (and bindable only into) one VM.
    GuestMemfd(Mode),
    /// A sealed memfd: free-standing, bindable into any VM (the Gunyah
    /// model), mapped into KVM through classic memslots.
    Memfd,
}

impl Kind {
    /// True if the host may never touch the file's memory.
    pub fn is_private(self) -> bool {
        self == Kind::GuestMemfd(Mode::Private)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::GuestMemfd(Mode::HostMappable) => f.write_str("guest_memfd (host-mappable)"),
            Kind::GuestMemfd(Mode::Private) => f.write_str("guest_memfd (private)"),
            Kind::Memfd => f.write_str("memfd (free-standing)"),
        }
    }
}

/// Lent pages of one VM that a reclaim must take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LentRange {
    /// The VM holding them.
    pub vm: VmId,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The VM manager's side of a reclaim (SPEC L-1): take lent pages away from
/// their guests. [`GuestMemFile::reclaim`] calls it; it locks whatever keeps
/// the guests from using the pages (so no guest access can be completed
/// against them meanwhile), then calls [`GuestMemFile::reclaim_with`],
/// which marks the pages as being reclaimed, calls back to take them out
/// of the guests, and zeroes them (DESIGN D5).
pub trait ReclaimHook: Send + Sync {
    /// Take the lent pages of `[offset, offset + len)` of `file` back.
    fn reclaim(&self, file: &GuestMemFile, offset: u64, len: u64) -> Result<u64, Error>;
}

/// A guest memory file. Cloning gives another handle to the same file.
#[derive(Clone)]
pub struct GuestMemFile {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The descriptor, shared with the mappings that need it.
    pub(crate) file: Arc<File>,
    size: u64,
    flags: u64,
    kind: Kind,
    /// The one mapping of the whole file that KVM uses as the memslot's
    /// `userspace_addr` (its emulator and this host's shadow page-table
    /// walker read guest memory through it). lendvm reads it only for pages
    /// that are not lent.
    kernel: MmapRegion,
    pub(crate) state: Mutex<Ownership>,
    hook: Mutex<Option<Arc<dyn ReclaimHook>>>,
}

impl std::fmt::Debug for GuestMemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMemFile")
            .field("fd", &self.as_raw_fd())
            .field("size", &self.inner.size)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

fn check_size(size: u64) -> Result<usize, Error> {
    if size == 0 || !size.is_multiple_of(PAGE_SIZE) || size > i64::MAX as u64 {
        return Err(Error::BadSize(size));
    }
    usize::try_from(size).map_err(|_| Error::BadSize(size))
}

impl GuestMemFile {
    /// Create a VM-owned guest_memfd (probing the VM's support first).
    pub fn guest_memfd(vm: &VmFd, size: u64, mode: Mode) -> Result<GuestMemFile, Error> {
        Self::guest_memfd_with(vm, GuestMemfdSupport::probe(vm), size, mode)
    }

    /// Create a VM-owned guest_memfd with support already probed.
    pub fn guest_memfd_with(
        vm: &VmFd,
        support: GuestMemfdSupport,
        size: u64,
        mode: Mode,
    ) -> Result<GuestMemFile, Error> {
        check_size(size)?;
        support.require(mode.kvm_flags())?;
        let raw = vm
            .create_guest_memfd(kvm_create_guest_memfd {
                size,
                flags: mode.kvm_flags(),
                reserved: [0; 6],
            })
            .map_err(|e| Error::Os {
                op: "KVM_CREATE_GUEST_MEMFD",
                source: e.into(),
            })?;
        // SAFETY: KVM just returned this descriptor to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // KVM never sets close-on-exec on guest_memfd (SPEC GM-4); lendvm's
        // own descriptors must not leak into child processes.
        sys::set_cloexec(fd.as_fd(), true)?;
        Self::from_fd(fd, size, file_flags::CLOEXEC, Kind::GuestMemfd(mode))
    }

    /// Create a free-standing file: a memfd sealed against shrinking and
    /// growing, so its size is fixed for life (SPEC GM-7) and no mapping of
    /// it can ever fault past the end.
    pub fn memfd(size: u64, flags: u64) -> Result<GuestMemFile, Error> {
        if flags & !file_flags::ALL != 0 {
            return Err(Error::UnknownFlags(flags & !file_flags::ALL));
        }
        check_size(size)?;
        let mut mfd_flags = libc::MFD_ALLOW_SEALING;
        if flags & file_flags::CLOEXEC != 0 {
            mfd_flags |= libc::MFD_CLOEXEC;
        }
        let fd = sys::memfd_create(c"lendvm-guest-mem", mfd_flags)?;
        sys::ftruncate(fd.as_fd(), size)?;
        sys::add_seals(
            fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        Self::from_fd(fd, size, flags, Kind::Memfd)
    }

    /// Create a free-standing file whose size may change later with
    /// [`GuestMemFile::set_len`]: an unsealed memfd, `size` bytes now and
    /// never more than `capacity` (the Gunyah compat profile's guest
    /// memory, DESIGN D13). Its descriptor is always close-on-exec (it is
    /// lendvm's own; `flags` are only recorded).
    ///
    /// lendvm treats the file as `capacity` bytes: [`GuestMemFile::size`]
    /// reports the capacity, page ownership and the kernel-facing mapping
    /// cover it (address space only: nothing is allocated). The current
    /// size is the caller's to enforce (the VM manager checks ranges
    /// against its binding registry); host access past it would fault, so
    /// only bound ranges and [`GuestMemFile::fallocate_within`] may be used.
    pub fn memfd_resizable(size: u64, capacity: u64, flags: u64) -> Result<GuestMemFile, Error> {
        if flags & !file_flags::ALL != 0 {
            return Err(Error::UnknownFlags(flags & !file_flags::ALL));
        }
        check_size(capacity)?;
        if size > capacity {
            return Err(Error::BeyondCapacity { size, capacity });
        }
        let fd = sys::memfd_create(c"lendvm-guest-mem", libc::MFD_CLOEXEC)?;
        sys::ftruncate(fd.as_fd(), size)?;
        let file = Self::from_fd(fd, capacity, flags, Kind::Memfd)?;
        file.lock().set_backed(size.div_ceil(PAGE_SIZE))?;
        Ok(file)
    }

    /// `ftruncate(2)` of a file made by [`GuestMemFile::memfd_resizable`]:
    /// grow or shrink it to `len` bytes, at most its capacity (EFBIG
    /// beyond). Pages past a new, smaller end are freed by the kernel, so
    /// the caller must have checked that none is bound (SPEC GM-7). Other
    /// files refuse any change of size (the kernel's EPERM for a sealed
    /// memfd, EINVAL for guest_memfd).
    pub fn set_len(&self, len: u64) -> Result<(), Error> {
        if len > self.inner.size {
            return Err(Error::BeyondCapacity {
                size: len,
                capacity: self.inner.size,
            });
        }
        // Under the file's lock, so no host access can be between its
        // check and its copy while the end moves.
        let mut st = self.lock();
        let old = st.backed();
        st.set_backed(len.div_ceil(PAGE_SIZE))?;
        if let Err(e) = sys::ftruncate(self.as_fd(), len) {
            let _ = st.set_backed(old);
            return Err(e);
        }
        Ok(())
    }

    /// `fallocate(2)` with the rules of SPEC §2.2, measured against `size`,
    /// the current size of a resizable file, instead of
    /// [`GuestMemFile::size`]: allocating past it is EINVAL, and punching
    /// ignores what lies past it (GM-FA-4/5). The checks before any size
    /// come first, in the kernel's order (as in
    /// [`GuestMemFile::fallocate`]).
    pub fn fallocate_within(
        &self,
        size: u64,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> Result<(), Error> {
        let punch = fallocate_mode(mode, offset, len)?;
        let size = size.min(self.inner.size);
        if punch {
            // Up to the end of the page holding the last byte.
            let end = (offset + len).min(size.div_ceil(PAGE_SIZE) * PAGE_SIZE);
            if offset >= end {
                return Ok(());
            }
            return self.punch_hole(offset, end - offset);
        }
        if offset + len > size {
            return Err(Error::AllocateBeyondEnd { offset, len, size });
        }
        self.allocate(offset, len)
    }

    fn from_fd(fd: OwnedFd, size: u64, flags: u64, kind: Kind) -> Result<GuestMemFile, Error> {
        let len = check_size(size)?;
        let file = Arc::new(File::from(fd));
        let kernel = MmapRegion::build(
            Some(FileOffset::from_arc(file.clone(), 0)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
        .map_err(|e| sys::mmap_error("mmap of the guest memory file", e))?;
        sys::keep_private(kernel.as_ptr(), len)?;
        Ok(GuestMemFile {
            inner: Arc::new(Inner {
                file,
                size,
                flags,
                kind,
                kernel,
                state: Mutex::new(Ownership::new(size / PAGE_SIZE)),
                hook: Mutex::new(None),
            }),
        })
    }

    // ----- identity --------------------------------------------------------

    /// Size in bytes, fixed for life.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Creation flags (`binding::file_flags`).
    pub fn flags(&self) -> u64 {
        self.inner.flags
    }

    /// The kernel object behind the file.
    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    /// Host address of the kernel-facing mapping of the whole file, for a
    /// KVM memslot's `userspace_addr`.
    ///
    /// # Safety
    ///
    /// The mapping holds lent pages, which nothing in the host may read or
    /// write: the caller may only hand the number to KVM (as a memslot's
    /// `userspace_addr`, within the file's size) and must never turn it
    /// into a pointer or reference. The mapping lives as long as any handle
    /// to the file.
    pub unsafe fn kernel_mapping_addr(&self) -> u64 {
        self.inner.kernel.as_ptr() as u64
    }

    /// Register the VM manager's reclaim hook (replacing any earlier one).
    pub fn set_reclaim_hook(&self, hook: Arc<dyn ReclaimHook>) {
        *lock(&self.inner.hook) = Some(hook);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Ownership> {
        lock(&self.inner.state)
    }

    // ----- ranges ------------------------------------------------------------

    /// Whole pages `[offset, offset + len)` inside the file.
    fn pages(&self, offset: u64, len: u64) -> Result<Range<u64>, Error> {
        let end = offset.checked_add(len);
        match end {
            Some(end)
                if end <= self.inner.size
                    && offset.is_multiple_of(PAGE_SIZE)
                    && len.is_multiple_of(PAGE_SIZE) =>
            {
                Ok(offset / PAGE_SIZE..end / PAGE_SIZE)
            }
            _ => Err(self.out_of_bounds(offset, len)),
        }
    }

    /// The pages a byte range `[offset, offset + len)` touches.
    fn pages_touched(&self, offset: u64, len: u64) -> Result<Range<u64>, Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.size => Ok(offset / PAGE_SIZE..end.div_ceil(PAGE_SIZE)),
            _ => Err(self.out_of_bounds(offset, len)),
        }
    }

    fn out_of_bounds(&self, offset: u64, len: u64) -> Error {
        Error::OutOfBounds {
            offset,
            len,
            size: self.inner.size,
        }
    }

    fn host_accessible(&self) -> Result<(), Error> {
        if self.inner.kind.is_private() {
            return Err(Error::Private);
        }
        Ok(())
    }

    fn kernel_slice(&self, offset: u64, len: usize) -> Result<VolatileSlice<'_>, Error> {
        // In bounds by construction (callers checked offset + len <= size,
        // and the mapping covers the whole file).
        let start = usize::try_from(offset).map_err(|_| self.out_of_bounds(offset, len as u64))?;
        self.inner
            .kernel
            .get_slice(start, len)
            .map_err(|_| self.out_of_bounds(offset, len as u64))
    }

    // ----- host access -------------------------------------------------------

    /// Read `buf.len()` bytes at `offset`. Refused, with nothing read, if
    /// any byte is outside the file, any page is lent (DESIGN D4, D8), or
    /// the file is private. Never faults.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        if let Some((_lock, slice)) = self.host_access(offset, buf.len())? {
            slice.copy_to(buf);
        }
        Ok(())
    }

    /// Write `buf` at `offset`; refused like [`GuestMemFile::read_at`].
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if let Some((_lock, slice)) = self.host_access(offset, buf.len())? {
            slice.copy_from(buf);
        }
        Ok(())
    }

    /// Check a host copy of `len` bytes at `offset` and return the bytes
    /// together with the ownership lock, which the caller holds across the
    /// copy so no page can be lent mid-copy. `None` for an empty copy.
    fn host_access(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<Option<(MutexGuard<'_, Ownership>, VolatileSlice<'_>)>, Error> {
        self.host_accessible()?;
        let pages = self.pages_touched(offset, len as u64)?;
        if len == 0 {
            return Ok(None);
        }
        let st = self.lock();
        st.check_host_access(pages)?;
        let slice = self.kernel_slice(offset, len)?;
        Ok(Some((st, slice)))
    }

    /// Map `[offset, offset + len)` (whole pages) for host use. The view
    /// blocks lending of its pages until dropped (SPEC GM-MM-6); refused
    /// over lent pages and for private files.
    pub fn view(&self, offset: u64, len: u64) -> Result<HostView, Error> {
        self.host_accessible()?;
        let pages = self.pages(offset, len)?;
        if pages.is_empty() {
            return Err(self.out_of_bounds(offset, len));
        }
        HostView::new(self, offset, len, pages)
    }

    /// Write on behalf of `vm`'s guest (the VM manager completing a guest
    /// access). Allowed on pages bound to `vm`, lent or not; refused for
    /// private files, whose memory no host mapping can reach.
    pub fn write_for_guest(&self, vm: VmId, offset: u64, buf: &[u8]) -> Result<(), Error> {
        let _st = self.guest_access(vm, offset, buf.len())?;
        self.kernel_slice(offset, buf.len())?.copy_from(buf);
        Ok(())
    }

    /// Read on behalf of `vm`'s guest; the counterpart of
    /// [`GuestMemFile::write_for_guest`].
    pub fn read_for_guest(&self, vm: VmId, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let _st = self.guest_access(vm, offset, buf.len())?;
        self.kernel_slice(offset, buf.len())?.copy_to(buf);
        Ok(())
    }

    /// Check that `vm`'s guest may have `[offset, offset + len)` accessed
    /// for it, and hold the lock over the access.
    fn guest_access(
        &self,
        vm: VmId,
        offset: u64,
        len: usize,
    ) -> Result<MutexGuard<'_, Ownership>, Error> {
        self.host_accessible()?;
        let pages = self.pages_touched(offset, len as u64)?;
        let st = self.lock();
        st.check_backed(&pages)?;
        for (run, s) in st.runs(pages) {
            if s.vm() != Some(vm) || matches!(s, PageState::Reclaiming(_)) {
                return Err(Error::WrongState {
                    offset: run.start * PAGE_SIZE,
                    found: s,
                    wanted: "a guest access",
                });
            }
        }
        Ok(st)
    }

    // ----- page ownership ----------------------------------------------------

    /// The state of the page holding `offset`.
    pub fn page_state(&self, offset: u64) -> PageState {
        self.lock().state(offset / PAGE_SIZE)
    }

    /// The state runs over `[offset, offset + len)` (whole pages), as byte
    /// ranges.
    pub fn page_states(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(Range<u64>, PageState)>, Error> {
        let pages = self.pages(offset, len)?;
        Ok(self
            .lock()
            .runs(pages)
            .into_iter()
            .map(|(r, s)| (r.start * PAGE_SIZE..r.end * PAGE_SIZE, s))
            .collect())
    }

    /// Number of live host views intersecting `[offset, offset + len)`.
    pub fn views_over(&self, offset: u64, len: u64) -> usize {
        let end = offset.saturating_add(len).div_ceil(PAGE_SIZE);
        self.lock().views_over(offset / PAGE_SIZE..end)
    }

    /// A binding over this file now exists: its pages become shared with,
    /// or lend-bound to, `vm`. All or nothing.
    pub fn bind(&self, vm: VmId, b: &BindingInfo) -> Result<(), Error> {
        let pages = self.pages(b.offset, b.size)?;
        match b.access() {
            Access::Share => {
                self.host_accessible()?;
                self.lock().share(pages, vm)
            }
            Access::Lend => self.lock().lend_bind(pages, vm),
        }
    }

    /// The guest of `vm` touched a page of `window` (byte range, whole
    /// pages), its demand chunk: lend all of it (DESIGN D2), or nothing.
    /// `Busy` if a host view intersects the window (SPEC GM-MM-6),
    /// `WrongState` if a page is not lend-bound or lent to `vm` (e.g. the
    /// host is reclaiming it). Returns the byte ranges this call lent:
    /// pages already lent to `vm` stay as they were, and only the returned
    /// ranges may be handed to [`GuestMemFile::cancel_lend`].
    pub fn lend_window(&self, vm: VmId, window: Range<u64>) -> Result<Vec<Range<u64>>, Error> {
        let pages = self.pages(window.start, window.end.saturating_sub(window.start))?;
        if pages.is_empty() {
            return Err(self.out_of_bounds(window.start, 0));
        }
        let fresh = self.lock().lend_window(pages, vm)?;
        Ok(fresh
            .into_iter()
            .map(|r| r.start * PAGE_SIZE..r.end * PAGE_SIZE)
            .collect())
    }

    /// Undo a lend the guest never received (the VM manager could not
    /// install it): `lent`, the ranges [`GuestMemFile::lend_window`]
    /// returned, become lend-bound again, content kept. Only pages the
    /// guest never had may become host-accessible this way: pages it had
    /// been lent before stay lent until a reclaim zeroes them (D5).
    pub fn cancel_lend(&self, vm: VmId, lent: &[Range<u64>]) -> Result<(), Error> {
        let mut st = self.lock();
        for r in lent {
            let pages = self.pages(r.start, r.end.saturating_sub(r.start))?;
            st.cancel_lend(pages, vm)?;
        }
        Ok(())
    }

    /// The binding of `vm` over `[offset, offset + len)` is gone (UNMAP or
    /// VM teardown; the VM manager already removed the guest's access):
    /// the pages return to the host, lent ones zeroed first (DESIGN D5).
    pub fn release(&self, vm: VmId, offset: u64, len: u64) -> Result<(), Error> {
        let pages = self.pages(offset, len)?;
        let mut st = self.lock();
        let lent = st.release_check(pages.clone(), vm)?;
        for run in lent {
            self.zero(run)?;
        }
        st.release(pages, vm).map(drop)
    }

    /// Explicitly take lent pages in `[offset, offset + len)` back from
    /// their guests (DESIGN D8: the only host reclaim besides UNMAP and
    /// teardown), through the VM manager's hook; the pages are zeroed (D5)
    /// and stay bound, and the guest can take them again on its next touch
    /// (SPEC L-5). Returns the number of bytes reclaimed.
    pub fn reclaim(&self, offset: u64, len: u64) -> Result<u64, Error> {
        self.pages(offset, len)?;
        let hook = lock(&self.inner.hook).clone();
        match hook {
            Some(hook) => hook.reclaim(self, offset, len),
            None => self.reclaim_with(offset, len, |_| {
                Err(Error::ReclaimFailed {
                    offset,
                    len,
                    errno: libc::EBUSY,
                    reason: "no VM manager is registered to take the pages back".into(),
                })
            }),
        }
    }

    /// The body of a reclaim, for the VM manager's hook (which holds its own
    /// locks around it): mark the lent pages of the range as being
    /// reclaimed, call `take_back` with them (no gmem lock held) to remove
    /// them from their guests, then zero them and make them lend-bound
    /// again; if `take_back` fails they stay lent. Returns the bytes
    /// reclaimed.
    pub fn reclaim_with(
        &self,
        offset: u64,
        len: u64,
        take_back: impl FnOnce(&[LentRange]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let pages = self.pages(offset, len)?;
        let runs = self.lock().begin_reclaim(pages)?;
        if runs.is_empty() {
            return Ok(0);
        }
        let ranges: Vec<LentRange> = runs
            .iter()
            .map(|(r, vm)| LentRange {
                vm: *vm,
                offset: r.start * PAGE_SIZE,
                len: (r.end - r.start) * PAGE_SIZE,
            })
            .collect();
        let result = take_back(&ranges);
        let mut st = self.lock();
        let result = result.and_then(|()| runs.iter().try_for_each(|(r, _)| self.zero(r.clone())));
        st.finish_reclaim(&runs, result.is_ok());
        result.map(|()| ranges.iter().map(|r| r.len).sum())
    }

    /// START hands a DTB in a share binding over lent (SPEC B-AC-5): its
    /// shared pages stop being host-accessible. `Busy` if a host view
    /// covers any of them.
    pub fn lend_shared(&self, vm: VmId, offset: u64, len: u64) -> Result<(), Error> {
        let pages = self.pages(offset, len)?;
        self.lock().lend_shared(pages, vm)
    }

    /// Whether the host may read or write `[offset, offset + len)` now:
    /// the same checks as [`GuestMemFile::read_at`], without copying.
    pub fn check_host_access(&self, offset: u64, len: u64) -> Result<(), Error> {
        self.host_accessible()?;
        let pages = self.pages_touched(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.lock().check_host_access(pages)
    }

    /// Zero (and free) pages: the guest's bytes must not reach the host.
    fn zero(&self, pages: Range<u64>) -> Result<(), Error> {
        let (offset, len) = (
            pages.start * PAGE_SIZE,
            (pages.end - pages.start) * PAGE_SIZE,
        );
        sys::fallocate(
            self.as_fd(),
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE,
            offset,
            len,
        )
    }

    // ----- fallocate ---------------------------------------------------------

    /// `fallocate(2)` with the rules of SPEC §2.2: allocate (KEEP_SIZE) or
    /// punch hole (KEEP_SIZE | PUNCH_HOLE), whole pages only.
    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<(), Error> {
        if fallocate_mode(mode, offset, len)? {
            self.punch_hole(offset, len)
        } else {
            self.allocate(offset, len)
        }
    }

    /// Instantiate (zero-filled) every page of the range (SPEC GM-FA-4).
    pub fn allocate(&self, offset: u64, len: u64) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.size => {}
            _ => {
                return Err(Error::AllocateBeyondEnd {
                    offset,
                    len,
                    size: self.inner.size,
                });
            }
        }
        self.pages(offset, len)?;
        sys::fallocate(self.as_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len)
    }

    /// Free the range: it reads as zero afterwards, for host and guests
    /// (SPEC GM-FA-5/6). The part past the end of the file is ignored.
    /// Refused with `Busy`, nothing freed, if any page is lent (DESIGN D10).
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<(), Error> {
        // SPEC GM-FA-3: the range checks of a punch through `fallocate`
        // (in the kernel's order: sign and emptiness, overflow, whole
        // pages), so every entry point gives the same answer.
        if len == 0 || offset > i64::MAX as u64 || len > i64::MAX as u64 {
            return Err(Error::FallocateRange { offset, len });
        }
        if offset + len > i64::MAX as u64 {
            return Err(Error::FallocateTooLarge { offset, len });
        }
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(Error::FallocateRange { offset, len });
        }
        let end = offset.saturating_add(len).min(self.inner.size);
        if offset >= end {
            return Ok(());
        }
        let pages = self.pages(offset, end - offset)?;
        let st = self.lock();
        st.check_punch(pages.clone())?;
        self.zero(pages)
    }
}

impl AsFd for GuestMemFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.file.as_fd()
    }
}

impl AsRawFd for GuestMemFile {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.file.as_raw_fd()
    }
}

/// Lock a mutex, recovering from poisoning: the data under it is changed
/// only by operations that check everything before they write, so a panic
/// elsewhere cannot leave it half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The checks of `fallocate(2)` that need no file size, in the kernel's
/// order (vfs_fallocate, then guest_memfd's own): sign, mode, overflow,
/// alignment (SPEC §2.2). True for a punch hole, false for an allocation.
fn fallocate_mode(mode: i32, offset: u64, len: u64) -> Result<bool, Error> {
    const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
    if len == 0 || offset > i64::MAX as u64 || len > i64::MAX as u64 {
        return Err(Error::FallocateRange { offset, len });
    }
    if mode & !(KEEP | PUNCH) != 0 || mode & KEEP == 0 {
        return Err(Error::FallocateMode(mode));
    }
    if offset + len > i64::MAX as u64 {
        return Err(Error::FallocateTooLarge { offset, len });
    }
    if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(Error::FallocateRange { offset, len });
    }
    Ok(mode & PUNCH != 0)
}
