//! A reference model of the binding rules (SPEC §2.4–2.7, DESIGN D3/D6),
//! written without looking at how the engine stores anything.
//!
//! State is page by page: every bound guest page of every VM maps to
//! `(serial, file, file page, flags)`, where `serial` names the binding the
//! page belongs to, and every bound file page maps back to its guest page.
//! Bindings are not stored at all: they are the runs of consecutive guest
//! pages with the same serial. Checks are done page by page in the SPEC's
//! order. Arithmetic on ranges is done in `u128`, so nothing can wrap.
//!
//! The property test (`tests/model_check.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/binding_ops.rs`) both drive the engine and this model
//! through [`harness::Harness`].

#![allow(dead_code)]

pub mod harness;
mod refusal;

pub use refusal::refusal_of;

use std::collections::{BTreeMap, BTreeSet};

use binding::{BindingInfo, Change, FileId, FileInfo, FileRules, RemoveCase, VmId};
use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_WRITE,
    GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND, GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP,
    gunyah_map_mem_args,
};

/// SPEC: `P`.
pub const PAGE: u64 = 4096;
/// SPEC: `H`, the unit of bindings of ALLOW_HUGEPAGE files.
pub const HUGE: u64 = 2 * 1024 * 1024;
/// SPEC §1.4.
pub const CLOEXEC: u64 = 1;
/// SPEC §1.4.
pub const ALLOW_HUGEPAGE: u64 = 2;

/// Which MAP_MEM argument was misaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    Guest,
    Offset,
    Size,
}

/// Why the model refuses an operation. Mirrors the engine's error variants
/// (see [`refusal_of`]) so that both the errno and the reason are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownVm(VmId),
    UnknownFile(FileId),
    BadFileSize(u64),
    UnknownFileFlags(u64),
    OutOfFileIds,
    ForeignFile {
        file: FileId,
        owner: VmId,
        vm: VmId,
    },
    UnknownMapFlags(u32),
    NoPermission,
    BadAccess(u32),
    Misaligned {
        what: Arg,
        value: u64,
        huge: bool,
    },
    EmptyRange,
    RangeWraps {
        file_range: bool,
        start: u64,
        size: u64,
    },
    BeyondEndOfFile {
        offset: u64,
        size: u64,
        file_size: u64,
    },
    ShareNotAllowed(FileId),
    WriteRequired(FileId),
    /// The engine names one overlapping binding; the harness checks it
    /// separately because any overlapping one is a right answer.
    FileRangeBound,
    GuestRangeBound,
    NoMatchingBinding {
        guest_addr: u64,
        size: u64,
        file: FileId,
        offset: u64,
        flags: u32,
    },
    StalePlan,
}

impl Refusal {
    /// The errno SPEC §2.13 names for this refusal.
    pub fn errno(&self) -> i32 {
        match self {
            Refusal::UnknownVm(_) | Refusal::UnknownFile(_) => libc::EBADF,
            Refusal::OutOfFileIds => libc::ENOSPC,
            Refusal::FileRangeBound | Refusal::GuestRangeBound => libc::EEXIST,
            Refusal::NoMatchingBinding { .. } => libc::ENOENT,
            Refusal::StalePlan => libc::EAGAIN,
            _ => libc::EINVAL,
        }
    }

