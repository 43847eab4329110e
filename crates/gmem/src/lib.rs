//! Guest memory files: the kernel objects guest memory lives in, their
//! page ownership, and the only way the host process touches guest memory.
//!
//! Two kinds behind one type, [`GuestMemFile`] (DESIGN §2):
//!
//! * a VM-owned KVM **guest_memfd**, [`Mode::HostMappable`]
//!   (`MMAP | INIT_SHARED`) or [`Mode::Private`] (`MMAP` only: the kernel
//!   itself refuses host access);
//! * a free-standing sealed **memfd** (the Gunyah model, and the fallback
//!   where the kernel has no guest_memfd), bindable into any VM.
//!
//! Every page is host-owned, shared with a VM, lend-bound to a VM (not yet
//! touched by its guest), or lent to a VM ([`PageState`]). The VM manager
//! drives the transitions from binding plans. Host access goes through
//! [`GuestMemFile::read_at`] / [`GuestMemFile::write_at`] and scoped
//! [`HostView`]s, which return [`Error::Lent`] on lent pages instead of
//! faulting, and never signal whatever the caller passes.
//!
//! # The kernel-facing mapping
//!
//! On this host KVM's instruction emulator and its shadow page-table walker
//! read guest memory through a memslot's `userspace_addr`, even for
//! guest_memfd slots (DESIGN §1). So every file keeps exactly one mapping
//! of itself for KVM ([`GuestMemFile::kernel_mapping_addr`]). No lendvm API
//! reads or writes a lent page through it; it is not a host view.
//!
//! # Enforcement matrix
//!
//! Who makes each guarantee hold, per kind of file ([`ENFORCEMENT`]; `lendvm
//! info` prints it).
//!
//! | guarantee | guest_memfd host-mappable | guest_memfd private | memfd |
//! |---|---|---|---|
//! | host has no access to lent pages | lendvm | kernel | lendvm |
//! | `read`/`write` syscalls on the fd refused | kernel | kernel | not enforced |
//! | a raw `mmap` of the fd cannot reach lent pages | not enforced | kernel | not enforced |
//! | lent pages zeroed before the host gets them back | lendvm | lendvm | lendvm |
//! | punch hole cannot free lent pages | lendvm | lendvm | lendvm |
//! | guest cannot write a binding without ALLOW_WRITE | not enforceable: refused at MAP_MEM | not enforceable: refused at MAP_MEM | kernel (read-only slot) |
//! | guest cannot execute a binding without ALLOW_EXEC | not enforceable (advisory) | not enforceable (advisory) | not enforceable (advisory) |
//!
//! "lendvm" means: through lendvm's API. A process that takes the file's
//! descriptor number and calls `mmap(2)`, `read(2)` or `fallocate(2)` on it
//! itself bypasses lendvm; only the "kernel" cells hold against that.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod caps;
mod error;
mod file;
pub mod pages;
mod sys;
mod user;
mod user_view;
mod view;

pub use caps::{
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GuestMemfdSupport, KVM_CAP_GUEST_MEMFD,
    KVM_CAP_GUEST_MEMFD_FLAGS, KVM_MEM_GUEST_MEMFD,
};
pub use error::Error;

/// Result of guest memory file operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
pub use file::{GuestMemFile, Kind, LentRange, Mode, ReclaimHook};
pub use pages::PageState;
pub use user::{LentUserMemory, check_user_memory};
pub use user_view::UserView;
pub use view::{HostView, ViewRegistration};

/// Who enforces a guarantee for one kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcer {
    /// The host kernel: holds even against code that bypasses lendvm.
    Kernel,
    /// lendvm's API: holds for every access made through lendvm.
    Lendvm,
    /// Nobody, on this host; the text says what happens instead.
    NotEnforced(&'static str),
}

/// One row of the enforcement matrix.
#[derive(Debug, Clone, Copy)]
pub struct Guarantee {
    /// What is guaranteed.
    pub what: &'static str,
    /// For guest_memfd host-mappable files.
    pub host_mappable: Enforcer,
    /// For guest_memfd private files.
    pub private: Enforcer,
    /// For free-standing memfd files.
    pub memfd: Enforcer,
}

use Enforcer::{Kernel, Lendvm, NotEnforced};

/// The enforcement matrix (see the crate documentation).
pub const ENFORCEMENT: &[Guarantee] = &[
    Guarantee {
        what: "host has no access to lent pages",
        host_mappable: Lendvm,
        private: Kernel,
        memfd: Lendvm,
    },
    Guarantee {
        what: "read/write syscalls on the file descriptor refused",
        host_mappable: Kernel,
        private: Kernel,
        memfd: NotEnforced("a memfd accepts read/write"),
    },
    Guarantee {
        what: "a raw mmap of the descriptor cannot reach lent pages",
        host_mappable: NotEnforced("the kernel allows host mappings"),
        private: Kernel,
        memfd: NotEnforced("the kernel allows host mappings"),
    },
    Guarantee {
        what: "lent pages are zeroed before the host gets them back",
        host_mappable: Lendvm,
        private: Lendvm,
        memfd: Lendvm,
    },
    Guarantee {
        what: "punch hole cannot free lent pages",
        host_mappable: Lendvm,
        private: Lendvm,
        memfd: Lendvm,
    },
    Guarantee {
        what: "guest cannot write a binding without ALLOW_WRITE",
        host_mappable: NotEnforced("guest_memfd slots cannot be read-only: refused at MAP_MEM"),
        private: NotEnforced("guest_memfd slots cannot be read-only: refused at MAP_MEM"),
        memfd: Kernel,
    },
    Guarantee {
        what: "guest cannot execute a binding without ALLOW_EXEC",
        host_mappable: NotEnforced("x86 KVM has no per-slot no-exec: advisory"),
        private: NotEnforced("x86 KVM has no per-slot no-exec: advisory"),
        memfd: NotEnforced("x86 KVM has no per-slot no-exec: advisory"),
    },
];
