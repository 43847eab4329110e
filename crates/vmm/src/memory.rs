//! Bindings become KVM memslots.
//!
//! The binding registry decides (a [`binding::Plan`]); this module applies
//! the decision to the guest memory files (page ownership) and to KVM
//! (memslots), rolling back on failure, and only then commits the plan.
//!
//! Share bindings are installed at MAP_MEM. Lend bindings are installed on
//! the guest's first touch (demand paging, DESIGN D2), a chunk at a time,
//! unless the VM turned demand paging off (boot paths that lend all RAM up
//! front). Invariant (DESIGN §6.3): every installed slot lies inside a
//! binding, and a lend binding's page is installed exactly when its file
//! page is lent.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use binding::{Access, BindingInfo, Bindings, Change, FileId, PAGE_SIZE, Plan, VmId};
use gmem::{GuestMemFile, Kind};
use kvm_bindings::kvm_userspace_memory_region2;
use kvm_ioctls::VmFd;
use uapi::gunyah_map_mem_args;

use crate::{Error, Result};

/// Smallest and largest demand-paging chunk.
const MIN_CHUNK: u64 = 2 << 20;
const MAX_CHUNK: u64 = 1 << 30;

/// Everything the VMs of this process share, under one lock.
pub(crate) struct State {
    pub(crate) bindings: Bindings,
    /// Every registered file, open or kept alive by bindings.
    files: BTreeMap<FileId, GuestMemFile>,
    /// Descriptor number → file, for the raw API.
    fds: BTreeMap<RawFd, FileId>,
    vms: BTreeMap<VmId, VmMemory>,
}

/// One VM's KVM memory: its memslots and its memory options.
pub(crate) struct VmMemory {
    vm_fd: Arc<VmFd>,
    free_slots: Vec<u32>,
    /// Installed slots by guest address; they never overlap.
    installed: BTreeMap<u64, Slot>,
    /// Lend bindings are installed on first touch (else at MAP_MEM).
    pub(crate) demand_paging: bool,
    /// Guest ranges no binding may overlap: lendvm's system region and the
    /// legacy user regions, with what they are.
    reserved: Vec<(Range<u64>, &'static str)>,
    /// Legacy user memory regions by label.
    user_regions: BTreeMap<u32, UserRegion>,
    pub(crate) stats: MemoryStats,
}

/// Counters of memory events of one VM.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Demand-paging chunks given to the guest on first touch.
    pub demand_chunks: u64,
    /// Bytes given to the guest by demand paging.
    pub demand_bytes: u64,
    /// Memslots created.
    pub slots_created: u64,
    /// Memslots deleted.
    pub slots_deleted: u64,
    /// Guest accesses lendvm completed against memory on the guest's behalf.
    pub completed_accesses: u64,
}

struct Slot {
    id: u32,
    size: u64,
    backing: Backing,
    readonly: bool,
}

/// What a memslot maps.
#[derive(Clone)]
enum Backing {
    /// A guest memory file from this offset.
    File(GuestMemFile, u64),
    /// The caller's own memory at this address (legacy user regions).
    User(u64),
}

impl Backing {
    /// The same backing `skip` bytes further on.
    fn advanced(&self, skip: u64) -> Backing {
        match self {
            Backing::File(f, off) => Backing::File(f.clone(), off + skip),
            Backing::User(addr) => Backing::User(addr + skip),
        }
    }
}

/// A legacy user memory region (SPEC B-VM-7).
struct UserRegion {
    gpa: u64,
    size: u64,
    /// For a lent region: the memory taken from the caller, given back
    /// (zeroed) when this record is dropped with the VM.
    #[expect(dead_code, reason = "held for its Drop, which gives the memory back")]
    lent: Option<gmem::LentUserMemory>,
}

