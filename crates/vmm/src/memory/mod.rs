//! One VM's memory: its bindings as the VM manager applies them, its KVM
//! slots, and every access to its memory made on the guest's behalf.
//!
//! Everything here happens under the VM's own memory lock ([`VmMemory`]),
//! so one VM's demand paging never waits for another's. The binding
//! registry (the device's, `registry.rs`) decides MAP_MEM; this module
//! applies the decision. Lock order: the device registry, then VM memory
//! locks (ascending VM id when several are needed), then a guest memory
//! file's ownership lock.
//!
//! Slot invariant (DESIGN §6.3, D2): a lend binding is cut into *demand
//! chunks* on a grid fixed when it is bound ([`demand_chunk`]); every
//! installed slot of a binding is a union of whole chunks (clipped to the
//! binding), so a binding never needs more slots than it has chunks, and
//! that many are reserved at MAP_MEM: a guest can never run the VM out of
//! memslots (MAP_MEM says ENOSPC instead).

pub(crate) mod access_vcpu;
mod guest;
mod host_io;
mod host_memory;
mod secrecy;
mod slots;
mod user_regions;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use binding::{Access, BindingInfo, IntervalMap, VmId};
use gmem::{GuestMemFile, Kind};
use kvm_bindings::CpuId;
use kvm_ioctls::VmFd;

pub(crate) use guest::{Completed, Fragment};
pub use host_memory::HostMemory;
pub(crate) use secrecy::{keep_run_private, wipe, wipe_regs};
pub(crate) use slots::Backing;
use slots::Slots;
use user_regions::UserRegion;

use crate::error::{Error, Result};
use crate::sync::lock;

/// Smallest demand chunk.
pub const MIN_CHUNK: u64 = 2 << 20;
/// Largest demand chunk.
pub const MAX_CHUNK: u64 = 1 << 30;

/// The demand chunk of a lend binding of `size` bytes (DESIGN D2): the
/// piece one KVM slot installs at a first touch, on a grid of guest
/// addresses aligned to it, clipped to the binding. About 64 chunks per
/// binding, between 2 MiB and 1 GiB: measured, a chunk costs ~0.1 ms, so a
/// 1 GiB binding pays ~7 ms on top of ~1 s of first touches.
pub fn demand_chunk(size: u64) -> u64 {
    (size / 64).next_power_of_two().clamp(MIN_CHUNK, MAX_CHUNK)
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
    /// Memslots reserved by the VM's bindings, regions and lendvm itself.
    pub slots_reserved: u64,
    /// Memslots the VM may use in all.
    pub slots_limit: u64,
}

/// A binding as the VM manager holds it: the file itself (its lifetime is
/// the binding's, SPEC GM-LT-1) and the chunk grid fixed at MAP_MEM.
#[derive(Clone)]
struct Bound {
    info: BindingInfo,
    file: GuestMemFile,
    chunk: u64,
}

impl Bound {
    fn range(&self) -> Range<u64> {
        self.info.guest_addr..self.info.guest_end()
    }

    /// The chunk around `gpa`, clipped to the binding.
    fn window(&self, gpa: u64) -> Range<u64> {
        let base = gpa & !(self.chunk - 1);
        base.max(self.info.guest_addr)..base.saturating_add(self.chunk).min(self.info.guest_end())
    }

    /// The whole chunks covering `r` (inside the binding), clipped to it.
    fn windows_over(&self, r: &Range<u64>) -> Range<u64> {
        let start = r.start.max(self.info.guest_addr);
        let end = r.end.min(self.info.guest_end());
        if start >= end {
            return start..start;
        }
        self.window(start).start..self.window(end - 1).end
    }

    /// The file range behind a guest range of the binding (callers pass
    /// ranges inside it; anything else maps to an empty range).
    fn file_range(&self, r: &Range<u64>) -> Range<u64> {
        self.info
            .file_range_of(r)
            .unwrap_or(self.info.offset..self.info.offset)
    }

    /// Memslots the binding can need: one for a share binding (installed
    /// whole), one per chunk for a lend binding.
    fn slots_needed(&self) -> usize {
        if self.info.access() == Access::Share {
            return 1;
        }
        let first = self.info.guest_addr / self.chunk;
        let last = (self.info.guest_end() - 1) / self.chunk;
        usize::try_from(last - first + 1).unwrap_or(usize::MAX)
    }

    /// No-write can be enforced on memfd slots only (DESIGN D3).
    fn readonly(&self) -> bool {
        !self.info.perms().write && self.file.kind() == Kind::Memfd
    }
}

