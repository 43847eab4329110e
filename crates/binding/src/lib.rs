//! The bookkeeping heart of lendvm: which guest ranges of which VM are backed
//! by which ranges of which guest memory file, shared or lent.
//!
//! Pure data, no syscalls. Every MAP_MEM rule of SPEC §2.5–2.7 is decided
//! here; the VM manager applies the resulting [`Plan`]s to KVM memslots and
//! guest memory files. Each VM keeps an interval map of its bindings keyed by
//! guest address, each file an interval map of its bound ranges keyed by file
//! offset, so every operation is O(log n) in the number of bindings.
//!
//! ```
//! use binding::{Access, Bindings, MapRequest, Perms};
//!
//! let mut reg = Bindings::new();
//! let file = reg.create_file(16 << 20, 0).unwrap();
//! let vm = reg.create_vm();
//! let req = MapRequest::new(0x4000_0000, file, 0, 8 << 20, Access::Lend, Perms::RWX);
//! reg.map_mem(vm, &req.args()).unwrap();
//! // Remove the middle 2 MiB: the binding splits in two.
//! let hole = MapRequest { guest_addr: 0x4020_0000, offset: 2 << 20, size: 2 << 20, ..req };
//! let plan = reg.map_mem(vm, &hole.unmap_args()).unwrap();
//! assert_eq!(plan.reclaim.len(), 1);
//! assert_eq!(reg.bindings(vm).len(), 2);
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod access;
mod error;
pub mod interval;
mod plan;
mod registry;

pub use access::{Access, MapFlags, Perms, file_flags, map_flags};
pub use error::{Alignment, Error, errno};
pub use interval::IntervalMap;
pub use plan::{Change, Plan, RemoveCase};
pub use registry::{Bindings, FileInfo, FileRules};

/// The page size bindings are measured in.
pub const PAGE_SIZE: u64 = 4096;
/// The alignment unit of bindings of files created with ALLOW_HUGEPAGE.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// A guest memory file known to the registry. In the raw API its number is
/// what `gunyah_map_mem_args::guest_mem_fd` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A VM known to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(pub u32);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One binding: guest range `[guest_addr, guest_addr + size)` is backed by
/// file range `[offset, offset + size)` of `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingInfo {
    /// Guest physical address of the first byte.
    pub guest_addr: u64,
    /// Length in bytes (whole pages).
    pub size: u64,
    /// The file behind it.
    pub file: FileId,
    /// Byte offset of the first byte in the file.
    pub offset: u64,
    /// MAP_MEM flags in `uapi` encoding, UNMAP clear.
    pub flags: u32,
}

impl BindingInfo {
    /// One past the last guest address.
    pub fn guest_end(&self) -> u64 {
        self.guest_addr + self.size
    }

    /// One past the last file offset.
    pub fn file_end(&self) -> u64 {
        self.offset + self.size
    }

    /// Share or lend (DEFAULT counts as lend, SPEC B-AC-3).
    pub fn access(&self) -> Access {
        Access::from_flags(self.flags).unwrap_or(Access::Lend)
    }

    /// True if the host loses access while the guest uses the memory.
    pub fn is_lend(&self) -> bool {
        self.access() == Access::Lend
    }

    /// What the guest may do.
    pub fn perms(&self) -> Perms {
        Perms::from_flags(self.flags)
    }

    /// True if `guest_addr` lies inside the binding.
    pub fn contains_guest(&self, guest_addr: u64) -> bool {
        guest_addr >= self.guest_addr && guest_addr - self.guest_addr < self.size
    }

    /// The file offset behind a guest address inside the binding.
    pub fn file_offset_of(&self, guest_addr: u64) -> Option<u64> {
        self.contains_guest(guest_addr)
            .then(|| self.offset + (guest_addr - self.guest_addr))
    }

    /// The file range behind guest range `guest` if it lies inside the
    /// binding (an empty range maps to an empty range at its offset).
    pub fn file_range_of(&self, guest: &std::ops::Range<u64>) -> Option<std::ops::Range<u64>> {
        if guest.start > guest.end || guest.start < self.guest_addr || guest.end > self.guest_end()
        {
            return None;
        }
        let start = self.offset + (guest.start - self.guest_addr);
        Some(start..start + (guest.end - guest.start))
    }

