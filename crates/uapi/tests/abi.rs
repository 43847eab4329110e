//! Layout and numbering checks: the ABI must match the C header byte for byte.
//! Expected values are written out by hand from the C layout rules and the
//! `_IOC` formula (dir << 30 | size << 16 | type << 8 | nr), independent of the
//! crate's own arithmetic.

use core::mem::{align_of, offset_of, size_of};
use uapi::*;

#[test]
fn map_mem_args_layout() {
    assert_eq!(size_of::<gunyah_map_mem_args>(), 32);
    assert_eq!(offset_of!(gunyah_map_mem_args, guest_addr), 0);
    assert_eq!(offset_of!(gunyah_map_mem_args, flags), 8);
    assert_eq!(offset_of!(gunyah_map_mem_args, guest_mem_fd), 12);
    assert_eq!(offset_of!(gunyah_map_mem_args, offset), 16);
    assert_eq!(offset_of!(gunyah_map_mem_args, size), 24);
}

#[test]
fn function_args_layout() {
    assert_eq!(size_of::<gunyah_fn_desc>(), 16);
    assert_eq!(offset_of!(gunyah_fn_desc, type_), 0);
    assert_eq!(offset_of!(gunyah_fn_desc, arg_size), 4);
    assert_eq!(offset_of!(gunyah_fn_desc, arg), 8);

    assert_eq!(size_of::<gunyah_fn_vcpu_arg>(), 4);
    assert_eq!(offset_of!(gunyah_fn_vcpu_arg, id), 0);

    assert_eq!(size_of::<gunyah_fn_irqfd_arg>(), 16);
    assert_eq!(offset_of!(gunyah_fn_irqfd_arg, fd), 0);
    assert_eq!(offset_of!(gunyah_fn_irqfd_arg, label), 4);
    assert_eq!(offset_of!(gunyah_fn_irqfd_arg, flags), 8);
    assert_eq!(offset_of!(gunyah_fn_irqfd_arg, padding), 12);

    assert_eq!(size_of::<gunyah_fn_ioeventfd_arg>(), 32);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, datamatch), 0);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, addr), 8);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, len), 16);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, fd), 20);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, flags), 24);
    assert_eq!(offset_of!(gunyah_fn_ioeventfd_arg, padding), 28);
}

#[test]
fn config_structs_layout() {
    assert_eq!(size_of::<gunyah_vm_dtb_config>(), 16);
    assert_eq!(offset_of!(gunyah_vm_dtb_config, guest_phys_addr), 0);
    assert_eq!(offset_of!(gunyah_vm_dtb_config, size), 8);

    assert_eq!(size_of::<gunyah_vm_firmware_config>(), 16);
    assert_eq!(offset_of!(gunyah_vm_firmware_config, guest_phys_addr), 0);
    assert_eq!(offset_of!(gunyah_vm_firmware_config, size), 8);

    assert_eq!(size_of::<gunyah_vm_boot_context>(), 16);
    assert_eq!(offset_of!(gunyah_vm_boot_context, reg), 0);
    assert_eq!(offset_of!(gunyah_vm_boot_context, reserved), 4);
    assert_eq!(offset_of!(gunyah_vm_boot_context, value), 8);

    assert_eq!(size_of::<gunyah_userspace_memory_region>(), 32);
    assert_eq!(offset_of!(gunyah_userspace_memory_region, label), 0);
    assert_eq!(offset_of!(gunyah_userspace_memory_region, flags), 4);
    assert_eq!(
        offset_of!(gunyah_userspace_memory_region, guest_phys_addr),
        8
    );
    assert_eq!(offset_of!(gunyah_userspace_memory_region, memory_size), 16);
    assert_eq!(
        offset_of!(gunyah_userspace_memory_region, userspace_addr),
        24
    );
}

#[test]
fn exit_info_layout() {
    assert_eq!(size_of::<gunyah_vm_exit_info>(), 16);
    assert_eq!(offset_of!(gunyah_vm_exit_info, type_), 0);
    assert_eq!(offset_of!(gunyah_vm_exit_info, padding), 2);
    assert_eq!(offset_of!(gunyah_vm_exit_info, reason_size), 4);
    assert_eq!(offset_of!(gunyah_vm_exit_info, reason), 8);
}