/// What a guest access to an address found.
pub(crate) enum Touch {
    /// Memory the access can complete against: `file` at `offset`.
    Memory {
        /// The file behind the address.
        file: GuestMemFile,
        /// The file offset of the address.
        offset: u64,
        /// This touch gave the guest the memory just now.
        paged: bool,
    },
    /// No binding covers the address.
    Unbound,
    /// A write to memory without write permission (SPEC R-5: -EPERM).
    WriteDenied,
    /// The page cannot be given to the guest now: a host view covers its
    /// chunk (SPEC GM-MM-6: -EPERM).
    Refused,
}

/// How to make the VM's access vCPU when it is first needed.
pub(crate) struct AccessVcpuSource {
    pub(crate) vm_fd: Arc<VmFd>,
    pub(crate) id: u64,
    pub(crate) cpuid: Arc<dyn Fn() -> Result<CpuId> + Send + Sync>,
    pub(crate) irqchip: bool,
    /// Size of a vCPU's `kvm_run` mapping.
    pub(crate) run_size: usize,
}

/// One VM's memory under its lock.
pub(crate) struct VmMemory {
    pub(crate) vm: VmId,
    state: Mutex<MemState>,
}

impl VmMemory {
    pub(crate) fn new(
        vm: VmId,
        vm_fd: Arc<VmFd>,
        memslots: usize,
        access: AccessVcpuSource,
    ) -> VmMemory {
        VmMemory {
            vm,
            state: Mutex::new(MemState {
                vm,
                slots: Slots::new(vm_fd, memslots),
                bound: IntervalMap::new(),
                reserved: IntervalMap::new(),
                user_regions: BTreeMap::new(),
                budget_limit: memslots,
                budget_used: 0,
                demand_paging: true,
                stats: MemoryStats::default(),
                access,
                access_vcpu: None,
                stubs: false,
            }),
        }
    }

    /// The VM's memory, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, MemState> {
        lock(&self.state)
    }
}

/// One VM's memory state (see the module documentation).
pub(crate) struct MemState {
    vm: VmId,
    slots: Slots,
    bound: IntervalMap<Bound>,
    /// Guest ranges no binding may overlap, with what they are.
    reserved: IntervalMap<&'static str>,
    user_regions: BTreeMap<u32, UserRegion>,
    budget_limit: usize,
    budget_used: usize,
    /// Lend bindings are installed on first touch (else at MAP_MEM).
    pub(crate) demand_paging: bool,
    stats: MemoryStats,
    access: AccessVcpuSource,
    access_vcpu: Option<access_vcpu::AccessVcpu>,
    /// lendvm's access region (with the access stubs) is installed.
    stubs: bool,
}

impl MemState {
    /// The VM this memory belongs to.
    pub(crate) fn vm(&self) -> VmId {
        self.vm
    }

    // ----- reservations and budget -----------------------------------------

    /// Reserve one memslot for lendvm's own use, or fail with ENOSPC.
    fn reserve_slots(&mut self, n: usize) -> Result<()> {
        let free = self.budget_limit.saturating_sub(self.budget_used);
        if n > free {
            return Err(Error::NoSlots { needed: n, free });
        }
        self.budget_used += n;
        Ok(())
    }

    /// Keep bindings out of `range` (lendvm's own memory lives there).
    pub(crate) fn reserve(&mut self, range: Range<u64>, what: &'static str) -> Result<()> {
        if let Some((b, _)) = self.bound.last_overlap(&range) {
            return Err(Error::Overlaps {
                what,
                range,
                other: "the binding",
                other_range: b,
            });
        }
        self.reserved
            .insert(range.clone(), what)
            .map_err(|r| Error::Overlaps {
                what,
                range: range.clone(),
                other: "the reserved range",
                other_range: r,
            })
    }

    /// Install a region of lendvm's own (not a binding) at `range`,
    /// backed by `file` from `offset`: one of the reserved slots. The
    /// access region (`readonly`) carries the access vCPU's stubs.
    pub(crate) fn install_lendvm_region(
        &mut self,
        range: Range<u64>,
        file: &GuestMemFile,
        offset: u64,
        readonly: bool,
        what: &'static str,
    ) -> Result<()> {
        self.reserve_slots(1)?;
        if let Err(e) = self.reserve(range.clone(), what) {
            self.budget_used -= 1;
            return Err(e);
        }
        if let Err(e) =
            self.slots
                .install(range.clone(), Backing::File(file.clone(), offset), readonly)
        {
            self.reserved.remove(range.start);
            self.budget_used -= 1;
            return Err(e);
        }
        if range.contains(&crate::x86::STUB_BASE) {
            self.stubs = true;
        }
        Ok(())
    }

