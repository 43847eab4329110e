//! Why a VM manager call was refused, with the errno the SPEC names for it.

/// A refused VM manager call. Unless a variant says otherwise, nothing was
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binding rule (SPEC §2.5–2.7) refused the call.
    #[error(transparent)]
    Binding(#[from] binding::Error),

    /// A guest memory file operation failed.
    #[error(transparent)]
    Memory(#[from] gmem::Error),

    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// What lendvm asked KVM to do.
        op: &'static str,
        /// KVM's answer.
        #[source]
        source: std::io::Error,
    },

    /// The host lacks something lendvm needs.
    #[error("this host cannot run lendvm: {0}")]
    Unsupported(String),

    /// SPEC B-ADD-2, F-5, F-6: the number is not an open file descriptor.
    #[error("file descriptor {0} is not open")]
    BadFd(i32),

    /// SPEC B-ADD-3: the descriptor is open but is not a lendvm guest
    /// memory file (or an eventfd, where one is needed).
    #[error("file descriptor {fd} is not {wanted}")]
    WrongFdKind {
        /// The descriptor.
        fd: i32,
        /// What it should have been.
        wanted: &'static str,
    },

    /// An argument is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),

    /// SPEC B-VM-4: a guest range wraps past the end of the address space.
    #[error("{what} [{addr:#x}, +{size:#x}) wraps past the end of the address space")]
    Overflow {
        /// Which range.
        what: &'static str,
        /// Start.
        addr: u64,
        /// Size.
        size: u64,
    },

    /// Something with this identity already exists (duplicate vCPU id,
    /// irqfd label, ioeventfd, region label, overlapping region).
    #[error("{0}")]
    Exists(String),

    /// Nothing matches (SPEC F-2, B-VM-3 DTB outside any binding).
    #[error("{0}")]
    NotFound(String),

    /// The resource is busy (host view over lent pages at START, …).
    #[error("{0}")]
    Busy(String),

    /// SPEC B-VM-3, R-2: the VM or vCPU is not (or no longer) runnable.
    #[error("{0}")]
    NotRunnable(String),

    /// SPEC R-4: `immediate_exit` was set, or the run was interrupted.
    #[error("the vCPU run was interrupted (immediate_exit set)")]
    Interrupted,

    /// The VM's memslots are all reserved: a binding that could need more
    /// is refused at MAP_MEM, so a guest can never run out of them.
    #[error(
        "the binding needs {needed} more KVM memslots but only {free} are left for this VM (lend bindings reserve one per demand chunk)"
    )]
    NoSlots {
        /// Memslots the operation would reserve.
        needed: usize,
        /// Memslots still free.
        free: usize,
    },

    /// SPEC F-1, B-ADD-1: an argument address could not be read.
    #[error("cannot read {len} bytes of argument at {addr:#x}")]
    Fault {
        /// The address.
        addr: u64,
        /// The length.
        len: usize,
    },
}

impl Error {
    /// The Linux errno for this error (positive).
    pub fn errno(&self) -> i32 {
        match self {
            Error::Binding(e) => e.errno(),
            Error::Memory(e) => e.errno(),
            Error::Kvm { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::BadFd(_) => libc::EBADF,
            Error::WrongFdKind { .. } | Error::Invalid(_) => libc::EINVAL,
            Error::Overflow { .. } => libc::EOVERFLOW,
            Error::Exists(_) => libc::EEXIST,
            Error::NotFound(_) => libc::ENOENT,
            Error::Busy(_) => libc::EBUSY,
            Error::NotRunnable(_) => libc::ENODEV,
            Error::Interrupted => libc::EINTR,
            Error::Fault { .. } => libc::EFAULT,
            Error::NoSlots { .. } => libc::ENOSPC,
        }
    }

    /// The ioctl-style return value: `-errno`.
    pub fn to_ret(&self) -> i32 {
        -self.errno()
    }

    pub(crate) fn kvm(op: &'static str, e: kvm_ioctls::Error) -> Error {
        Error::Kvm {
            op,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }
}

/// An error's message followed by those of its sources, joined by ": ",
/// each source left out when the text so far already says it (some
/// messages quote their source). For reports that must say everything on
/// one line, such as the CLI's.
pub fn full_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// Result of VM manager calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