// SPEC §1.5: the run page, offsets measured from the start of the page.
#[test]
fn vcpu_run_page_layout() {
    assert_eq!(size_of::<gunyah_vcpu_run>(), 40);
    assert_eq!(align_of::<gunyah_vcpu_run>(), 8);
    assert_eq!(offset_of!(gunyah_vcpu_run, immediate_exit), 0);
    assert_eq!(offset_of!(gunyah_vcpu_run, padding), 1);
    assert_eq!(offset_of!(gunyah_vcpu_run, exit_reason), 8);
    assert_eq!(offset_of!(gunyah_vcpu_run, exit), 16);
    assert_eq!(size_of::<gunyah_vcpu_run_exit>(), 24);

    let u = offset_of!(gunyah_vcpu_run, exit);
    // mmio
    assert_eq!(u + offset_of!(gunyah_vcpu_run_mmio, phys_addr), 16);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_mmio, data), 24);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_mmio, len), 32);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_mmio, is_write), 36);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_mmio, resume_action), 37);
    // status
    let ei = u + offset_of!(gunyah_vcpu_run_status, exit_info);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_status, status), 16);
    assert_eq!(ei + offset_of!(gunyah_vm_exit_info, type_), 20);
    assert_eq!(ei + offset_of!(gunyah_vm_exit_info, padding), 22);
    assert_eq!(ei + offset_of!(gunyah_vm_exit_info, reason_size), 24);
    assert_eq!(ei + offset_of!(gunyah_vm_exit_info, reason), 28);
    // page_fault
    assert_eq!(u + offset_of!(gunyah_vcpu_run_page_fault, phys_addr), 16);
    assert_eq!(u + offset_of!(gunyah_vcpu_run_page_fault, attempt), 24);
    assert_eq!(
        u + offset_of!(gunyah_vcpu_run_page_fault, resume_action),
        28
    );
}

#[test]
fn request_numbers_match_the_c_macros() {
    assert_eq!(GUNYAH_CREATE_VM, 0x0000_4700);
    assert_eq!(GH_VM_SET_USER_MEM_REGION, 0x4020_4701);
    assert_eq!(GUNYAH_VM_SET_DTB_CONFIG, 0x4010_4702);
    assert_eq!(GUNYAH_VM_START, 0x0000_4703);
    assert_eq!(GUNYAH_VM_ADD_FUNCTION, 0x4010_4704);
    assert_eq!(GUNYAH_VCPU_RUN, 0x0000_4705);
    assert_eq!(GUNYAH_VCPU_MMAP_SIZE, 0x0000_4706);
    assert_eq!(GUNYAH_VM_REMOVE_FUNCTION, 0x4010_4707);
    assert_eq!(GUNYAH_VM_MAP_MEM, 0x4020_4709);
    assert_eq!(GUNYAH_VM_SET_BOOT_CONTEXT, 0x4010_470a);
    assert_eq!(GH_VM_ANDROID_LEND_USER_MEM, 0x4020_4111);
    assert_eq!(GH_VM_ANDROID_SET_FW_CONFIG, 0x4010_4112);
}

// SPEC §1.3 (S004 column) and R-ABI-1.
#[test]
fn map_mem_flag_values() {
    assert_eq!(GUNYAH_MEM_ALLOW_READ, 0x1);
    assert_eq!(GUNYAH_MEM_ALLOW_WRITE, 0x2);
    assert_eq!(GUNYAH_MEM_ALLOW_EXEC, 0x4);
    assert_eq!(GUNYAH_MEM_ALLOW_RWX, 0x7);
    assert_eq!(GUNYAH_MEM_DEFAULT_ACCESS, 0x0);
    assert_eq!(GUNYAH_MEM_FORCE_LEND, 0x10);
    assert_eq!(GUNYAH_MEM_FORCE_SHARE, 0x20);
    assert_eq!(GUNYAH_MEM_ACCESS_MASK, 0x70);
    assert_eq!(GUNYAH_MEM_UNMAP, 0x100);
    // The access values live inside the access mask and outside the RWX bits.
    for v in [GUNYAH_MEM_FORCE_LEND, GUNYAH_MEM_FORCE_SHARE] {
        assert_eq!(v & !GUNYAH_MEM_ACCESS_MASK, 0);
        assert_eq!(v & GUNYAH_MEM_ALLOW_RWX, 0);
    }
}

