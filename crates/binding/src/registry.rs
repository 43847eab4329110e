//! The registry of files, VMs and their bindings, and the MAP_MEM rules.

use std::collections::BTreeMap;
use std::ops::Range;

use uapi::gunyah_map_mem_args;

use crate::access::{Access, MapFlags, file_flags};
use crate::error::{Alignment, Error};
use crate::interval::IntervalMap;
use crate::plan::{Change, Plan, RemoveCase};
use crate::{BindingInfo, FileId, HUGE_PAGE_SIZE, MapRequest, PAGE_SIZE, VmId};

/// What a file permits beyond the SPEC's generic rules: the VM manager sets
/// these from the kind of file (DESIGN §2, decisions D3 and D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRules {
    /// A file created by one VM (KVM guest_memfd) binds into that VM only
    /// (SPEC B-ADD-3); `None` for free-standing files.
    pub owner: Option<VmId>,
    /// False for files whose pages the host can never touch (D6: share
    /// bindings refused).
    pub share_allowed: bool,
    /// True for files whose KVM slots cannot be read-only (D3: bindings
    /// without ALLOW_WRITE refused).
    pub write_required: bool,
}

impl FileRules {
    /// A free-standing file (the Gunyah model): bindable into any VM, with
    /// any access and permissions.
    pub const FREE_STANDING: FileRules = FileRules {
        owner: None,
        share_allowed: true,
        write_required: false,
    };
}

impl Default for FileRules {
    fn default() -> Self {
        FileRules::FREE_STANDING
    }
}

/// A snapshot of one file's registry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Creation flags (`file_flags`).
    pub flags: u64,
    /// Kind-specific rules.
    pub rules: FileRules,
    /// False once the file's handle was closed (bindings keep it alive).
    pub open: bool,
    /// References held on the file: one for the open handle plus one per
    /// binding (SPEC GM-LT-1, GM-LT-4).
    pub refs: u32,
}

/// A binding as stored in its VM's map (the range is the guest range).
#[derive(Debug, Clone, Copy)]
struct Bound {
    file: FileId,
    offset: u64,
    flags: u32,
}

/// A bound file range as stored in its file's map (the range is the file
/// range).
#[derive(Debug, Clone, Copy)]
struct Held {
    vm: VmId,
    guest_addr: u64,
}

#[derive(Debug, Default)]
struct VmRecord {
    by_guest: IntervalMap<Bound>,
}

#[derive(Debug)]
struct FileRecord {
    size: u64,
    flags: u64,
    rules: FileRules,
    open: bool,
    by_offset: IntervalMap<Held>,
}

impl FileRecord {
    fn refs(&self) -> u32 {
        // A file cannot hold more than u32::MAX bindings in practice (each
        // is at least one page); saturate rather than wrap if it ever did.
        let bindings = u32::try_from(self.by_offset.len()).unwrap_or(u32::MAX);
        bindings.saturating_add(u32::from(self.open))
    }

    fn alignment(&self) -> (u64, Alignment) {
        if self.flags & file_flags::ALLOW_HUGEPAGE != 0 {
            (HUGE_PAGE_SIZE, Alignment::HugePage)
        } else {
            (PAGE_SIZE, Alignment::Page)
        }
    }
}

fn info(guest: Range<u64>, b: &Bound) -> BindingInfo {
    BindingInfo {
        guest_addr: guest.start,
        size: guest.end - guest.start,
        file: b.file,
        offset: b.offset,
        flags: b.flags,
    }
}

/// The registry: every guest memory file, every VM, every binding.
#[derive(Debug, Default)]
pub struct Bindings {
    vms: BTreeMap<VmId, VmRecord>,
    files: BTreeMap<FileId, FileRecord>,
    next_vm: u32,
    next_file: u32,
    /// Bumped by every change, so a plan made before a change is refused.
    generation: u64,
}

impl Bindings {
    /// An empty registry.
    pub const fn new() -> Bindings {
        Bindings {
            vms: BTreeMap::new(),
            files: BTreeMap::new(),
            next_vm: 0,
            next_file: 0,
            generation: 0,
        }
    }

    // ----- files -----------------------------------------------------------

