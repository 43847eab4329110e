//! Why a binding operation was refused. Every variant carries the errno the
//! SPEC names for it, so the raw (ioctl-shaped) API and the typed API report
//! the same thing.

use crate::{BindingInfo, FileId, VmId};

/// Linux errno values (x86_64 and every other Linux architecture lendvm
/// targets). Spelled out here because this crate makes no syscalls and has
/// no `libc` dependency; the tests check them against `libc`.
pub mod errno {
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Bad file descriptor.
    pub const EBADF: i32 = 9;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
}

/// The unit a range had to be aligned to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// The 4 KiB page size.
    Page,
    /// The 2 MiB huge-page size of files created with ALLOW_HUGEPAGE.
    HugePage,
}

impl std::fmt::Display for Alignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alignment::Page => f.write_str("4 KiB (the page size)"),
            Alignment::HugePage => f.write_str("2 MiB (the file allows huge pages)"),
        }
    }
}

/// A refused binding operation. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The VM is not (or no longer) registered.
    #[error("VM {0} does not exist")]
    UnknownVm(VmId),

    /// SPEC B-ADD-2: no open guest memory file has this id.
    #[error("guest memory file {0} is not open")]
    UnknownFile(FileId),

    /// SPEC GM-2: size zero or not page-aligned.
    #[error("guest memory file size {0:#x} must be a non-zero multiple of 4 KiB")]
    BadFileSize(u64),

    /// SPEC GM-1: a flag outside CLOEXEC | ALLOW_HUGEPAGE.
    #[error(
        "unknown guest memory file flags {0:#x} (known flags: CLOEXEC 0x1, ALLOW_HUGEPAGE 0x2)"
    )]
    UnknownFileFlags(u64),

    /// Every file id is in use (4 billion open files).
    #[error("no guest memory file ids are left")]
    OutOfFileIds,

    /// SPEC B-ADD-3: a VM-owned file bound into another VM.
    #[error("guest memory file {file} belongs to VM {owner} and cannot be bound into VM {vm}")]
    ForeignFile {
        /// The file.
        file: FileId,
        /// The VM that created it.
        owner: VmId,
        /// The VM it was to be bound into.
        vm: VmId,
    },

    /// SPEC B-ADD-4: bits outside RWX | access | UNMAP.
    #[error("unknown MAP_MEM flag bits {0:#x}")]
    UnknownMapFlags(u32),

    /// SPEC B-ADD-5: the guest would get no permission at all.
    #[error("MAP_MEM flags grant the guest no read, write or execute permission")]
    NoPermission,

    /// SPEC B-ADD-6: the access field holds no valid value.
    #[error(
        "MAP_MEM access value {0:#x} is not DEFAULT (0x0), FORCE_LEND (0x10) or FORCE_SHARE (0x20)"
    )]
    BadAccess(u32),

    /// SPEC B-ADD-7 / B-ADD-7H: misaligned guest address, offset or size.
    #[error("{what} {value:#x} is not a multiple of {unit}")]
    Misaligned {
        /// Which argument: "guest address", "file offset" or "size".
        what: &'static str,
        /// Its value.
        value: u64,
        /// The unit it must be a multiple of.
        unit: Alignment,
    },

    /// SPEC B-ADD-8: size zero.
    #[error("MAP_MEM size is zero")]
    EmptyRange,

    /// SPEC B-ADD-8: the guest or file range runs past the end of the 64-bit space.
    #[error("{what} {start:#x} + size {size:#x} overflows 64 bits")]
    RangeWraps {
        /// "guest range" or "file range".
        what: &'static str,
        /// Start of the range.
        start: u64,
        /// Its size.
        size: u64,
    },

    /// SPEC B-ADD-8: the file range runs past the end of the file.
    #[error(
        "file range [{offset:#x}, +{size:#x}) ends past the end of the file ({file_size:#x} bytes)"
    )]
    BeyondEndOfFile {
        /// Start of the file range.
        offset: u64,
        /// Its size.
        size: u64,
        /// The file's size.
        file_size: u64,
    },

    /// DESIGN D6: the file's pages can never be host-accessible.
    #[error("guest memory file {0} is private to its VM: it can be lent, not shared")]
    ShareNotAllowed(FileId),

    /// DESIGN D3: the file kind cannot enforce a guest without write access.
    #[error(
        "guest memory file {0} cannot enforce read-only guest access (KVM guest_memfd slots are always writable): bind it with ALLOW_WRITE"
    )]
    WriteRequired(FileId),

    /// SPEC B-ADD-9: the file range is already bound (in any VM).
    #[error(
        "file range [{offset:#x}, +{size:#x}) overlaps file range [{:#x}, +{:#x}) already bound in VM {vm}",
        existing.offset, existing.size
    )]
    FileRangeBound {
        /// Requested file offset.
        offset: u64,
        /// Requested size.
        size: u64,
        /// The VM holding the overlapping binding.
        vm: VmId,
        /// The overlapping binding.
        existing: BindingInfo,
    },

    /// SPEC B-ADD-10: the guest range is already bound in this VM.
    #[error(
        "guest range [{guest_addr:#x}, +{size:#x}) overlaps binding [{:#x}, +{:#x})",
        existing.guest_addr, existing.size
    )]
    GuestRangeBound {
        /// Requested guest address.
        guest_addr: u64,
        /// Requested size.
        size: u64,
        /// The overlapping binding.
        existing: BindingInfo,
    },

    /// SPEC B-RM-2: no single binding of this VM on this file contains the
    /// range with exactly these flags and this guest-to-file translation.
    #[error(
        "no binding contains guest range [{guest_addr:#x}, +{size:#x}) of file {file} at offset {offset:#x} with flags {flags:#x}"
    )]
    NoMatchingBinding {
        /// Requested guest address.
        guest_addr: u64,
        /// Requested size.
        size: u64,
        /// Requested file.
        file: FileId,
        /// Requested offset.
        offset: u64,
        /// Requested flags (UNMAP cleared).
        flags: u32,
    },

    /// SPEC GM-7 (resizable files of the Gunyah compat profile, DESIGN
    /// D13): the new size would cut into a bound file range.
    #[error(
        "guest memory file {file} cannot shrink to {size:#x} bytes: a binding holds it up to {bound_end:#x}"
    )]
    ShrinkBelowBinding {
        /// The file.
        file: FileId,
        /// The size asked for.
        size: u64,
        /// End of the highest bound file range.
        bound_end: u64,
    },

    /// The registry changed after the plan was made; make a new plan.
    #[error("the binding plan is stale: the registry changed after it was made")]
    StalePlan,
}

impl Error {
    /// The Linux errno the SPEC names for this error (positive).
    pub fn errno(&self) -> i32 {
        use errno::*;
        match self {
            Error::UnknownVm(_) | Error::UnknownFile(_) => EBADF,
            Error::OutOfFileIds => ENOSPC,
            Error::FileRangeBound { .. } | Error::GuestRangeBound { .. } => EEXIST,
            Error::NoMatchingBinding { .. } => ENOENT,
            Error::StalePlan => EAGAIN,
            Error::ShrinkBelowBinding { .. } => EBUSY,
            Error::BadFileSize(_)
            | Error::UnknownFileFlags(_)
            | Error::ForeignFile { .. }
            | Error::UnknownMapFlags(_)
            | Error::NoPermission
            | Error::BadAccess(_)
            | Error::Misaligned { .. }
            | Error::EmptyRange
            | Error::RangeWraps { .. }
            | Error::BeyondEndOfFile { .. }
            | Error::ShareNotAllowed(_)
            | Error::WriteRequired(_) => EINVAL,
        }
    }
}