    /// Remove a region of lendvm's own installed at `range` (the native
    /// part of the system region goes when a VM boots a PVH or Linux
    /// kernel, which brings its own tables).
    pub(crate) fn remove_lendvm_region(&mut self, range: Range<u64>) -> Result<()> {
        if self.reserved.get(range.start).is_none() {
            return Ok(());
        }
        self.slots.uninstall(range.clone())?;
        self.reserved.remove(range.start);
        self.budget_used -= 1;
        if range.contains(&crate::x86::STUB_BASE) {
            self.stubs = false;
        }
        Ok(())
    }

    // ----- bindings (applied MAP_MEM plans) --------------------------------

    /// A new binding: pages become shared or lend-bound, share bindings
    /// (and, without demand paging, lend bindings) are installed, and the
    /// binding's memslots are reserved. All or nothing.
    pub(crate) fn add_binding(&mut self, info: BindingInfo, file: &GuestMemFile) -> Result<()> {
        let b = Bound {
            info,
            file: file.clone(),
            chunk: demand_chunk(info.size),
        };
        let range = b.range();
        if let Some((r, what)) = self.reserved.last_overlap(&range) {
            return Err(Error::Overlaps {
                what: "guest range",
                range,
                other: what,
                other_range: r,
            });
        }
        let need = b.slots_needed();
        self.reserve_slots(need)?;
        if let Err(e) = file.bind(self.vm, &info) {
            self.budget_used -= need;
            return Err(e.into());
        }
        if info.access() == Access::Share || !self.demand_paging {
            let whole = [(b.clone(), range.clone())];
            if let Err(e) = self.lend_and_install(&whole, info.is_lend()) {
                // The guest never had the pages: back to the host as they
                // were (nothing to zero).
                let _ = file.release(self.vm, info.offset, info.size);
                self.budget_used -= need;
                return Err(e.into_error(&range));
            }
        }
        // The registry refused overlaps already.
        let _ = self.bound.insert(range, b);
        Ok(())
    }

    /// Part (or all) of a binding goes (SPEC B-RM-3/4): `removed` leaves
    /// the guest first, then returns to the host (lent pages zeroed, DESIGN
    /// D5); `kept` are the pieces of `old` that stay.
    pub(crate) fn remove_binding(
        &mut self,
        old: &BindingInfo,
        removed: &BindingInfo,
        kept: &[BindingInfo],
    ) -> Result<()> {
        let Some((_, b)) = self.bound.get(old.guest_addr) else {
            return Err(Error::NotBound {
                gpa: old.guest_addr,
            });
        };
        let b = b.clone();
        let pieces: Vec<Bound> = kept
            .iter()
            .map(|k| Bound {
                info: *k,
                file: b.file.clone(),
                chunk: b.chunk,
            })
            .collect();
        let after = self.budget_used - b.slots_needed()
            + pieces.iter().map(Bound::slots_needed).sum::<usize>();
        if after > self.budget_limit {
            return Err(Error::NoSlots {
                needed: after - self.budget_used,
                free: self.budget_limit - self.budget_used,
            });
        }
        self.slots
            .uninstall(removed.guest_addr..removed.guest_end())?;
        b.file.release(self.vm, removed.offset, removed.size)?;
        self.bound.remove(old.guest_addr);
        for p in pieces {
            let _ = self.bound.insert(p.range(), p);
        }
        self.budget_used = after;
        Ok(())
    }

    /// The VM is going away (SPEC B-VM-8): every page returns to its file,
    /// lent ones zeroed. Its vCPUs are gone, so no guest touches the pages.
    pub(crate) fn destroy(&mut self) {
        for (_, b) in self.bound.iter() {
            // Fails only on inconsistent ownership, a lendvm bug; teardown
            // goes on regardless.
            let _ = b.file.release(self.vm, b.info.offset, b.info.size);
        }
        self.bound = IntervalMap::new();
        self.access_vcpu = None;
    }

    /// The VM's bindings (as installed by this VM manager).
    pub(crate) fn binding_at(&self, gpa: u64) -> Option<BindingInfo> {
        self.bound.get(gpa).map(|(_, b)| b.info)
    }

    // ----- giving memory to the guest ----------------------------------------