/// What a guest access to an address found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    /// No binding covers the address.
    Unbound,
    /// The binding's page is in the guest now; `paged` if demand paging
    /// gave it just now. The access may be completed against memory.
    Present {
        /// The binding.
        binding: BindingInfo,
        /// Demand paging installed it for this touch.
        paged: bool,
    },
    /// A write to memory without write permission (SPEC R-5: -EPERM).
    WriteDenied,
    /// The page cannot be given to the guest now: a host view covers it or
    /// the host is reclaiming it (SPEC GM-MM-6: -EPERM).
    Refused,
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            bindings: Bindings::new(),
            files: BTreeMap::new(),
            fds: BTreeMap::new(),
            vms: BTreeMap::new(),
        }
    }

    // ----- files -------------------------------------------------------------

    pub(crate) fn add_file(&mut self, id: FileId, file: GuestMemFile) {
        self.fds.insert(file.as_raw_fd(), id);
        self.files.insert(id, file);
    }

    pub(crate) fn close_file(&mut self, id: FileId) {
        if let Ok(true) = self.bindings.close_file(id) {
            self.forget_file(id);
        }
    }

    fn forget_file(&mut self, id: FileId) {
        if let Some(f) = self.files.remove(&id) {
            self.fds.remove(&f.as_raw_fd());
        }
    }

    pub(crate) fn file(&self, id: FileId) -> Option<&GuestMemFile> {
        self.files.get(&id)
    }

    /// Resolve a raw descriptor number (SPEC B-ADD-2/3): not open → EBADF,
    /// open but not a lendvm guest memory file → EINVAL.
    pub(crate) fn resolve_fd(&self, fd: u32) -> Result<FileId> {
        let Ok(fd) = RawFd::try_from(fd) else {
            return Err(Error::BadFd(fd as i32));
        };
        if let Some(&id) = self.fds.get(&fd) {
            return Ok(id);
        }
        if !fd_is_open(fd) {
            return Err(Error::BadFd(fd));
        }
        Err(Error::WrongFdKind {
            fd,
            wanted: "a lendvm guest memory file",
        })
    }

    // ----- VMs ---------------------------------------------------------------

    pub(crate) fn add_vm(&mut self, vm: VmId, vm_fd: Arc<VmFd>, memslots: usize) {
        let n = u32::try_from(memslots).unwrap_or(u32::MAX);
        self.vms.insert(
            vm,
            VmMemory {
                vm_fd,
                // Pop from the end: low ids first.
                free_slots: (0..n).rev().collect(),
                installed: BTreeMap::new(),
                demand_paging: true,
                reserved: Vec::new(),
                user_regions: BTreeMap::new(),
                stats: MemoryStats::default(),
            },
        );
    }

    pub(crate) fn vm(&mut self, vm: VmId) -> Option<&mut VmMemory> {
        self.vms.get_mut(&vm)
    }

    pub(crate) fn stats(&self, vm: VmId) -> MemoryStats {
        self.vms.get(&vm).map(|m| m.stats).unwrap_or_default()
    }

    /// Keep bindings out of `range` (lendvm's own memory lives there).
    pub(crate) fn reserve(&mut self, vm: VmId, range: Range<u64>, what: &'static str) {
        if let Some(m) = self.vms.get_mut(&vm) {
            m.reserved.push((range, what));
        }
    }

    /// Install lendvm's own memory (not a binding) at `gpa`.
    pub(crate) fn install_private_slot(
        &mut self,
        vm: VmId,
        gpa: u64,
        file: &GuestMemFile,
    ) -> Result<()> {
        let m = self.vm_mut(vm)?;
        m.install(gpa, file.size(), Backing::File(file.clone(), 0), false)
    }

    /// A legacy user memory region (SPEC B-VM-7): `r.userspace_addr` is
    /// memory of this process; with `lend`, it is taken from the host while
    /// the VM lives (see [`gmem::LentUserMemory`]).
    ///
    /// # Safety
    ///
    /// `[r.userspace_addr, +r.memory_size)` must be memory of this process
    /// that stays mapped while the VM lives; the guest may change it at any
    /// time. With `lend`, the caller must not touch it at all meanwhile.
    pub(crate) unsafe fn add_user_region(
        &mut self,
        vm: VmId,
        r: &uapi::gunyah_userspace_memory_region,
        lend: bool,
    ) -> Result<()> {
        use uapi::{GUNYAH_MEM_ALLOW_RWX, GUNYAH_MEM_ALLOW_WRITE};
        let invalid = |why: String| Err(Error::Invalid(why));
        if r.flags & !GUNYAH_MEM_ALLOW_RWX != 0 {
            return invalid(format!(
                "user region flags {:#x}: only R (0x1), W (0x2) and X (0x4) exist",
                r.flags
            ));
        }
        if r.flags == 0 {
            return invalid("a user region must grant some of R, W, X".into());
        }
        for (what, v) in [
            ("guest address", r.guest_phys_addr),
            ("size", r.memory_size),
            ("userspace address", r.userspace_addr),
        ] {
            if !v.is_multiple_of(PAGE_SIZE) {
                return invalid(format!("user region {what} {v:#x} is not page-aligned"));
            }
        }
        if r.memory_size == 0 {
            return invalid("a user region cannot be empty".into());
        }
        let (Some(end), Some(_)) = (
            r.guest_phys_addr.checked_add(r.memory_size),
            r.userspace_addr.checked_add(r.memory_size),
        ) else {
            return invalid("user region wraps past the end of the address space".into());
        };
        let range = r.guest_phys_addr..end;
        let overlaps_binding = !self
            .bindings
            .bindings_in(vm, range.start, r.memory_size)
            .is_empty();
        let m = self.vm_mut(vm)?;
        if m.user_regions.contains_key(&r.label) {
            return Err(Error::Exists(format!(
                "user region label {} is taken",
                r.label
            )));
        }
        if let Some((_, what)) = m
            .reserved
            .iter()
            .find(|(x, _)| x.start < range.end && range.start < x.end)
        {
            return Err(Error::Exists(format!(
                "user region [{:#x}, {end:#x}) overlaps {what}",
                range.start
            )));
        }
        if overlaps_binding {
            return Err(Error::Exists(format!(
                "user region [{:#x}, {end:#x}) overlaps a binding",
                range.start
            )));
        }
        let readonly = r.flags & GUNYAH_MEM_ALLOW_WRITE == 0;
        let (backing, lent) = if lend {
            // SAFETY: forwarded from this function's contract.
            let lent = unsafe { gmem::LentUserMemory::lend(r.userspace_addr, r.memory_size)? };
            (Backing::File(lent.file().clone(), 0), Some(lent))
        } else {
            (Backing::User(r.userspace_addr), None)
        };
        m.install(range.start, r.memory_size, backing, readonly)?;
        m.reserved.push((range.clone(), "a user memory region"));
        m.user_regions.insert(
            r.label,
            UserRegion {
                gpa: range.start,
                size: r.memory_size,
                lent,
            },
        );
        Ok(())
    }

    fn vm_mut(&mut self, vm: VmId) -> Result<&mut VmMemory> {
        self.vms
            .get_mut(&vm)
            .ok_or(Error::Binding(binding::Error::UnknownVm(vm)))
    }

    // ----- MAP_MEM -------------------------------------------------------------

    /// MAP_MEM with a real descriptor number in `args.guest_mem_fd`.
    pub(crate) fn map_mem(&mut self, vm: VmId, args: &gunyah_map_mem_args) -> Result<Plan> {
        let file = self.resolve_fd(args.guest_mem_fd)?;
        let mut by_id = *args;
        by_id.guest_mem_fd = file.0;
        let plan = self.bindings.plan_map_mem(vm, &by_id)?;
        self.apply(&plan)?;
        self.bindings.commit(plan.clone())?;
        Ok(plan)
    }

    fn apply(&mut self, plan: &Plan) -> Result<()> {
        match plan.change {
            Change::Added => {
                for b in &plan.added {
                    self.apply_add(plan.vm, b)?;
                }
                Ok(())
            }
            Change::Removed(_) | Change::VmDestroyed => {
                for r in &plan.reclaim {
                    self.take_back(plan.vm, r)?;
                }
                Ok(())
            }
        }
    }

    fn apply_add(&mut self, vm: VmId, b: &BindingInfo) -> Result<()> {
        let file = self.files[&b.file].clone();
        let m = self.vm_mut(vm)?;
        if let Some((r, what)) = m
            .reserved
            .iter()
            .find(|(r, _)| r.start < b.guest_end() && b.guest_addr < r.end)
        {
            return Err(Error::Exists(format!(
                "guest range [{:#x}, +{:#x}) overlaps {what} [{:#x}, {:#x})",
                b.guest_addr, b.size, r.start, r.end
            )));
        }
        let eager = b.access() == Access::Share || !m.demand_paging;
        file.bind(vm, b)?;
        if !eager {
            return Ok(());
        }
        let installed = (|| {
            if b.is_lend() {
                let lent = file.lend_around(vm, b.offset, b.offset..b.file_end())?;
                if lent != (b.offset..b.file_end()) {
                    return Err(Error::Busy(format!(
                        "host views cover part of file range [{:#x}, +{:#x}); it cannot be lent",
                        b.offset, b.size
                    )));
                }
            }
            m.install(
                b.guest_addr,
                b.size,
                Backing::File(file.clone(), b.offset),
                readonly(b, &file),
            )
        })();
        if let Err(e) = installed {
            // Roll back: no slot, pages back to the host untouched (the
            // guest never had them, so nothing needs zeroing).
            let _ = m.uninstall(b.guest_addr..b.guest_end());
            if b.is_lend() {
                let _ = file.cancel_lend(vm, b.offset, b.size);
            }
            let _ = file.release(vm, b.offset, b.size);
            return Err(e);
        }
        Ok(())
    }

    /// Reclaim one removed piece: out of the guest first, then back to the
    /// host (lent pages zeroed by gmem, DESIGN D5).
    fn take_back(&mut self, vm: VmId, r: &BindingInfo) -> Result<()> {
        let file = self.files[&r.file].clone();
        if let Some(m) = self.vms.get_mut(&vm) {
            m.uninstall(r.guest_addr..r.guest_end())?;
        }
        file.release(vm, r.offset, r.size)?;
        Ok(())
    }

    /// Remove a VM and every binding it holds (SPEC B-VM-8). The VM's
    /// vCPUs are gone, so no guest can touch the pages meanwhile.
    pub(crate) fn destroy_vm(&mut self, vm: VmId) {
        let plan = self.bindings.plan_destroy_vm(vm);
        // Closing the VM file frees its memslots; deleting them one by one
        // first would only cost time.
        for r in &plan.reclaim {
            if let Some(file) = self.files.get(&r.file) {
                // Only fails on inconsistent ownership, which would be a
                // lendvm bug; teardown goes on regardless.
                let _ = file.release(vm, r.offset, r.size);
            }
        }
        let dropped = plan.dropped_files.clone();
        let _ = self.bindings.commit(plan);
        for id in dropped {
            self.forget_file(id);
        }
        self.vms.remove(&vm);
    }

    // ----- guest touches ---------------------------------------------------------

    /// The guest of `vm` accessed `gpa` and KVM found no memslot there (or
    /// a read-only one): decide what it touched, giving it lent pages on
    /// first touch (SPEC R-5).
    pub(crate) fn touch(&mut self, vm: VmId, gpa: u64, is_write: bool) -> Result<Touch> {
        let Some(b) = self.bindings.lookup(vm, gpa) else {
            // A user region is installed whole; reaching here means a write
            // to a read-only one.
            let in_region = self.vms.get(&vm).is_some_and(|m| {
                m.user_regions
                    .values()
                    .any(|r| gpa >= r.gpa && gpa - r.gpa < r.size)
            });
            return Ok(if in_region {
                Touch::WriteDenied
            } else {
                Touch::Unbound
            });
        };
        if is_write && !b.perms().write {
            return Ok(Touch::WriteDenied);
        }
        let file = self.files[&b.file].clone();
        let m = self.vm_mut(vm)?;
        if m.is_installed(gpa) {
            return Ok(Touch::Present {
                binding: b,
                paged: false,
            });
        }
        // Only the uninstalled gap around the touch: installed pages are
        // already lent (and in a slot) and must not be installed twice,
        // nor be touched by the rollback below.
        let window = m.uninstalled_gap(demand_window(&b, gpa), gpa);
        let file_window =
            b.offset + (window.start - b.guest_addr)..b.offset + (window.end - b.guest_addr);
        let file_off = b.offset + (gpa - b.guest_addr);
        let lent = match file.lend_around(vm, file_off, file_window) {
            Ok(r) => r,
            Err(gmem::Error::Busy { .. } | gmem::Error::WrongState { .. }) => {
                return Ok(Touch::Refused);
            }
            Err(e) => return Err(e.into()),
        };
        let chunk_gpa = b.guest_addr + (lent.start - b.offset);
        let chunk_len = lent.end - lent.start;
        if let Err(e) = m.install(
            chunk_gpa,
            chunk_len,
            Backing::File(file.clone(), lent.start),
            readonly(&b, &file),
        ) {
            // Undo the lend: the pages never reached the guest.
            let _ = file.cancel_lend(vm, lent.start, chunk_len);
            return Err(e);
        }
        m.stats.demand_chunks += 1;
        m.stats.demand_bytes += chunk_len;
        Ok(Touch::Present {
            binding: b,
            paged: true,
        })
    }

    /// Give `range` (guest addresses inside lend binding `b`) to the guest
    /// now, as START does with the DTB (SPEC B-VM-3.2/3.4): EBUSY if a host
    /// view covers any of it.
    pub(crate) fn hand_over(&mut self, vm: VmId, b: &BindingInfo, range: Range<u64>) -> Result<()> {
        let file = self.files[&b.file].clone();
        let m = self.vm_mut(vm)?;
        if m.is_installed(range.start) && m.is_installed(range.end - 1) {
            return Ok(());
        }
        let off = b.offset + (range.start - b.guest_addr);
        let len = range.end - range.start;
        let busy = || {
            Error::Busy(format!(
                "the host has a view of guest pages [{:#x}, {:#x}): they cannot be lent at START",
                range.start, range.end
            ))
        };
        let lent = match file.lend_around(vm, off, off..off + len) {
            Ok(r) => r,
            Err(gmem::Error::Busy { .. }) => return Err(busy()),
            Err(e) => return Err(e.into()),
        };
        if lent != (off..off + len) {
            let _ = file.cancel_lend(vm, lent.start, lent.end - lent.start);
            return Err(busy());
        }
        if let Err(e) = m.install(
            range.start,
            len,
            Backing::File(file.clone(), off),
            readonly(b, &file),
        ) {
            let _ = file.cancel_lend(vm, off, len);
            return Err(e);
        }
        Ok(())
    }

    /// Take `[offset, offset + len)` of `file` out of `vm`'s memslots (the
    /// reclaim hook, SPEC L-1 / L-3: only the bindings of that VM that
    /// cover those file pages, and only those guest pages).
    pub(crate) fn unmap_file_range(
        &mut self,
        vm: VmId,
        file: FileId,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let pieces: Vec<BindingInfo> = self
            .bindings
            .file_bindings(file, offset, len)
            .into_iter()
            .filter(|(v, _)| *v == vm)
            .filter_map(|(_, b)| b.clip_to_file_range(offset, len))
            .collect();
        let m = self.vm_mut(vm)?;
        for p in pieces {
            m.uninstall(p.guest_addr..p.guest_end())?;
        }
        Ok(())
    }

    /// Count an access lendvm completed for the guest.
    pub(crate) fn count_completed(&mut self, vm: VmId) {
        if let Some(m) = self.vms.get_mut(&vm) {
            m.stats.completed_accesses += 1;
        }
    }

    /// Installed memslots of `vm` as (guest range, slot id), for tests and
    /// `lendvm` reports.
    pub(crate) fn installed(&self, vm: VmId) -> Vec<(Range<u64>, u32)> {
        self.vms.get(&vm).map_or_else(Vec::new, |m| {
            m.installed
                .iter()
                .map(|(&g, s)| (g..g + s.size, s.id))
                .collect()
        })
    }
}

