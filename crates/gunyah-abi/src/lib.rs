//! The Gunyah ABI front of lendvm: the one place where raw Gunyah ioctl
//! arguments (the `uapi` structs, descriptor numbers, flag bits of either
//! MAP_MEM encoding, user pointers) become typed calls of the `vmm` crate.
//!
//! lendvm's own API is typed (`vmm::Vm::bind` takes the file itself); a
//! Gunyah program speaks ioctls. Each function here takes one ioctl's
//! argument, decodes it in the SPEC's order of checks, and calls the typed
//! API, returning the errno the SPEC names on any refusal. The preload
//! library that serves `/dev/gunyah` inside unmodified Gunyah programs
//! plugs in here, with its own [`Descriptors`] (programs name files by
//! descriptor numbers of their own) and the [`Profile::Compat`] profile.
//!
//! ```no_run
//! use gunyah_abi::{FdTable, FlagEncoding, Profile};
//!
//! let dev = vmm::Device::open()?;
//! let vm = gunyah_abi::create_vm(&dev, 0, Profile::Strict)?;
//! let files = FdTable::default();
//! let mem = files.insert(gunyah_abi::create_guest_mem(
//!     &dev,
//!     &uapi::gunyah_create_mem_args { flags: 0, size: 1 << 20, reserved: [0; 6] },
//!     Profile::Strict,
//! )?);
//! let args = uapi::gunyah_map_mem_args {
//!     guest_addr: 0x8000_0000,
//!     flags: uapi::GUNYAH_MEM_FORCE_SHARE | uapi::GUNYAH_MEM_ALLOW_RWX,
//!     guest_mem_fd: mem as u32,
//!     offset: 0,
//!     size: 1 << 20,
//! };
//! gunyah_abi::map_mem(&vm, &args, &files, FlagEncoding::Android)?;
//! # Ok::<(), gunyah_abi::Error>(())
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod boot;
pub mod compat;
mod files;
mod flags;
mod functions;
mod run;

use uapi::{gunyah_create_mem_args, gunyah_map_mem_args, gunyah_userspace_memory_region};
use vmm::{BindRequest, Device, GuestAddress, GuestMem, Perms, UserMemRegion, Vm};

pub use boot::{Profile, set_boot_context};
pub use files::{Descriptors, FdTable};
pub use flags::{FlagEncoding, decode_map_flags};
pub use functions::{FunctionArg, add_function, decode_function, read_user_bytes, remove_function};
pub use run::{vcpu_run, vcpu_run_raw};

/// A refused Gunyah call: a VM manager error, carrying the SPEC's errno.
pub type Error = vmm::Error;
/// Result of Gunyah calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// CREATE_VM (SPEC B-VM-1): the type must be 0 (EINVAL otherwise). In the
/// compat profile the VM gets the platform's MMIO window
/// ([`compat::PLATFORM_MMIO`]).
pub fn create_vm(dev: &Device, vm_type: u64, profile: Profile) -> Result<Vm> {
    if vm_type != 0 {
        return Err(Error::UnknownVmType { vm_type });
    }
    let vm = dev.create_vm()?;
    if profile == Profile::Compat {
        let w = compat::PLATFORM_MMIO;
        vm.set_mmio_window(w.start, w.end - w.start)?;
    }
    Ok(vm)
}

/// CREATE_GUEST_MEM (SPEC GM-1..3): flags CLOEXEC | ALLOW_HUGEPAGE only,
/// a non-zero whole-page size, reserved words zero; EINVAL otherwise. In
/// the compat profile the file can grow and shrink later
/// ([`vmm::GuestMem::resize`]).
pub fn create_guest_mem(
    dev: &Device,
    args: &gunyah_create_mem_args,
    profile: Profile,
) -> Result<GuestMem> {
    if let Some(i) = args.reserved.iter().position(|&r| r != 0) {
        return Err(Error::ReservedNotZero {
            what: "CREATE_GUEST_MEM",
            index: Some(i),
            value: args.reserved[i],
        });
    }
    match profile {
        Profile::Strict => dev.create_guest_mem(args.size, args.flags),
        Profile::Compat => {
            dev.create_resizable_guest_mem(args.size, compat::GUEST_MEM_CAPACITY, args.flags)
        }
    }
}

/// START (SPEC B-VM-3); in the compat profile, with the resource manager's
/// rules ([`compat::check_start`]) first.
pub fn start(vm: &Vm, profile: Profile) -> Result<()> {
    match profile {
        Profile::Strict => vm.start(),
        Profile::Compat => vm.start_with(compat::check_start),
    }
}

/// MAP_MEM (SPEC §2.5–2.7): `args.guest_mem_fd` names a guest memory file
/// through `files` (EBADF if it is not open, EINVAL if it is not a guest
/// memory file), `args.flags` is decoded in `encoding` (EINVAL for unknown
/// bits, no permission or a bad access value), then the typed bind or
/// unbind decides the rest.
pub fn map_mem(
    vm: &Vm,
    args: &gunyah_map_mem_args,
    files: &impl Descriptors,
    encoding: FlagEncoding,
) -> Result<()> {
    let mem = files.guest_mem(args.guest_mem_fd)?;
    let (flags, unmap) = decode_map_flags(args.flags, encoding)?;
    let req = BindRequest {
        mem: &mem,
        guest: GuestAddress(args.guest_addr),
        offset: args.offset,
        size: args.size,
        flags,
    };
    if unmap {
        vm.unbind(&req)
    } else {
        vm.bind(&req)
    }
}

/// SET_DTB_CONFIG (SPEC B-VM-4).
pub fn set_dtb_config(vm: &Vm, cfg: &uapi::gunyah_vm_dtb_config) -> Result<()> {
    vm.set_dtb_config(GuestAddress(cfg.guest_phys_addr), cfg.size)
}

/// ANDROID_SET_FW_CONFIG (SPEC B-VM-5).
pub fn set_fw_config(vm: &Vm, cfg: &uapi::gunyah_vm_firmware_config) -> Result<()> {
    vm.set_fw_config(GuestAddress(cfg.guest_phys_addr), cfg.size)
}

/// SET_USER_MEM_REGION (`lend` false) or ANDROID_LEND_USER_MEM (`lend`
/// true), SPEC B-VM-7: flags other than R/W/X, or none, are EINVAL.
///
/// # Safety
///
/// As [`Vm::set_user_mem_region`] / [`Vm::lend_user_mem`]: the memory must
/// stay mapped while the VM lives and, when lent, must not be touched.
pub unsafe fn set_user_mem_region(
    vm: &Vm,
    r: &gunyah_userspace_memory_region,
    lend: bool,
) -> Result<()> {
    let known = uapi::GUNYAH_MEM_ALLOW_RWX;
    if r.flags & !known != 0 {
        return Err(Error::UnknownFlags {
            what: "user region",
            flags: r.flags,
            known: "R (0x1), W (0x2) and X (0x4)",
        });
    }
    let region = UserMemRegion {
        label: r.label,
        guest: GuestAddress(r.guest_phys_addr),
        size: r.memory_size,
        userspace_addr: r.userspace_addr,
        perms: Perms::new(
            r.flags & uapi::GUNYAH_MEM_ALLOW_READ != 0,
            r.flags & uapi::GUNYAH_MEM_ALLOW_WRITE != 0,
            r.flags & uapi::GUNYAH_MEM_ALLOW_EXEC != 0,
        ),
    };
    // SAFETY: forwarded from this function's contract.
    unsafe {
        if lend {
            vm.lend_user_mem(&region)
        } else {
            vm.set_user_mem_region(&region)
        }
    }
}