    /// The guest touched `gpa` and KVM found no slot there (or a read-only
    /// one): decide what it touched, lending and installing its chunk on a
    /// first touch (SPEC R-5, DESIGN D2).
    pub(crate) fn touch(&mut self, gpa: u64, is_write: bool) -> Result<Touch> {
        let Some((_, b)) = self.bound.get(gpa) else {
            // A user region is installed whole; reaching here means a
            // write to a read-only one.
            return Ok(if self.in_user_region(gpa) {
                Touch::WriteDenied
            } else {
                Touch::Unbound
            });
        };
        let b = b.clone();
        if is_write && !b.info.perms().write {
            return Ok(Touch::WriteDenied);
        }
        // `bound.get` found the binding at `gpa`.
        let offset = b.info.file_offset_of(gpa).unwrap_or(b.info.offset);
        let paged = !self.slots.is_installed(gpa);
        if paged {
            // Slots are unions of whole chunks, so the chunk around an
            // uninstalled address is uninstalled whole.
            let window = b.window(gpa);
            let window = self.slots_gap(gpa, window);
            match self.lend_and_install(&[(b.clone(), window.clone())], true) {
                Ok(()) => {}
                // State says no (a host view, a reclaim): a -EPERM fault.
                Err(e) if e.is_refusal() => return Ok(Touch::Refused),
                Err(e) => return Err(e.into_error(&window)),
            }
            self.stats.demand_chunks += 1;
            self.stats.demand_bytes += window.end - window.start;
        }
        Ok(Touch::Memory {
            file: b.file,
            offset,
            paged,
        })
    }

    /// The uninstalled part of `window` around `gpa`: all of it, since
    /// slots are unions of whole chunks, unless an uninstall cut a chunk.
    fn slots_gap(&self, gpa: u64, window: Range<u64>) -> Range<u64> {
        self.slots
            .gaps(window.clone())
            .into_iter()
            .find(|g| g.contains(&gpa))
            .unwrap_or(gpa..gpa)
    }

    /// The guest fetches an instruction at `gpa` and KVM could not: give it
    /// the page if it may have it. Returns what was found and whether this
    /// call installed the page just now.
    pub(crate) fn touch_code(&mut self, gpa: u64) -> Result<(guest::Completed, bool)> {
        Ok(match self.touch(gpa, false)? {
            Touch::Memory { paged, .. } => (guest::Completed::Done, paged),
            Touch::Unbound => (guest::Completed::Unbound, false),
            Touch::WriteDenied => (guest::Completed::WriteDenied, false),
            Touch::Refused => (guest::Completed::Refused, false),
        })
    }