    /// A short name per kind of refusal, for coverage counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownVm(_) => "UnknownVm",
            Refusal::UnknownFile(_) => "UnknownFile",
            Refusal::BadFileSize(_) => "BadFileSize",
            Refusal::UnknownFileFlags(_) => "UnknownFileFlags",
            Refusal::OutOfFileIds => "OutOfFileIds",
            Refusal::ForeignFile { .. } => "ForeignFile",
            Refusal::UnknownMapFlags(_) => "UnknownMapFlags",
            Refusal::NoPermission => "NoPermission",
            Refusal::BadAccess(_) => "BadAccess",
            Refusal::Misaligned { huge: false, .. } => "Misaligned/page",
            Refusal::Misaligned { huge: true, .. } => "Misaligned/huge",
            Refusal::EmptyRange => "EmptyRange",
            Refusal::RangeWraps {
                file_range: false, ..
            } => "RangeWraps/guest",
            Refusal::RangeWraps {
                file_range: true, ..
            } => "RangeWraps/file",
            Refusal::BeyondEndOfFile { .. } => "BeyondEndOfFile",
            Refusal::ShareNotAllowed(_) => "ShareNotAllowed",
            Refusal::WriteRequired(_) => "WriteRequired",
            Refusal::FileRangeBound => "FileRangeBound",
            Refusal::GuestRangeBound => "GuestRangeBound",
            Refusal::NoMatchingBinding { .. } => "NoMatchingBinding",
            Refusal::StalePlan => "StalePlan",
        }
    }
}

/// Every refusal kind the operations of the harness can provoke.
pub const ALL_KINDS: &[&str] = &[
    "UnknownVm",
    "UnknownFile",
    "BadFileSize",
    "UnknownFileFlags",
    "ForeignFile",
    "UnknownMapFlags",
    "NoPermission",
    "BadAccess",
    "Misaligned/page",
    "Misaligned/huge",
    "EmptyRange",
    "RangeWraps/guest",
    "RangeWraps/file",
    "BeyondEndOfFile",
    "ShareNotAllowed",
    "WriteRequired",
    "FileRangeBound",
    "GuestRangeBound",
    "NoMatchingBinding",
    "StalePlan",
];

/// What a successful operation reports; compared with the engine's `Plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub vm: VmId,
    pub change: Change,
    pub reclaim: Vec<BindingInfo>,
    pub removed: Vec<BindingInfo>,
    pub added: Vec<BindingInfo>,
    pub dropped_files: Vec<FileId>,
}

/// A decided MAP_MEM, not yet applied.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    edit: Edit,
}

#[derive(Debug, Clone)]
enum Edit {
    Add {
        vm: u32,
        guest_page: u64,
        file: u32,
        file_page: u64,
        pages: u64,
        flags: u32,
    },
    Remove {
        vm: u32,
        guest_page: u64,
        pages: u64,
        /// First page after the removed range that stays bound to the
        /// same binding; it (and the rest of the binding) gets a new serial.
        tail: Option<(u64, u64)>,
    },
}