#[test]
fn enum_values() {
    assert_eq!(
        (GUNYAH_FN_VCPU, GUNYAH_FN_IRQFD, GUNYAH_FN_IOEVENTFD),
        (1, 2, 3)
    );
    assert_eq!(GUNYAH_FN_MAX_ARG_SIZE, 256);
    assert_eq!(GUNYAH_IRQFD_FLAGS_LEVEL, 1);
    assert_eq!(GUNYAH_IOEVENTFD_FLAGS_DATAMATCH, 1);
    assert_eq!(
        (
            GUNYAH_VCPU_EXIT_UNKNOWN,
            GUNYAH_VCPU_EXIT_MMIO,
            GUNYAH_VCPU_EXIT_STATUS,
            GUNYAH_VCPU_EXIT_PAGE_FAULT
        ),
        (0, 1, 2, 3)
    );
    assert_eq!(
        (
            GUNYAH_VCPU_RESUME_HANDLED,
            GUNYAH_VCPU_RESUME_FAULT,
            GUNYAH_VCPU_RESUME_RETRY
        ),
        (0, 1, 2)
    );
    assert_eq!(
        (
            GUNYAH_VM_STATUS_LOAD_FAILED,
            GUNYAH_VM_STATUS_EXITED,
            GUNYAH_VM_STATUS_CRASHED
        ),
        (1, 2, 3)
    );
    assert_eq!(GUNYAH_VM_MAX_EXIT_REASON_SIZE, 8);
    assert_eq!((REG_SET_X, REG_SET_PC, REG_SET_SP), (0, 1, 2));
}

#[test]
fn boot_context_reg_encoding() {
    assert_eq!(gunyah_vm_boot_context_reg(REG_SET_X, 0), 0x000);
    assert_eq!(gunyah_vm_boot_context_reg(REG_SET_X, 31), 0x01f);
    assert_eq!(gunyah_vm_boot_context_reg(REG_SET_PC, 0), 0x100);
    assert_eq!(gunyah_vm_boot_context_reg(REG_SET_SP, 1), 0x201);
    // Each part is masked to 8 bits, as the C macro does.
    assert_eq!(gunyah_vm_boot_context_reg(0x1ff, 0x1ff), 0xffff);
    assert_eq!(gunyah_vm_boot_context_reg(0x100, 0x100), 0);
    // Usable in constant context.
    const PC: u32 = gunyah_vm_boot_context_reg(REG_SET_PC, 0);
    assert_eq!(PC, 256);
}

#[test]
fn fresh_run_page_reads_unknown() {
    // SPEC F-4: a fresh run page has exit_reason UNKNOWN.
    let run = gunyah_vcpu_run::default();
    assert_eq!(run.exit_reason, GUNYAH_VCPU_EXIT_UNKNOWN);
    assert_eq!(run.immediate_exit, 0);
}

// SPEC §1.2 (TV `gunyah-bindings`): CREATE_GUEST_MEM is _IOW('G', 8) of a
// 64-byte struct; the request number TV sends is 0x40404708.
#[test]
fn create_guest_mem_matches_the_upstream_layout() {
    assert_eq!(size_of::<gunyah_create_mem_args>(), 64);
    assert_eq!(offset_of!(gunyah_create_mem_args, flags), 0);
    assert_eq!(offset_of!(gunyah_create_mem_args, size), 8);
    assert_eq!(offset_of!(gunyah_create_mem_args, reserved), 16);
    assert_eq!(GUNYAH_CREATE_GUEST_MEM, 0x4040_4708);
    assert_eq!((GHMF_CLOEXEC, GHMF_ALLOW_HUGEPAGE), (1, 2));
}

// SPEC §1.3: the two encodings share UNMAP and nothing else.
#[test]
fn upstream_flag_encoding_differs_from_android_only_in_the_low_bits() {
    use uapi::upstream as up;
    assert_eq!(up::GUNYAH_MEM_FORCE_LEND | up::GUNYAH_MEM_ALLOW_RWX, 0x71);
    assert_eq!(up::GUNYAH_MEM_FORCE_SHARE | up::GUNYAH_MEM_ALLOW_RWX, 0x72);
    assert_eq!(up::GUNYAH_MEM_UNMAP, GUNYAH_MEM_UNMAP);
    assert_eq!(up::GUNYAH_MEM_ALLOW_RWX & up::GUNYAH_MEM_ACCESS_MASK, 0);
}