    /// The one way memory reaches the guest: lend each window of `parts`
    /// (when `lend`; share bindings only install) and install its
    /// uninstalled gaps, one slot each. All or nothing: on any failure the
    /// slots installed here are removed and the pages lent here go back to
    /// the host as they were (the guest never had them: nothing to zero);
    /// pages the guest had been lent before stay lent.
    fn lend_and_install(&mut self, parts: &[(Bound, Range<u64>)], lend: bool) -> Result<(), Step> {
        let mut lent: Vec<(&GuestMemFile, Vec<Range<u64>>)> = Vec::new();
        let mut installed: Vec<Range<u64>> = Vec::new();
        let mut result = Ok(());
        if lend {
            for (b, w) in parts {
                match b.file.lend_window(self.vm, b.file_range(w)) {
                    Ok(fresh) => lent.push((&b.file, fresh)),
                    Err(e) => {
                        result = Err(Step::Lend(e));
                        break;
                    }
                }
            }
        }
        'install: for (b, w) in parts {
            if result.is_err() {
                break;
            }
            for gap in self.slots.gaps(w.clone()) {
                let backing = Backing::File(b.file.clone(), b.file_range(&gap).start);
                if let Err(e) = self.slots.install(gap.clone(), backing, b.readonly()) {
                    result = Err(Step::Install(e));
                    break 'install;
                }
                installed.push(gap);
            }
        }
        if result.is_err() {
            for r in installed {
                let _ = self.slots.uninstall(r);
            }
            for (file, fresh) in lent {
                let _ = file.cancel_lend(self.vm, &fresh);
            }
        }
        result
    }

    /// Give the guest `range` (inside lend bindings) now, whole chunks at a
    /// time, instead of on first touch: boot paths that lend all RAM up
    /// front. EBUSY if a host view covers any of it; nothing is given then.
    pub(crate) fn lend_now(&mut self, range: Range<u64>) -> Result<()> {
        let pieces: Vec<Bound> = self
            .bound
            .overlapping(range.clone())
            .map(|(_, b)| b.clone())
            .collect();
        let mut covered = range.start;
        for b in &pieces {
            if b.info.guest_addr > covered {
                break;
            }
            covered = b.info.guest_end();
        }
        if covered < range.end {
            return Err(Error::NotBoundForLend {
                gpa: covered,
                range,
            });
        }
        if let Some(b) = pieces.iter().find(|b| !b.info.is_lend()) {
            return Err(Error::LendShared {
                range: b.info.guest_addr..b.info.guest_end(),
            });
        }
        let parts: Vec<(Bound, Range<u64>)> = pieces
            .into_iter()
            .map(|b| {
                let w = b.windows_over(&range);
                (b, w)
            })
            .collect();
        self.lend_and_install(&parts, true)
            .map_err(|e| e.into_error(&range))
    }

    /// START's DTB hand-over (SPEC B-AC-5, B-VM-3.2): exactly the DTB's
    /// pages go to the guest lent, whatever their binding says, and a host
    /// view of them refuses it (EBUSY, TV `vm_dtb_no_map`); the rest of
    /// their demand chunk stays the host's until the guest touches it. In a
    /// lend binding the pages are installed now, which can leave their
    /// chunk in up to three slots (before, the DTB, after): START reserves
    /// the two extra (ENOSPC if the VM has none left). In a share binding
    /// (installed already) the pages only stop being host-accessible.
    pub(crate) fn hand_over_dtb(&mut self, range: Range<u64>) -> Result<()> {
        let Some((_, b)) = self.bound.get(range.start) else {
            return Err(Error::DtbOutsideBinding { range });
        };
        let b = b.clone();
        let busy = |e: Step| match e {
            Step::Lend(gmem::Error::Busy { .. }) => Error::HostViewOverDtb {
                range: range.clone(),
            },
            e => e.into_error(&range),
        };
        if !b.info.is_lend() {
            let fr = b.file_range(&range);
            return b
                .file
                .lend_shared(self.vm, fr.start, fr.end - fr.start)
                .map_err(|e| busy(Step::Lend(e)));
        }
        self.reserve_slots(2)?;
        if let Err(e) = self.lend_and_install(&[(b, range.clone())], true) {
            self.budget_used -= 2;
            return Err(busy(e));
        }
        Ok(())
    }

    /// The reclaim hook's part (SPEC L-1, L-3): take the chunks holding
    /// lent file range `[offset, offset + len)` of `file` out of the
    /// guest. Pages of those chunks outside the range stay lent; the
    /// guest's next touch of the chunk installs it again.
    pub(crate) fn take_back(&mut self, pieces: &[BindingInfo]) -> Result<()> {
        for p in pieces {
            let Some((_, b)) = self.bound.get(p.guest_addr) else {
                continue;
            };
            if !b.info.is_lend() {
                // DTB pages lent from a share binding: the slot stays; the
                // pages become host-accessible again after zeroing.
                continue;
            }
            let w = b.windows_over(&(p.guest_addr..p.guest_end()));
            self.slots.uninstall(w)?;
        }
        Ok(())
    }

    // ----- reports -------------------------------------------------------------

    /// Installed memslots as (guest range, slot id).
    pub(crate) fn installed(&self) -> Vec<(Range<u64>, u32)> {
        self.slots.list()
    }

    /// Counters, with the slot counts filled in.
    pub(crate) fn stats(&self) -> MemoryStats {
        MemoryStats {
            slots_created: self.slots.counts.created,
            slots_deleted: self.slots.counts.deleted,
            slots_reserved: self.budget_used as u64,
            slots_limit: self.budget_limit as u64,
            ..self.stats
        }
    }
}

/// Where lending and installing memory for the guest stopped.
enum Step {
    /// The file would not lend the pages.
    Lend(gmem::Error),
    /// The slot table or KVM would not install them.
    Install(Error),
}

impl Step {
    /// The page cannot be given to the guest now (a host view, a reclaim
    /// in progress, no slot): SPEC GM-MM-6's -EPERM fault, not an error.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Step::Lend(gmem::Error::Busy { .. } | gmem::Error::WrongState { .. })
                | Step::Install(Error::NoSlots { .. } | Error::SlotOccupied { .. })
        )
    }

    /// The caller's error for guest range `range`.
    fn into_error(self, range: &Range<u64>) -> Error {
        match self {
            Step::Lend(gmem::Error::Busy { .. }) => Error::HostViewOverLend {
                range: range.clone(),
            },
            Step::Lend(e) => e.into(),
            Step::Install(e) => e,
        }
    }
}

/// Lock several VMs' memory in ascending VM id order (the lock order).
pub(crate) fn lock_all(mems: &mut [Arc<VmMemory>]) -> Vec<MutexGuard<'_, MemState>> {
    mems.sort_by_key(|m| m.vm);
    mems.iter().map(|m| m.lock()).collect()
}