#[derive(Debug, Clone, Copy)]
struct ModelFile {
    size: u64,
    flags: u64,
    rules: FileRules,
    open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GuestPage {
    serial: u64,
    file: u32,
    file_page: u64,
    flags: u32,
}

/// The reference model.
#[derive(Debug, Default)]
pub struct Model {
    files: BTreeMap<u32, ModelFile>,
    vms: BTreeSet<u32>,
    next_file: u32,
    next_vm: u32,
    next_serial: u64,
    /// (vm, guest page) → what backs it.
    guest: BTreeMap<(u32, u64), GuestPage>,
    /// (file, file page) → (vm, guest page, serial) it backs.
    owner: BTreeMap<(u32, u64), (u32, u64, u64)>,
}

fn aligned(value: u64, unit: u64) -> bool {
    value.is_multiple_of(unit)
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    // ----- files and VMs ---------------------------------------------------

    /// GM-1 (flags), GM-2 (size), and an owner VM that must exist.
    pub fn create_file(
        &mut self,
        size: u64,
        flags: u64,
        rules: FileRules,
    ) -> Result<FileId, Refusal> {
        let unknown = flags & !(CLOEXEC | ALLOW_HUGEPAGE);
        if unknown != 0 {
            return Err(Refusal::UnknownFileFlags(unknown));
        }
        if size == 0 || !aligned(size, PAGE) {
            return Err(Refusal::BadFileSize(size));
        }
        if let Some(owner) = rules.owner
            && !self.vms.contains(&owner.0)
        {
            return Err(Refusal::UnknownVm(owner));
        }
        let id = self.next_file;
        self.next_file += 1;
        self.files.insert(
            id,
            ModelFile {
                size,
                flags,
                rules,
                open: true,
            },
        );
        Ok(FileId(id))
    }

    pub fn create_vm(&mut self) -> VmId {
        let id = self.next_vm;
        self.next_vm += 1;
        self.vms.insert(id);
        VmId(id)
    }

    pub fn vm_exists(&self, vm: VmId) -> bool {
        self.vms.contains(&vm.0)
    }

    /// GM-LT-1: closing drops the handle; the record lives while any page
    /// of the file is bound.
    pub fn close_file(&mut self, file: FileId) -> Result<bool, Refusal> {
        match self.files.get_mut(&file.0) {
            Some(f) if f.open => f.open = false,
            _ => return Err(Refusal::UnknownFile(file)),
        }
        let gone = self.pages_of_file(file.0).next().is_none();
        if gone {
            self.files.remove(&file.0);
        }
        Ok(gone)
    }

    /// GM-LT-1/4: one reference for the open handle, one per binding.
    pub fn file_info(&self, file: FileId) -> Option<FileInfo> {
        let f = self.files.get(&file.0)?;
        let serials: BTreeSet<u64> = self
            .pages_of_file(file.0)
            .map(|(_, (_, _, serial))| serial)
            .collect();
        Some(FileInfo {
            size: f.size,
            flags: f.flags,
            rules: f.rules,
            open: f.open,
            refs: u32::from(f.open) + serials.len() as u32,
        })
    }

    fn pages_of_file(&self, file: u32) -> impl Iterator<Item = (u64, (u32, u64, u64))> + '_ {
        self.owner
            .range((file, 0)..=(file, u64::MAX))
            .map(|(&(_, fp), &v)| (fp, v))
    }

    // ----- reading bindings back ---------------------------------------------

    /// The run of pages with the serial of `(vm, guest_page)`, as a binding.
    fn binding_at(&self, vm: u32, guest_page: u64) -> Option<BindingInfo> {
        let p = self.guest.get(&(vm, guest_page))?;
        let same = |gp: u64| self.guest.get(&(vm, gp)).map(|q| q.serial) == Some(p.serial);
        let mut first = guest_page;
        while first > 0 && same(first - 1) {
            first -= 1;
        }
        let mut last = guest_page;
        while last < u64::MAX && same(last + 1) {
            last += 1;
        }
        let start = self.guest[&(vm, first)];
        Some(BindingInfo {
            guest_addr: first * PAGE,
            size: (last - first + 1) * PAGE,
            file: FileId(start.file),
            offset: start.file_page * PAGE,
            flags: start.flags,
        })
    }

    /// The VM's bindings: runs of consecutive guest pages with one serial.
    pub fn bindings(&self, vm: VmId) -> Vec<BindingInfo> {
        let mut out: Vec<BindingInfo> = Vec::new();
        let mut last: Option<(u64, u64)> = None; // (guest page, serial)
        for (&(_, gp), p) in self.guest.range((vm.0, 0)..=(vm.0, u64::MAX)) {
            match (last, out.last_mut()) {
                (Some((lgp, ls)), Some(b)) if ls == p.serial && lgp + 1 == gp => b.size += PAGE,
                _ => out.push(BindingInfo {
                    guest_addr: gp * PAGE,
                    size: PAGE,
                    file: FileId(p.file),
                    offset: p.file_page * PAGE,
                    flags: p.flags,
                }),
            }
            last = Some((gp, p.serial));
        }
        out
    }

    /// The binding holding the byte at `guest_addr`.
    pub fn lookup(&self, vm: VmId, guest_addr: u64) -> Option<BindingInfo> {
        self.binding_at(vm.0, guest_addr / PAGE)
    }