/// No-write can be enforced on memfd slots only (DESIGN D3).
fn readonly(b: &BindingInfo, file: &GuestMemFile) -> bool {
    !b.perms().write && file.kind() == Kind::Memfd
}

/// The guest range demand paging gives at once around `gpa`: an aligned
/// window inside the binding, larger for larger bindings so one exit
/// serves many first touches (about 64 chunks per binding: measured, a
/// chunk costs ~0.1 ms, so a 1 GiB binding pays ~7 ms on top of ~1 s of
/// first touches).
fn demand_window(b: &BindingInfo, gpa: u64) -> Range<u64> {
    let size = (b.size / 64)
        .next_power_of_two()
        .clamp(MIN_CHUNK, MAX_CHUNK);
    let base = gpa & !(size - 1);
    base.max(b.guest_addr)..base.saturating_add(size).min(b.guest_end())
}

impl VmMemory {
    /// The part of `window` around `gpa` (itself not installed) that no
    /// installed slot covers: slots never overlap, so the nearest slot on
    /// each side bounds it.
    fn uninstalled_gap(&self, window: Range<u64>, gpa: u64) -> Range<u64> {
        let lo = self
            .installed
            .range(..gpa)
            .next_back()
            .map_or(window.start, |(&g, s)| window.start.max(g + s.size));
        let hi = self
            .installed
            .range(gpa..)
            .next()
            .map_or(window.end, |(&g, _)| window.end.min(g));
        lo..hi
    }

