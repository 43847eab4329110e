//! The Gunyah ABI front: request numbers, argument structs, and reading
//! arguments out of the program's memory. Nothing here decides a rule of
//! the API; it turns raw ioctl arguments into values the object handlers
//! pass on, and says EFAULT where the kernel's copy_from_user would.
//!
//! Request numbers are the ones Qualcomm's test VMM sends (GUNYAH-USERSPACE
//! §1.1), as `uapi` defines them (CREATE_GUEST_MEM is upstream-only).

use uapi::{
    gunyah_fn_desc, gunyah_map_mem_args, gunyah_userspace_memory_region, gunyah_vm_boot_context,
    gunyah_vm_dtb_config, gunyah_vm_firmware_config,
};

use crate::guard::Errno;

pub(crate) use uapi::{
    GH_VM_ANDROID_LEND_USER_MEM, GH_VM_ANDROID_SET_FW_CONFIG, GH_VM_SET_USER_MEM_REGION,
    GUNYAH_CREATE_VM, GUNYAH_VCPU_MMAP_SIZE, GUNYAH_VCPU_RUN, GUNYAH_VM_ADD_FUNCTION,
    GUNYAH_VM_MAP_MEM, GUNYAH_VM_REMOVE_FUNCTION, GUNYAH_VM_SET_BOOT_CONTEXT,
    GUNYAH_VM_SET_DTB_CONFIG, GUNYAH_VM_START,
};

pub(crate) use uapi::GUNYAH_CREATE_GUEST_MEM;
use uapi::gunyah_create_mem_args;

/// True if `request` belongs to the Gunyah API at all ('G' or the Android
/// 'A' type): everything else on any descriptor passes straight through.
#[inline]
pub(crate) fn is_gunyah_type(request: u64) -> bool {
    let ty = (request >> 8) as u8;
    ty == uapi::GUNYAH_IOCTL_TYPE || ty == uapi::GH_ANDROID_IOCTL_TYPE
}

/// Argument structs the front reads from the program: plain integers and
/// integer arrays, so every bit pattern is a valid value.
pub(crate) trait Plain: Copy {}
impl Plain for gunyah_create_mem_args {}
impl Plain for gunyah_vm_dtb_config {}
impl Plain for gunyah_vm_firmware_config {}
impl Plain for gunyah_fn_desc {}
impl Plain for gunyah_map_mem_args {}
impl Plain for gunyah_vm_boot_context {}
impl Plain for gunyah_userspace_memory_region {}

/// Copy a `T` from the program's address `addr`: EFAULT if any byte is
/// unreadable (as the kernel's copy_from_user), never a fault.
pub(crate) fn read_user<T: Plain>(addr: usize) -> Result<T, Errno> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: `value` is zeroed, so all `size_of::<T>()` bytes behind its
    // pointer are initialised and exclusively ours while `bytes` lives.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
    gunyah_abi::read_user_bytes(addr as u64, bytes).map_err(|_| Errno::EFAULT)?;
    // SAFETY: every byte was written (or left zero), and `T: Plain` has no
    // invalid bit patterns.
    Ok(unsafe { value.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_are_the_ones_gunyah_programs_send() {
        // GUNYAH-USERSPACE §1.1, recorded from TV.
        assert_eq!(size_of::<gunyah_create_mem_args>(), 64);
        assert_eq!(GUNYAH_CREATE_GUEST_MEM, 0x4040_4708);
        assert_eq!(GUNYAH_CREATE_VM, 0x4700);
        assert_eq!(GUNYAH_VM_SET_DTB_CONFIG, 0x4010_4702);
        assert_eq!(GUNYAH_VM_START, 0x4703);
        assert_eq!(GUNYAH_VM_ADD_FUNCTION, 0x4010_4704);
        assert_eq!(GUNYAH_VCPU_RUN, 0x4705);
        assert_eq!(GUNYAH_VCPU_MMAP_SIZE, 0x4706);
        assert_eq!(GUNYAH_VM_REMOVE_FUNCTION, 0x4010_4707);
        assert_eq!(GUNYAH_VM_MAP_MEM, 0x4020_4709);
        assert_eq!(GUNYAH_VM_SET_BOOT_CONTEXT, 0x4010_470a);
        assert_eq!(GH_VM_SET_USER_MEM_REGION, 0x4020_4701);
        assert_eq!(GH_VM_ANDROID_LEND_USER_MEM, 0x4020_4111);
        assert_eq!(GH_VM_ANDROID_SET_FW_CONFIG, 0x4010_4112);
        assert!(is_gunyah_type(0x4020_4111) && is_gunyah_type(0x4700));
        // KVM_RUN (type 0xAE) is not.
        assert!(!is_gunyah_type(0xae80));
    }

    #[test]
    fn arguments_are_read_or_refused_with_efault() {
        let cfg = gunyah_vm_dtb_config {
            guest_phys_addr: 0x8000_0000,
            size: 4096,
        };
        let got: gunyah_vm_dtb_config = read_user(&raw const cfg as usize).unwrap();
        assert_eq!(got, cfg);
        assert_eq!(read_user::<gunyah_vm_dtb_config>(0), Err(Errno::EFAULT));
        assert_eq!(read_user::<gunyah_vm_dtb_config>(8), Err(Errno::EFAULT));
    }
}