    /// Pages `[first, last]` touched by the byte range `[start, start + size)`
    /// (cut at the end of the 64-bit space), or None if it is empty.
    fn page_span(start: u64, size: u64) -> Option<(u64, u64)> {
        let end = (u128::from(start) + u128::from(size)).min(u128::from(u64::MAX));
        (end > u128::from(start)).then(|| (start / PAGE, ((end - 1) / u128::from(PAGE)) as u64))
    }

    /// The VM's bindings with a page in `[guest_addr, guest_addr + size)`.
    pub fn bindings_in(&self, vm: VmId, guest_addr: u64, size: u64) -> Vec<BindingInfo> {
        let Some((first, last)) = Self::page_span(guest_addr, size) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut last_serial = None;
        for (&(_, gp), p) in self.guest.range((vm.0, first)..=(vm.0, last)) {
            if last_serial != Some(p.serial) {
                last_serial = Some(p.serial);
                out.push(self.binding_at(vm.0, gp).expect("page is bound"));
            }
        }
        out
    }

    /// Every binding (any VM) with a file page in `[offset, offset + size)`.
    pub fn file_bindings(&self, file: FileId, offset: u64, size: u64) -> Vec<(VmId, BindingInfo)> {
        let Some((first, last)) = Self::page_span(offset, size) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut last_serial = None;
        for (_, &(vm, gp, serial)) in self.owner.range((file.0, first)..=(file.0, last)) {
            if last_serial != Some(serial) {
                last_serial = Some(serial);
                out.push((VmId(vm), self.binding_at(vm, gp).expect("page is bound")));
            }
        }
        out
    }

    // ----- MAP_MEM -------------------------------------------------------------

    /// MAP_MEM, applied.
    pub fn map_mem(&mut self, vm: VmId, args: &gunyah_map_mem_args) -> Result<Outcome, Refusal> {
        let d = self.decide(vm, args)?;
        Ok(self.apply(d))
    }