    fn is_installed(&self, gpa: u64) -> bool {
        self.installed
            .range(..=gpa)
            .next_back()
            .is_some_and(|(&g, s)| gpa - g < s.size)
    }

    fn set_slot(
        &self,
        id: u32,
        gpa: u64,
        size: u64,
        backing: Option<(&Backing, bool)>,
    ) -> Result<()> {
        let mut region = kvm_userspace_memory_region2 {
            slot: id,
            guest_phys_addr: gpa,
            memory_size: size,
            ..Default::default()
        };
        if let Some((backing, readonly)) = backing {
            if readonly {
                region.flags |= kvm_bindings::KVM_MEM_READONLY;
            }
            match backing {
                Backing::File(file, offset) => {
                    region.userspace_addr = file.kernel_mapping_addr() + offset;
                    if let Kind::GuestMemfd(_) = file.kind() {
                        region.flags |= gmem::KVM_MEM_GUEST_MEMFD;
                        region.guest_memfd = file.as_raw_fd() as u32;
                        region.guest_memfd_offset = *offset;
                    }
                }
                Backing::User(addr) => region.userspace_addr = *addr,
            }
        }
        // SAFETY: a file slot's userspace_addr range lies inside the file's
        // kernel-facing mapping (offset + size <= file size, checked by the
        // binding rules), which lives as long as the `Slot` record holding a
        // clone of the file; the record is removed only after the slot is
        // deleted. A user slot's range is the caller's memory, which the
        // caller of `add_user_region` keeps mapped while the VM lives.
        // Deleting (size 0) passes no memory.
        unsafe { self.vm_fd.set_user_memory_region2(region) }
            .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION2", e))
    }

