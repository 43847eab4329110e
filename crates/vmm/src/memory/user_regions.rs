//! Legacy user memory regions (SPEC B-VM-7): the caller's own memory given
//! to the guest whole, shared (SET_USER_MEM_REGION) or lent
//! (ANDROID_LEND_USER_MEM).

use std::ops::Range;

use binding::PAGE_SIZE;
use uapi::{GUNYAH_MEM_ALLOW_RWX, GUNYAH_MEM_ALLOW_WRITE, gunyah_userspace_memory_region};

use super::{Backing, MemState};
use crate::error::{Error, Result};

/// One region.
pub(super) struct UserRegion {
    range: Range<u64>,
    /// For a lent region: the memory taken from the caller, given back
    /// (zeroed) when this record is dropped with the VM.
    #[expect(dead_code, reason = "held for its Drop, which gives the memory back")]
    lent: Option<gmem::LentUserMemory>,
}

impl MemState {
    pub(super) fn in_user_region(&self, gpa: u64) -> bool {
        self.user_regions.values().any(|r| r.range.contains(&gpa))
    }

    /// Add a region; with `lend`, the memory is taken from the host while
    /// the VM lives (see [`gmem::LentUserMemory`]).
    ///
    /// # Safety
    ///
    /// `[r.userspace_addr, +r.memory_size)` must be memory of this process
    /// that stays mapped while the VM lives; the guest may change it at any
    /// time. With `lend`, the caller must not touch it at all meanwhile.
    pub(crate) unsafe fn add_user_region(
        &mut self,
        r: &gunyah_userspace_memory_region,
        lend: bool,
    ) -> Result<()> {
        if r.flags & !GUNYAH_MEM_ALLOW_RWX != 0 {
            return Err(Error::UnknownFlags {
                what: "user region",
                flags: r.flags,
                known: "R (0x1), W (0x2) and X (0x4)",
            });
        }
        if r.flags == 0 {
            return Err(Error::NoPermissions {
                what: "user region",
            });
        }
        for (what, value) in [
            ("user region guest address", r.guest_phys_addr),
            ("user region size", r.memory_size),
            ("user region userspace address", r.userspace_addr),
        ] {
            if !value.is_multiple_of(PAGE_SIZE) {
                return Err(Error::NotPageAligned { what, value });
            }
        }
        if r.memory_size == 0 {
            return Err(Error::Empty {
                what: "user region",
            });
        }
        let wraps = |what, addr| Error::Wraps {
            what,
            addr,
            size: r.memory_size,
        };
        let end = r
            .guest_phys_addr
            .checked_add(r.memory_size)
            .ok_or_else(|| wraps("user region guest range", r.guest_phys_addr))?;
        if r.userspace_addr.checked_add(r.memory_size).is_none() {
            return Err(wraps("user region userspace range", r.userspace_addr));
        }
        let range = r.guest_phys_addr..end;
        if self.user_regions.contains_key(&r.label) {
            return Err(Error::RegionLabelTaken { label: r.label });
        }
        if let Some((other_range, &other)) = self.reserved.last_overlap(&range) {
            return Err(Error::Overlaps {
                what: "user region",
                range,
                other,
                other_range,
            });
        }
        if let Some((other_range, _)) = self.bound.last_overlap(&range) {
            return Err(Error::Overlaps {
                what: "user region",
                range,
                other: "a binding",
                other_range,
            });
        }
        self.reserve_slots(1)?;
        let readonly = r.flags & GUNYAH_MEM_ALLOW_WRITE == 0;
        let made = (|| {
            let (backing, lent) = if lend {
                // SAFETY: forwarded from this function's contract.
                let lent = unsafe { gmem::LentUserMemory::lend(r.userspace_addr, r.memory_size)? };
                (Backing::File(lent.file().clone(), 0), Some(lent))
            } else {
                gmem::check_user_memory(r.userspace_addr, r.memory_size)?;
                (Backing::User(r.userspace_addr), None)
            };
            self.slots.install(range.clone(), backing, readonly)?;
            Ok::<_, Error>(lent)
        })();
        let lent = match made {
            Ok(lent) => lent,
            Err(e) => {
                self.budget_used -= 1;
                return Err(e);
            }
        };
        // Checked free above.
        let _ = self.reserved.insert(range.clone(), "a user memory region");
        self.user_regions
            .insert(r.label, UserRegion { range, lent });
        Ok(())
    }
}