    /// MAP_MEM decided, nothing changed: the checks of B-ADD-2..10 and
    /// B-RM-1..3 in the SPEC's order.
    pub fn decide(&self, vm: VmId, args: &gunyah_map_mem_args) -> Result<Decision, Refusal> {
        if !self.vms.contains(&vm.0) {
            return Err(Refusal::UnknownVm(vm));
        }
        let file_id = FileId(args.guest_mem_fd);
        // B-ADD-2: an open file.
        let file = match self.files.get(&file_id.0) {
            Some(f) if f.open => *f,
            _ => return Err(Refusal::UnknownFile(file_id)),
        };
        // B-ADD-3: a VM-owned file goes into its own VM only.
        if let Some(owner) = file.rules.owner
            && owner != vm
        {
            return Err(Refusal::ForeignFile {
                file: file_id,
                owner,
                vm,
            });
        }
        // B-ADD-4: known bits only.
        let rwx = GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE | GUNYAH_MEM_ALLOW_EXEC;
        let unknown = args.flags & !(rwx | GUNYAH_MEM_ACCESS_MASK | GUNYAH_MEM_UNMAP);
        if unknown != 0 {
            return Err(Refusal::UnknownMapFlags(unknown));
        }
        // B-ADD-5: some permission.
        if args.flags & rwx == 0 {
            return Err(Refusal::NoPermission);
        }
        // B-ADD-6: one of the three access values.
        let access = args.flags & GUNYAH_MEM_ACCESS_MASK;
        if ![
            GUNYAH_MEM_DEFAULT_ACCESS,
            GUNYAH_MEM_FORCE_LEND,
            GUNYAH_MEM_FORCE_SHARE,
        ]
        .contains(&access)
        {
            return Err(Refusal::BadAccess(access));
        }
        // B-ADD-7, then B-ADD-7H for huge-page files.
        let huge = file.flags & ALLOW_HUGEPAGE != 0;
        let units: &[(u64, bool)] = if huge {
            &[(PAGE, false), (HUGE, true)]
        } else {
            &[(PAGE, false)]
        };
        for &(unit, is_huge) in units {
            for (what, value) in [
                (Arg::Guest, args.guest_addr),
                (Arg::Offset, args.offset),
                (Arg::Size, args.size),
            ] {
                if !aligned(value, unit) {
                    return Err(Refusal::Misaligned {
                        what,
                        value,
                        huge: is_huge,
                    });
                }
            }
        }
        // B-ADD-8: not empty, no wrap, inside the file.
        if args.size == 0 {
            return Err(Refusal::EmptyRange);
        }
        let limit = u128::from(u64::MAX);
        if u128::from(args.guest_addr) + u128::from(args.size) > limit {
            return Err(Refusal::RangeWraps {
                file_range: false,
                start: args.guest_addr,
                size: args.size,
            });
        }
        if u128::from(args.offset) + u128::from(args.size) > limit {
            return Err(Refusal::RangeWraps {
                file_range: true,
                start: args.offset,
                size: args.size,
            });
        }
        if args.offset + args.size > file.size {
            return Err(Refusal::BeyondEndOfFile {
                offset: args.offset,
                size: args.size,
                file_size: file.size,
            });
        }
        let flags = args.flags & !GUNYAH_MEM_UNMAP;
        let guest_page = args.guest_addr / PAGE;
        let file_page = args.offset / PAGE;
        let pages = args.size / PAGE;
        let request = BindingInfo {
            guest_addr: args.guest_addr,
            size: args.size,
            file: file_id,
            offset: args.offset,
            flags,
        };
        if args.flags & GUNYAH_MEM_UNMAP == 0 {
            // D6, D3.
            if access == GUNYAH_MEM_FORCE_SHARE && !file.rules.share_allowed {
                return Err(Refusal::ShareNotAllowed(file_id));
            }
            if file.rules.write_required && flags & GUNYAH_MEM_ALLOW_WRITE == 0 {
                return Err(Refusal::WriteRequired(file_id));
            }
            // B-ADD-9: no file page bound anywhere; B-ADD-10: no guest page
            // bound in this VM.
            if (0..pages).any(|i| self.owner.contains_key(&(file_id.0, file_page + i))) {
                return Err(Refusal::FileRangeBound);
            }
            if (0..pages).any(|i| self.guest.contains_key(&(vm.0, guest_page + i))) {
                return Err(Refusal::GuestRangeBound);
            }
            return Ok(Decision {
                outcome: Outcome {
                    vm,
                    change: Change::Added,
                    reclaim: vec![],
                    removed: vec![],
                    added: vec![request],
                    dropped_files: vec![],
                },
                edit: Edit::Add {
                    vm: vm.0,
                    guest_page,
                    file: file_id.0,
                    file_page,
                    pages,
                    flags,
                },
            });
        }
        // B-RM-2: every requested page is bound in this VM, to this file,
        // with exactly these flags, to the requested file page, and all of
        // them belong to one binding.
        let no_match = Refusal::NoMatchingBinding {
            guest_addr: args.guest_addr,
            size: args.size,
            file: file_id,
            offset: args.offset,
            flags,
        };
        let mut serial = None;
        for i in 0..pages {
            match self.guest.get(&(vm.0, guest_page + i)) {
                Some(p)
                    if p.file == file_id.0
                        && p.flags == flags
                        && p.file_page == file_page + i
                        && serial.is_none_or(|s| s == p.serial) =>
                {
                    serial = Some(p.serial)
                }
                _ => return Err(no_match),
            }
        }
        // B-RM-3: what stays of the binding before and after the range.
        let old = self.binding_at(vm.0, guest_page).expect("page is bound");
        let head = args.guest_addr - old.guest_addr;
        let tail = old.guest_addr + old.size - (args.guest_addr + args.size);
        let mut added = Vec::new();
        if head > 0 {
            added.push(BindingInfo { size: head, ..old });
        }
        let tail_pages = (tail > 0).then(|| {
            added.push(BindingInfo {
                guest_addr: args.guest_addr + args.size,
                size: tail,
                offset: args.offset + args.size,
                ..old
            });
            (guest_page + pages, tail / PAGE)
        });
        let case = match (head > 0, tail > 0) {
            (false, false) => RemoveCase::Whole,
            (false, true) => RemoveCase::Front,
            (true, false) => RemoveCase::Back,
            (true, true) => RemoveCase::Middle,
        };
        Ok(Decision {
            outcome: Outcome {
                vm,
                change: Change::Removed(case),
                reclaim: vec![request],
                removed: vec![old],
                added,
                // The file is open, so removing its pages cannot drop it.
                dropped_files: vec![],
            },
            edit: Edit::Remove {
                vm: vm.0,
                guest_page,
                pages,
                tail: tail_pages,
            },
        })
    }