    /// The guest address in front of a file offset inside the binding.
    pub fn guest_addr_of(&self, offset: u64) -> Option<u64> {
        (offset >= self.offset && offset - self.offset < self.size)
            .then(|| self.guest_addr + (offset - self.offset))
    }

    /// The part of this binding whose file range lies inside
    /// `[offset, offset + size)`, if any.
    pub fn clip_to_file_range(&self, offset: u64, size: u64) -> Option<BindingInfo> {
        let start = self.offset.max(offset);
        let end = self.file_end().min(offset.saturating_add(size));
        (start < end).then(|| BindingInfo {
            guest_addr: self.guest_addr + (start - self.offset),
            size: end - start,
            offset: start,
            ..*self
        })
    }

    /// The part of this binding whose guest range lies inside
    /// `[guest_addr, guest_addr + size)`, if any.
    pub fn clip_to_guest_range(&self, guest_addr: u64, size: u64) -> Option<BindingInfo> {
        let start = self.guest_addr.max(guest_addr);
        let end = self.guest_end().min(guest_addr.saturating_add(size));
        (start < end).then(|| BindingInfo {
            guest_addr: start,
            size: end - start,
            offset: self.offset + (start - self.guest_addr),
            ..*self
        })
    }
}

/// A binding request in typed form: the core of MAP_MEM. The raw ioctl
/// argument is decoded into this in one place ([`Bindings::plan_map_mem`]
/// for the registry; the VM manager's Gunyah ABI front for descriptors);
/// [`MapRequest::args`] and [`MapRequest::unmap_args`] give the raw form
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// Guest physical address.
    pub guest_addr: u64,
    /// The file.
    pub file: FileId,
    /// Byte offset into the file.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Share or lend, and the guest's permissions.
    pub flags: MapFlags,
}

impl MapRequest {
    /// A request with every field given.
    pub const fn new(
        guest_addr: u64,
        file: FileId,
        offset: u64,
        size: u64,
        access: Access,
        perms: Perms,
    ) -> MapRequest {
        MapRequest {
            guest_addr,
            file,
            offset,
            size,
            flags: MapFlags::new(access, perms),
        }
    }

    /// The binding record this request describes (ranges unchecked).
    pub const fn binding(&self) -> BindingInfo {
        BindingInfo {
            guest_addr: self.guest_addr,
            size: self.size,
            file: self.file,
            offset: self.offset,
            flags: self.flags.bits(),
        }
    }

    /// The MAP_MEM argument that adds this binding.
    pub const fn args(&self) -> uapi::gunyah_map_mem_args {
        uapi::gunyah_map_mem_args {
            guest_addr: self.guest_addr,
            flags: self.flags.bits(),
            guest_mem_fd: self.file.0,
            offset: self.offset,
            size: self.size,
        }
    }

    /// The MAP_MEM argument that removes this range.
    pub const fn unmap_args(&self) -> uapi::gunyah_map_mem_args {
        let mut args = self.args();
        args.flags |= uapi::GUNYAH_MEM_UNMAP;
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every binding and every guest range over a small space: the three
    /// gpa <-> offset mappings agree with each other and with the
    /// definition (offset + distance into the binding), and refuse
    /// everything outside.
    #[test]
    fn guest_and_file_addresses_map_both_ways_exactly() {
        for guest_addr in 0..6u64 {
            for size in 1..6u64 {
                for offset in 0..4u64 {
                    let b = BindingInfo {
                        guest_addr,
                        size,
                        offset,
                        file: FileId(1),
                        flags: 0,
                    };
                    for gpa in 0..14u64 {
                        let inside = gpa >= guest_addr && gpa < guest_addr + size;
                        let want = inside.then(|| offset + gpa - guest_addr);
                        assert_eq!(b.file_offset_of(gpa), want, "{b:?} {gpa}");
                        if let Some(off) = want {
                            assert_eq!(b.guest_addr_of(off), Some(gpa));
                        }
                        for end in gpa..14 {
                            let fits = gpa >= guest_addr && end <= guest_addr + size;
                            let want =
                                fits.then(|| offset + gpa - guest_addr..offset + end - guest_addr);
                            assert_eq!(b.file_range_of(&(gpa..end)), want, "{b:?} {gpa}..{end}");
                        }
                    }
                    for off in 0..12u64 {
                        let inside = off >= offset && off < offset + size;
                        assert_eq!(b.guest_addr_of(off).is_some(), inside, "{b:?} {off}");
                    }
                }
            }
        }
    }
}
