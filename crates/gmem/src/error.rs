//! Why a guest memory file operation was refused. Nothing was changed.

use binding::VmId;

use crate::PageState;

/// A refused guest memory file operation, with the errno lendvm reports for
/// it in its raw (errno-returning) entry points.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel has no guest_memfd at all.
    #[error(
        "this kernel's KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD is 0); use a free-standing (memfd) file instead"
    )]
    NoGuestMemfd,

    /// The kernel's guest_memfd lacks flags the requested mode needs.
    #[error("guest_memfd flags {requested:#x} requested, host supports {supported:#x}")]
    UnsupportedFlags {
        /// Flags the mode needs.
        requested: u64,
        /// Flags `KVM_CAP_GUEST_MEMFD_FLAGS` reports.
        supported: u64,
    },

    /// SPEC GM-2: size zero, not page-aligned, or too large for the kernel.
    #[error("guest memory file size {0:#x} must be a non-zero multiple of 4 KiB below 2^63")]
    BadSize(u64),

    /// SPEC GM-1: unknown file flags.
    #[error(
        "unknown guest memory file flags {0:#x} (known flags: CLOEXEC 0x1, ALLOW_HUGEPAGE 0x2)"
    )]
    UnknownFlags(u64),

    /// A resizable file cannot grow past the capacity it was created
    /// with (the kernel's EFBIG for a file too large).
    #[error("guest memory file size {size:#x} exceeds its capacity of {capacity:#x} bytes")]
    BeyondCapacity {
        /// The size asked for.
        size: u64,
        /// The most the file can hold.
        capacity: u64,
    },

    /// SPEC GM-MM-1: a private (copy-on-write) mapping of guest memory.
    #[error("guest memory can only be mapped MAP_SHARED, not MAP_PRIVATE")]
    PrivateMapping,

    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What lendvm was doing.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },

    /// SPEC GM-FA-1/2: a fallocate mode other than allocate or punch hole.
    #[error(
        "fallocate mode {0:#x} is not supported: use KEEP_SIZE (allocate) or KEEP_SIZE|PUNCH_HOLE"
    )]
    FallocateMode(i32),

    /// SPEC GM-FA-3: offset or length not page-aligned, or zero length.
    #[error("fallocate range [{offset:#x}, +{len:#x}) must be whole pages and non-empty")]
    FallocateRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },

    /// SPEC GM-FA-3: offset + length past the largest file offset.
    #[error("fallocate range [{offset:#x}, +{len:#x}) is past the largest file offset")]
    FallocateTooLarge {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },

    /// SPEC GM-FA-4: allocation past the end of the file.
    #[error("cannot allocate [{offset:#x}, +{len:#x}): the file is only {size:#x} bytes")]
    AllocateBeyondEnd {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// File size.
        size: u64,
    },

    /// A host access (or view) outside the file, or misaligned where whole
    /// pages are needed. Reported instead of the SIGBUS a raw mapping gives.
    #[error(
        "range [{offset:#x}, +{len:#x}) is outside the {size:#x}-byte file or not where it must be"
    )]
    OutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// File (or view) size.
        size: u64,
    },

    /// SPEC §2.13 EFAULT: a range of the caller's own memory (a legacy user
    /// region) is not mapped, or not readable where it must be copied.
    #[error("the caller's memory [{addr:#x}, +{len:#x}) is not mapped and readable")]
    UserMemory {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },

    /// DESIGN D4, D8: a host access touches a page lent to a VM.
    #[error(
        "page at offset {offset:#x} is lent to VM {vm}: the host has no access until it is reclaimed"
    )]
    Lent {
        /// Offset of the first lent page in the range.
        offset: u64,
        /// The VM holding it.
        vm: VmId,
    },

    /// DESIGN §2: a Private file's pages are never host-accessible.
    #[error("the file is private to its VM: the kernel refuses every host access to it")]
    Private,

    /// SPEC GM-MM-6, GM-FA-7: the range is busy.
    #[error("page at offset {offset:#x} is busy: {why}")]
    Busy {
        /// Offset of the first busy page.
        offset: u64,
        /// What makes it busy.
        why: &'static str,
    },

    /// A page-ownership transition that the page's state does not allow.
    #[error("page at offset {offset:#x} is {found}, which does not allow {wanted}")]
    WrongState {
        /// Offset of the first offending page.
        offset: u64,
        /// Its state.
        found: PageState,
        /// The transition asked for.
        wanted: &'static str,
    },

    /// The reclaim hook could not take the pages back from the guest.
    #[error("reclaiming [{offset:#x}, +{len:#x}) from the guest failed: {reason}")]
    ReclaimFailed {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// The errno to report.
        errno: i32,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The Linux errno lendvm reports for this error (positive).
    pub fn errno(&self) -> i32 {
        match self {
            Error::NoGuestMemfd => libc::EOPNOTSUPP,
            Error::UnsupportedFlags { .. }
            | Error::BadSize(_)
            | Error::UnknownFlags(_)
            | Error::FallocateRange { .. }
            | Error::AllocateBeyondEnd { .. }
            | Error::PrivateMapping => libc::EINVAL,
            Error::BeyondCapacity { .. } => libc::EFBIG,
            Error::Os { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::FallocateMode(_) => libc::EOPNOTSUPP,
            Error::FallocateTooLarge { .. } => libc::EFBIG,
            Error::OutOfBounds { .. } | Error::UserMemory { .. } => libc::EFAULT,
            Error::Lent { .. } | Error::Private => libc::EACCES,
            Error::Busy { .. } | Error::WrongState { .. } => libc::EBUSY,
            Error::ReclaimFailed { errno, .. } => *errno,
        }
    }

    pub(crate) fn os(op: &'static str) -> Error {
        Error::Os {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}