    /// Register a free-standing guest memory file (SPEC GM-1, GM-2).
    pub fn create_file(&mut self, size: u64, flags: u64) -> Result<FileId, Error> {
        self.create_file_with(size, flags, FileRules::FREE_STANDING)
    }

    /// Register a guest memory file with kind-specific rules.
    pub fn create_file_with(
        &mut self,
        size: u64,
        flags: u64,
        rules: FileRules,
    ) -> Result<FileId, Error> {
        if flags & !file_flags::ALL != 0 {
            return Err(Error::UnknownFileFlags(flags & !file_flags::ALL));
        }
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::BadFileSize(size));
        }
        if let Some(owner) = rules.owner
            && !self.vms.contains_key(&owner)
        {
            return Err(Error::UnknownVm(owner));
        }
        let id = self.next_free_file_id()?;
        self.files.insert(
            id,
            FileRecord {
                size,
                flags,
                rules,
                open: true,
                by_offset: IntervalMap::new(),
            },
        );
        self.next_file = id.0.wrapping_add(1);
        self.generation += 1;
        Ok(id)
    }

    fn next_free_file_id(&self) -> Result<FileId, Error> {
        // Ids count up and wrap; skip ids still in use. The loop ends after
        // at most one lap, because a registry cannot hold 2^32 files.
        let mut id = self.next_file;
        for _ in 0..=u32::MAX {
            if !self.files.contains_key(&FileId(id)) {
                return Ok(FileId(id));
            }
            id = id.wrapping_add(1);
        }
        Err(Error::OutOfFileIds)
    }

    /// Drop the file's handle reference (the fd was closed). The record
    /// lives on while bindings hold it (SPEC GM-LT-1); returns true if this
    /// was the last reference and the record is gone.
    pub fn close_file(&mut self, file: FileId) -> Result<bool, Error> {
        let rec = self
            .files
            .get_mut(&file)
            .filter(|f| f.open)
            .ok_or(Error::UnknownFile(file))?;
        rec.open = false;
        let gone = rec.by_offset.is_empty();
        if gone {
            self.files.remove(&file);
        }
        self.generation += 1;
        Ok(gone)
    }

    /// Change an open file's recorded size: the `ftruncate` of a resizable
    /// file (the Gunyah compat profile, DESIGN D13). Growing is always
    /// allowed; shrinking below the end of any bound range of the file, in
    /// any VM, is refused with EBUSY and changes nothing (SPEC GM-7). Any
    /// size is accepted, whole pages or not: MAP_MEM checks its ranges
    /// against it (B-ADD-8). Returns the previous size.
    pub fn set_file_size(&mut self, file: FileId, size: u64) -> Result<u64, Error> {
        let rec = self
            .files
            .get_mut(&file)
            .filter(|f| f.open)
            .ok_or(Error::UnknownFile(file))?;
        // Bound ranges never overlap, so the last one by offset ends last.
        if let Some((bound, _)) = rec.by_offset.iter().last()
            && size < bound.end
        {
            return Err(Error::ShrinkBelowBinding {
                file,
                size,
                bound_end: bound.end,
            });
        }
        let old = std::mem::replace(&mut rec.size, size);
        self.generation += 1;
        Ok(old)
    }

    /// The file's record, open or kept alive by bindings.
    pub fn file_info(&self, file: FileId) -> Option<FileInfo> {
        self.files.get(&file).map(|f| FileInfo {
            size: f.size,
            flags: f.flags,
            rules: f.rules,
            open: f.open,
            refs: f.refs(),
        })
    }

    /// Every binding, in any VM, whose file range intersects
    /// `[offset, offset + size)` of `file`, in file order. Used to find
    /// what a punch hole or a host access over a file range touches.
    pub fn file_bindings(&self, file: FileId, offset: u64, size: u64) -> Vec<(VmId, BindingInfo)> {
        let Some(rec) = self.files.get(&file) else {
            return Vec::new();
        };
        let end = offset.saturating_add(size);
        rec.by_offset
            .overlapping(offset..end)
            .filter_map(|(_, h)| {
                let (g, b) = self.vms.get(&h.vm)?.by_guest.get(h.guest_addr)?;
                Some((h.vm, info(g, b)))
            })
            .collect()
    }

    // ----- VMs -------------------------------------------------------------

    /// Register a VM with no bindings.
    pub fn create_vm(&mut self) -> VmId {
        // VM ids are never reused, so a stale id can never name a new VM.
        // 2^32 VMs created in one process is beyond any real workload; if it
        // ever happened, ids would wrap and skip live ones.
        let mut id = self.next_vm;
        while self.vms.contains_key(&VmId(id)) {
            id = id.wrapping_add(1);
        }
        self.next_vm = id.wrapping_add(1);
        self.vms.insert(VmId(id), VmRecord::default());
        self.generation += 1;
        VmId(id)
    }

    /// True if the VM is registered.
    pub fn vm_exists(&self, vm: VmId) -> bool {
        self.vms.contains_key(&vm)
    }

    /// The VM's bindings, sorted by guest address.
    pub fn bindings(&self, vm: VmId) -> Vec<BindingInfo> {
        self.vms
            .get(&vm)
            .map(|r| r.by_guest.iter().map(|(g, b)| info(g, b)).collect())
            .unwrap_or_default()
    }

    /// Number of bindings the VM has.
    pub fn binding_count(&self, vm: VmId) -> usize {
        self.vms.get(&vm).map_or(0, |r| r.by_guest.len())
    }

    /// The binding that contains `guest_addr`, if any: O(log n).
    pub fn lookup(&self, vm: VmId, guest_addr: u64) -> Option<BindingInfo> {
        let (g, b) = self.vms.get(&vm)?.by_guest.get(guest_addr)?;
        Some(info(g, b))
    }

    /// The VM's bindings whose guest range intersects
    /// `[guest_addr, guest_addr + size)`, in guest order.
    pub fn bindings_in(&self, vm: VmId, guest_addr: u64, size: u64) -> Vec<BindingInfo> {
        let Some(rec) = self.vms.get(&vm) else {
            return Vec::new();
        };
        let end = guest_addr.saturating_add(size);
        rec.by_guest
            .overlapping(guest_addr..end)
            .map(|(g, b)| info(g, b))
            .collect()
    }

    // ----- MAP_MEM -----------------------------------------------------------

    /// MAP_MEM: add a binding, or remove (part of) one when the UNMAP bit is
    /// set. `args.guest_mem_fd` is the [`FileId`]'s number. On success the
    /// change is committed and the plan reports what changed; on error
    /// nothing changed.
    pub fn map_mem(&mut self, vm: VmId, args: &gunyah_map_mem_args) -> Result<Plan, Error> {
        let plan = self.plan_map_mem(vm, args)?;
        self.commit(plan.clone())?;
        Ok(plan)
    }

    /// Decide a raw MAP_MEM without changing anything: the raw argument is
    /// decoded (file, then flags, in the SPEC's order) into a typed
    /// request for [`Bindings::plan_map`] or [`Bindings::plan_unmap`].
    #[must_use = "a plan changes nothing until it is committed"]
    pub fn plan_map_mem(&self, vm: VmId, args: &gunyah_map_mem_args) -> Result<Plan, Error> {
        let file = FileId(args.guest_mem_fd);
        // B-ADD-2, B-ADD-3 come before the flags.
        self.open_file_for(vm, file)?;
        let (flags, unmap) = MapFlags::decode(args.flags)?;
        let req = MapRequest {
            guest_addr: args.guest_addr,
            file,
            offset: args.offset,
            size: args.size,
            flags,
        };
        if unmap {
            self.plan_unmap(vm, &req)
        } else {
            self.plan_map(vm, &req)
        }
    }

    /// The VM's record and the file's record, if `file` is open and may be
    /// bound into `vm` (SPEC B-ADD-2, B-ADD-3).
    fn open_file_for(&self, vm: VmId, file: FileId) -> Result<(&VmRecord, &FileRecord), Error> {
        let vm_rec = self.vms.get(&vm).ok_or(Error::UnknownVm(vm))?;
        let file_rec = self
            .files
            .get(&file)
            .filter(|f| f.open)
            .ok_or(Error::UnknownFile(file))?;
        if let Some(owner) = file_rec.rules.owner
            && owner != vm
        {
            return Err(Error::ForeignFile { file, owner, vm });
        }
        Ok((vm_rec, file_rec))
    }

    /// The checks every request shares (SPEC B-ADD-2..8, B-RM-1): the file,
    /// some permission, alignment, a non-empty range that neither wraps
    /// nor leaves the file. Returns the records and the request as a
    /// binding record.
    fn check_request(
        &self,
        vm: VmId,
        req: &MapRequest,
    ) -> Result<(&VmRecord, &FileRecord, BindingInfo), Error> {
        let (vm_rec, file_rec) = self.open_file_for(vm, req.file)?;
        // B-ADD-5 (typed requests are built without decoding).
        if req.flags.perms().is_empty() {
            return Err(Error::NoPermission);
        }
        // B-ADD-7 / 7H: alignment, to the page or the file's huge page.
        for (unit, kind) in [(PAGE_SIZE, Alignment::Page), file_rec.alignment()] {
            for (what, value) in [
                ("guest address", req.guest_addr),
                ("file offset", req.offset),
                ("size", req.size),
            ] {
                if value % unit != 0 {
                    return Err(Error::Misaligned {
                        what,
                        value,
                        unit: kind,
                    });
                }
            }
        }
        // B-ADD-8: a non-empty range that neither wraps nor leaves the file.
        if req.size == 0 {
            return Err(Error::EmptyRange);
        }
        if req.guest_addr.checked_add(req.size).is_none() {
            return Err(Error::RangeWraps {
                what: "guest range",
                start: req.guest_addr,
                size: req.size,
            });
        }
        let file_end = req.offset.checked_add(req.size).ok_or(Error::RangeWraps {
            what: "file range",
            start: req.offset,
            size: req.size,
        })?;
        if file_end > file_rec.size {
            return Err(Error::BeyondEndOfFile {
                offset: req.offset,
                size: req.size,
                file_size: file_rec.size,
            });
        }
        Ok((vm_rec, file_rec, req.binding()))
    }

    /// Decide adding a binding (SPEC B-ADD-2..12) without changing anything.
    #[must_use = "a plan changes nothing until it is committed"]
    pub fn plan_map(&self, vm: VmId, req: &MapRequest) -> Result<Plan, Error> {
        let (vm_rec, file_rec, new) = self.check_request(vm, req)?;
        // What the kind of file cannot do (DESIGN D6, D3).
        if new.access() == Access::Share && !file_rec.rules.share_allowed {
            return Err(Error::ShareNotAllowed(new.file));
        }
        if file_rec.rules.write_required && !new.perms().write {
            return Err(Error::WriteRequired(new.file));
        }
        // B-ADD-9: the file range must be free in every VM.
        if let Some((_, held)) = file_rec
            .by_offset
            .last_overlap(&(new.offset..new.file_end()))
            && let Some((g, b)) = self
                .vms
                .get(&held.vm)
                .and_then(|r| r.by_guest.get(held.guest_addr))
        {
            return Err(Error::FileRangeBound {
                offset: new.offset,
                size: new.size,
                vm: held.vm,
                existing: info(g, b),
            });
        }
        // B-ADD-10: the guest range must be free in this VM.
        if let Some((g, b)) = vm_rec
            .by_guest
            .last_overlap(&(new.guest_addr..new.guest_end()))
        {
            return Err(Error::GuestRangeBound {
                guest_addr: new.guest_addr,
                size: new.size,
                existing: info(g, b),
            });
        }
        Ok(Plan {
            vm,
            change: Change::Added,
            reclaim: Vec::new(),
            removed: Vec::new(),
            added: vec![new],
            dropped_files: Vec::new(),
            generation: self.generation,
        })
    }

    /// Decide removing (part of) a binding (SPEC B-RM-1..6) without
    /// changing anything.
    #[must_use = "a plan changes nothing until it is committed"]
    pub fn plan_unmap(&self, vm: VmId, req: &MapRequest) -> Result<Plan, Error> {
        let (vm_rec, _, req) = self.check_request(vm, req)?;
        let no_match = || Error::NoMatchingBinding {
            guest_addr: req.guest_addr,
            size: req.size,
            file: req.file,
            offset: req.offset,
            flags: req.flags,
        };
        // B-RM-2: the one binding that holds the first page must be on this
        // file, with these exact flags, contain the whole range, and map it
        // with the same guest-to-file translation. (Guest ranges of one VM do
        // not overlap, so no other binding could contain the range.)
        let (g, b) = vm_rec.by_guest.get(req.guest_addr).ok_or_else(no_match)?;
        let old = info(g, b);
        if old.file != req.file
            || old.flags != req.flags
            || req.guest_end() > old.guest_end()
            || old.file_offset_of(req.guest_addr) != Some(req.offset)
        {
            return Err(no_match());
        }
        // B-RM-3: the four cases.
        let head = req.guest_addr - old.guest_addr;
        let tail = old.guest_end() - req.guest_end();
        let mut added = Vec::with_capacity(2);
        if head > 0 {
            added.push(BindingInfo { size: head, ..old });
        }
        if tail > 0 {
            added.push(BindingInfo {
                guest_addr: req.guest_end(),
                size: tail,
                offset: req.file_end(),
                ..old
            });
        }
        let case = match (head > 0, tail > 0) {
            (false, false) => RemoveCase::Whole,
            (false, true) => RemoveCase::Front,
            (true, false) => RemoveCase::Back,
            (true, true) => RemoveCase::Middle,
        };
        Ok(Plan {
            vm,
            change: Change::Removed(case),
            reclaim: vec![req],
            removed: vec![old],
            added,
            // The file is open (B-ADD-2 passed), so it cannot be dropped.
            dropped_files: Vec::new(),
            generation: self.generation,
        })
    }

    // ----- VM teardown -------------------------------------------------------

    /// Remove a VM and every binding it holds (SPEC B-VM-8); every file
    /// range it held becomes bindable again. An unknown VM gives an empty
    /// plan.
    pub fn destroy_vm(&mut self, vm: VmId) -> Plan {
        let plan = self.plan_destroy_vm(vm);
        // A plan made just now against this registry is never stale.
        let committed = self.commit(plan.clone());
        debug_assert!(committed.is_ok());
        plan
    }

    /// Decide a VM teardown without changing anything.
    #[must_use = "a plan changes nothing until it is committed"]
    pub fn plan_destroy_vm(&self, vm: VmId) -> Plan {
        let all = self.bindings(vm);
        let mut dropped_files: Vec<FileId> = Vec::new();
        for (&id, f) in &self.files {
            if !f.open && !f.by_offset.is_empty() && f.by_offset.iter().all(|(_, h)| h.vm == vm) {
                dropped_files.push(id);
            }
        }
        Plan {
            vm,
            change: Change::VmDestroyed,
            reclaim: all.clone(),
            removed: all,
            added: Vec::new(),
            dropped_files,
            generation: self.generation,
        }
    }

    // ----- commit ------------------------------------------------------------

    /// Apply a plan made by one of the `plan_*` methods. Refused (and
    /// nothing changed) if anything changed since the plan was made.
    pub fn commit(&mut self, plan: Plan) -> Result<(), Error> {
        if plan.generation != self.generation {
            return Err(Error::StalePlan);
        }
        for b in &plan.removed {
            if let Some(rec) = self.vms.get_mut(&plan.vm) {
                rec.by_guest.remove(b.guest_addr);
            }
            if let Some(f) = self.files.get_mut(&b.file) {
                f.by_offset.remove(b.offset);
            }
        }
        for b in &plan.added {
            if let Some(rec) = self.vms.get_mut(&plan.vm) {
                let bound = Bound {
                    file: b.file,
                    offset: b.offset,
                    flags: b.flags,
                };
                // The plan was checked against this very registry
                // (same generation), so the range is free.
                let inserted = rec.by_guest.insert(b.guest_addr..b.guest_end(), bound);
                debug_assert!(inserted.is_ok());
            }
            if let Some(f) = self.files.get_mut(&b.file) {
                let held = Held {
                    vm: plan.vm,
                    guest_addr: b.guest_addr,
                };
                let inserted = f.by_offset.insert(b.offset..b.file_end(), held);
                debug_assert!(inserted.is_ok());
            }
        }
        if plan.change == Change::VmDestroyed {
            self.vms.remove(&plan.vm);
        }
        for id in &plan.dropped_files {
            self.files.remove(id);
        }
        self.generation += 1;
        Ok(())
    }
}
