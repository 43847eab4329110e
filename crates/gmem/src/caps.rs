//! What this kernel's guest_memfd supports. kvm-bindings 0.14 lacks the
//! guest_memfd flag constants and the flags capability; they are defined
//! here, once, for all of lendvm.

use kvm_ioctls::VmFd;

use crate::Error;

/// `KVM_CAP_GUEST_MEMFD`: the kernel has `KVM_CREATE_GUEST_MEMFD`.
pub const KVM_CAP_GUEST_MEMFD: u32 = kvm_bindings::KVM_CAP_GUEST_MEMFD;
/// `KVM_CAP_GUEST_MEMFD_FLAGS` (Linux 6.18): the mask of supported flags.
pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;
/// guest_memfd flag: the file can be mmap()ed by the host.
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
/// guest_memfd flag: pages start shared, so host mappings can fault them in.
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
/// Memslot flag: the slot is backed by a guest_memfd.
pub const KVM_MEM_GUEST_MEMFD: u32 = kvm_bindings::KVM_MEM_GUEST_MEMFD;

/// The guest_memfd support a VM reports, probed once per VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMemfdSupport {
    /// `KVM_CREATE_GUEST_MEMFD` exists.
    pub available: bool,
    /// Supported creation flags (0 on kernels before the flags capability).
    pub flags: u64,
}

impl GuestMemfdSupport {
    /// Ask the VM (support can depend on the VM type).
    pub fn probe(vm: &VmFd) -> GuestMemfdSupport {
        let available = vm.check_extension_raw(KVM_CAP_GUEST_MEMFD.into()) > 0;
        let flags = if available {
            u64::try_from(vm.check_extension_raw(KVM_CAP_GUEST_MEMFD_FLAGS.into())).unwrap_or(0)
        } else {
            0
        };
        GuestMemfdSupport { available, flags }
    }

    /// Check that `requested` flags can be used, naming both masks if not.
    pub fn require(&self, requested: u64) -> Result<(), Error> {
        if !self.available {
            return Err(Error::NoGuestMemfd);
        }
        if requested & !self.flags != 0 {
            return Err(Error::UnsupportedFlags {
                requested,
                supported: self.flags,
            });
        }
        Ok(())
    }
}