    fn install(&mut self, gpa: u64, size: u64, backing: Backing, readonly: bool) -> Result<()> {
        debug_assert!(gpa.is_multiple_of(PAGE_SIZE) && size.is_multiple_of(PAGE_SIZE));
        let Some(id) = self.free_slots.pop() else {
            return Err(Error::Busy(format!(
                "no KVM memslot is free to install guest range [{gpa:#x}, +{size:#x})"
            )));
        };
        if let Err(e) = self.set_slot(id, gpa, size, Some((&backing, readonly))) {
            self.free_slots.push(id);
            return Err(e);
        }
        self.stats.slots_created += 1;
        self.installed.insert(
            gpa,
            Slot {
                id,
                size,
                backing,
                readonly,
            },
        );
        Ok(())
    }

    /// Remove `range` from the guest: delete every slot that intersects it
    /// and re-create the parts outside it (guest_memfd slots cannot shrink).
    fn uninstall(&mut self, range: Range<u64>) -> Result<()> {
        let first = self
            .installed
            .range(..range.start)
            .next_back()
            .filter(|(g, s)| **g + s.size > range.start)
            .map(|(g, _)| *g);
        let keys: Vec<u64> = first
            .into_iter()
            .chain(
                self.installed
                    .range(range.start..range.end)
                    .map(|(g, _)| *g),
            )
            .collect();
        for g in keys {
            let Some(slot) = self.installed.remove(&g) else {
                continue;
            };
            if let Err(e) = self.set_slot(slot.id, g, 0, None) {
                self.installed.insert(g, slot);
                return Err(e);
            }
            self.stats.slots_deleted += 1;
            self.free_slots.push(slot.id);
            let end = g + slot.size;
            if g < range.start {
                self.install(g, range.start - g, slot.backing.clone(), slot.readonly)?;
            }
            if end > range.end {
                let skip = range.end - g;
                self.install(
                    range.end,
                    end - range.end,
                    slot.backing.advanced(skip),
                    slot.readonly,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(guest_addr: u64, size: u64) -> BindingInfo {
        BindingInfo {
            guest_addr,
            size,
            file: FileId(0),
            offset: 0,
            flags: 0,
        }
    }

    #[test]
    fn demand_window_is_aligned_and_inside_the_binding() {
        const M: u64 = 1 << 20;
        // Small binding: 2 MiB windows, clipped to the binding.
        assert_eq!(demand_window(&b(M, 3 * M), 2 * M + 5), 2 * M..4 * M);
        assert_eq!(demand_window(&b(M, 3 * M), M), M..2 * M);
        // 1 GiB binding: 16 MiB windows.
        assert_eq!(
            demand_window(&b(1 << 30, 1 << 30), (1 << 30) + 17 * M),
            (1 << 30) + 16 * M..(1 << 30) + 32 * M
        );
        // Near the top of the address space nothing overflows.
        let top = b(u64::MAX - 4 * M + 1 - (PAGE_SIZE - 1), 2 * M);
        let w = demand_window(&top, top.guest_addr);
        assert!(w.start >= top.guest_addr && w.end <= top.guest_end());
    }
}
