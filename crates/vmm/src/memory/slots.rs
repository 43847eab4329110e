//! One VM's KVM memslots: which guest ranges are installed, from what.
//!
//! guest_memfd slots are immutable on KVM (DESIGN §1): a slot is never
//! changed, only deleted and re-created. Taking part of a slot away deletes
//! it and re-creates the parts outside the range.

use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use binding::{IntervalMap, PAGE_SIZE};
use gmem::{GuestMemFile, Kind};
use kvm_bindings::kvm_userspace_memory_region2;
use kvm_ioctls::VmFd;

use crate::error::{Error, Result};

/// What a memslot maps.
#[derive(Clone)]
pub(crate) enum Backing {
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

#[derive(Clone)]
struct Slot {
    id: u32,
    backing: Backing,
    readonly: bool,
}

/// Counters of slot changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    pub(crate) created: u64,
    pub(crate) deleted: u64,
}

/// The installed memslots of one VM.
pub(crate) struct Slots {
    vm_fd: Arc<VmFd>,
    /// Free slot ids; pop from the end, so low ids go first.
    free: Vec<u32>,
    installed: IntervalMap<Slot>,
    pub(crate) counts: SlotCounts,
}

impl Slots {
    pub(crate) fn new(vm_fd: Arc<VmFd>, memslots: usize) -> Slots {
        let n = u32::try_from(memslots).unwrap_or(u32::MAX);
        Slots {
            vm_fd,
            free: (0..n).rev().collect(),
            installed: IntervalMap::new(),
            counts: SlotCounts::default(),
        }
    }

    /// True if a slot covers `gpa`.
    pub(crate) fn is_installed(&self, gpa: u64) -> bool {
        self.installed.contains(gpa)
    }

    /// The parts of `r` no slot covers, in order.
    pub(crate) fn gaps(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = r.start;
        for (s, _) in self.installed.overlapping(r.clone()) {
            if s.start > at {
                out.push(at..s.start);
            }
            at = at.max(s.end);
        }
        if at < r.end {
            out.push(at..r.end);
        }
        out
    }

    /// Installed ranges with their slot ids.
    pub(crate) fn list(&self) -> Vec<(Range<u64>, u32)> {
        self.installed.iter().map(|(r, s)| (r, s.id)).collect()
    }

    fn set_slot(
        &self,
        id: u32,
        range: &Range<u64>,
        backing: Option<(&Backing, bool)>,
    ) -> Result<()> {
        let mut region = kvm_userspace_memory_region2 {
            slot: id,
            guest_phys_addr: range.start,
            memory_size: range.end - range.start,
            ..Default::default()
        };
        if backing.is_none() {
            region.memory_size = 0;
        }
        if let Some((backing, readonly)) = backing {
            if readonly {
                region.flags |= kvm_bindings::KVM_MEM_READONLY;
            }
            match backing {
                Backing::File(file, offset) => {
                    // SAFETY: the address only goes to KVM as this slot's
                    // userspace_addr; lendvm never dereferences it.
                    region.userspace_addr = unsafe { file.kernel_mapping_addr() } + offset;
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

    /// Install `range` from `backing`. Refused if a slot intersects it, no
    /// slot id is free, or KVM refuses; nothing changes then.
    pub(crate) fn install(
        &mut self,
        range: Range<u64>,
        backing: Backing,
        readonly: bool,
    ) -> Result<()> {
        debug_assert!(range.start.is_multiple_of(PAGE_SIZE) && range.end.is_multiple_of(PAGE_SIZE));
        if let Some((r, s)) = self.installed.last_overlap(&range) {
            return Err(Error::SlotOccupied {
                range,
                slot: s.id,
                slot_range: r,
            });
        }
        let Some(id) = self.free.pop() else {
            return Err(Error::NoSlots { needed: 1, free: 0 });
        };
        if let Err(e) = self.set_slot(id, &range, Some((&backing, readonly))) {
            self.free.push(id);
            return Err(e);
        }
        self.counts.created += 1;
        // Checked free above.
        let _ = self.installed.insert(
            range,
            Slot {
                id,
                backing,
                readonly,
            },
        );
        Ok(())
    }

    /// Remove `range` from the guest: delete every slot that intersects it
    /// and re-create the parts outside it.
    pub(crate) fn uninstall(&mut self, range: Range<u64>) -> Result<()> {
        let hit: Vec<(Range<u64>, Slot)> = self
            .installed
            .overlapping(range.clone())
            .map(|(r, s)| (r, s.clone()))
            .collect();
        for (r, slot) in hit {
            self.set_slot(slot.id, &r, None)?;
            self.installed.remove(r.start);
            self.counts.deleted += 1;
            self.free.push(slot.id);
            if r.start < range.start {
                self.install(r.start..range.start, slot.backing.clone(), slot.readonly)?;
            }
            if r.end > range.end {
                let skip = range.end - r.start;
                self.install(range.end..r.end, slot.backing.advanced(skip), slot.readonly)?;
            }
        }
        Ok(())
    }
}