    /// Apply a decision made against the current state.
    pub fn apply(&mut self, d: Decision) -> Outcome {
        match d.edit {
            Edit::Add {
                vm,
                guest_page,
                file,
                file_page,
                pages,
                flags,
            } => {
                let serial = self.new_serial();
                for i in 0..pages {
                    let page = GuestPage {
                        serial,
                        file,
                        file_page: file_page + i,
                        flags,
                    };
                    assert!(self.guest.insert((vm, guest_page + i), page).is_none());
                    assert!(
                        self.owner
                            .insert((file, file_page + i), (vm, guest_page + i, serial))
                            .is_none()
                    );
                }
            }
            Edit::Remove {
                vm,
                guest_page,
                pages,
                tail,
            } => {
                for i in 0..pages {
                    let p = self.guest.remove(&(vm, guest_page + i)).expect("bound");
                    self.owner.remove(&(p.file, p.file_page)).expect("owned");
                }
                if let Some((first, n)) = tail {
                    let serial = self.new_serial();
                    for gp in first..first + n {
                        let p = self.guest.get_mut(&(vm, gp)).expect("bound");
                        p.serial = serial;
                        self.owner.get_mut(&(p.file, p.file_page)).expect("owned").2 = serial;
                    }
                }
            }
        }
        d.outcome
    }

    fn new_serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Teardown: every page of the VM goes back; closed files left with no
    /// bound page disappear (GM-LT-1). An unknown VM changes nothing.
    pub fn destroy_vm(&mut self, vm: VmId) -> Outcome {
        let all = self.bindings(vm);
        let files_before: BTreeSet<u32> = all.iter().map(|b| b.file.0).collect();
        let pages: Vec<(u32, u64)> = self
            .guest
            .range((vm.0, 0)..=(vm.0, u64::MAX))
            .map(|(&k, _)| k)
            .collect();
        for k in pages {
            let p = self.guest.remove(&k).expect("bound");
            self.owner.remove(&(p.file, p.file_page)).expect("owned");
        }
        self.vms.remove(&vm.0);
        let mut dropped_files = Vec::new();
        for f in files_before {
            if !self.files[&f].open && self.pages_of_file(f).next().is_none() {
                self.files.remove(&f);
                dropped_files.push(FileId(f));
            }
        }
        Outcome {
            vm,
            change: Change::VmDestroyed,
            reclaim: all.clone(),
            removed: all,
            added: vec![],
            dropped_files,
        }
    }

    /// True if the file's binding unit is 2 MiB.
    pub fn is_huge(&self, file: FileId) -> bool {
        self.files
            .get(&file.0)
            .is_some_and(|f| f.flags & ALLOW_HUGEPAGE != 0)
    }

    pub fn file_is_open(&self, file: FileId) -> bool {
        self.files.get(&file.0).is_some_and(|f| f.open)
    }

    pub fn file_size(&self, file: FileId) -> Option<u64> {
        self.files.get(&file.0).map(|f| f.size)
    }

    /// Every binding of every live VM, VM by VM.
    pub fn all_bindings(&self) -> Vec<(VmId, BindingInfo)> {
        self.vms
            .iter()
            .flat_map(|&vm| {
                self.bindings(VmId(vm))
                    .into_iter()
                    .map(move |b| (VmId(vm), b))
            })
            .collect()
    }
}
