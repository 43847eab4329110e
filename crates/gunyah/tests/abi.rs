//! The Gunyah ioctl ABI under `liblendvm_gunyah.so`: one test per case of
//! the C program in `tests/c` (each case says which GUNYAH-USERSPACE.md
//! sequence and SPEC rule it checks, and asserts the SPEC's errno where
//! one is named). Together they cover every call sequence and expectation
//! of GUNYAH-USERSPACE.md §1.3–1.7.

mod common;

/// A test per case, run as a child process, and the list of all of them.
macro_rules! cases {
    ($($name:ident $(with $var:literal = $value:literal)?;)*) => {
        $(
            #[test]
            fn $name() {
                common::case(stringify!($name), &[$(($var, $value))?]);
            }
        )*
        const ALL: &[&str] = &[$(stringify!($name)),*];
    };
}

cases! {
    // /dev/gunyah and what it creates (device.c).
    opening_dev_gunyah_sets_cloexec_only_when_asked;
    stat_and_access_see_a_character_device;
    create_vm_returns_a_close_on_exec_descriptor;
    create_vm_with_a_nonzero_type_is_invalid;
    create_guest_mem_sets_cloexec_only_with_ghmf_cloexec;
    create_guest_mem_with_unknown_flags_is_invalid;
    create_guest_mem_with_a_size_that_is_not_whole_pages_is_invalid;
    create_guest_mem_with_reserved_words_set_is_invalid;
    an_unreadable_argument_is_efault;
    unknown_requests_on_gunyah_descriptors_are_enotty;
    every_object_has_an_inode_of_its_own_that_dups_share;
    device_and_vm_descriptors_cannot_be_mapped;
    // Guest memory files (guest_mem.c).
    fallocate_needs_whole_pages_inside_the_file;
    fallocate_without_keep_size_is_not_supported;
    a_guest_memory_file_grows_and_shrinks;
    punch_hole_succeeds_past_the_end_and_on_unallocated_pages;
    punched_pages_read_zero;
    a_size_change_is_seen_through_a_dup;
    a_new_guest_memory_file_reads_zeros_through_a_mapping;
    private_mappings_of_guest_memory_are_invalid;
    shrinking_a_file_below_a_binding_is_busy;
    punching_pages_lent_to_a_started_vm_is_busy;
    // MAP_MEM, boot context, DTB, Android requests (vm.c).
    map_mem_binds_default_access_at_a_page_aligned_address;
    map_mem_accepts_a_duplicate_of_the_file_descriptor;
    unmap_at_the_wrong_address_is_refused;
    unmap_with_lend_for_a_share_binding_is_refused;
    unmap_with_wrong_access_flags_is_refused;
    unmap_at_the_wrong_file_offset_is_refused;
    default_access_and_lend_are_different_for_unmap;
    unmap_shrinks_a_binding_from_either_end;
    unmap_pieces_of_a_binding_that_starts_inside_the_file;
    adjacent_bindings_unmap_exactly_in_any_order;
    unmapping_the_middle_of_a_binding_splits_it;
    a_file_range_is_bound_only_once_in_any_vm;
    a_guest_range_is_bound_only_once;
    map_mem_with_a_closed_descriptor_is_ebadf;
    map_mem_with_a_descriptor_that_is_not_guest_memory_is_einval;
    map_mem_refuses_bad_flags_and_ranges;
    android_encoding_is_used_when_selected with "LENDVM_GUNYAH_ABI" = "android";
    set_dtb_config_records_a_location;
    boot_context_takes_x0_to_x31_pc0_and_sp0_sp1;
    boot_context_after_start_is_invalid;
    android_user_memory_regions_and_firmware_config_are_served;
    // Functions (functions.c).
    vcpu_ids_are_unique_and_remove_needs_an_existing_id;
    the_run_page_is_a_page_that_starts_with_exit_unknown;
    a_removed_vcpu_id_can_be_added_again;
    vcpu_run_before_start_or_after_remove_is_enodev;
    functions_of_unknown_type_or_oversized_arguments_are_refused;
    irqfd_add_returns_zero_and_remove_undoes_it;
    an_irqfd_label_is_taken_only_once;
    irqfd_needs_an_open_eventfd_and_known_flags;
    ioeventfd_add_returns_zero_and_remove_undoes_it;
    ioeventfds_at_one_address_conflict;
    an_ioeventfd_can_be_added_again_after_removal;
    // START and lifetimes (lifecycle.c).
    a_vm_outlives_its_device_and_first_descriptor_and_starts;
    start_fails_while_the_program_maps_lent_dtb_pages;
    a_lend_binding_written_by_the_host_starts;
    start_refuses_a_dtb_binding_without_execute;
    start_refuses_a_dtb_in_the_platform_mmio_range;
    start_needs_a_dtb_inside_a_binding;
    a_vm_is_released_when_its_last_descriptor_closes;
    dup2_and_close_range_release_objects_too;
    a_bound_file_outlives_its_descriptors;
    // VCPU_RUN with lendvm's hello guest (run.c).
    the_hello_guest_runs_to_its_exit_through_the_run_page;
    an_unbound_access_in_the_platform_window_is_an_mmio_exit;
    a_program_mapping_keeps_pages_from_the_guest_until_retry;
    lent_pages_are_hidden_from_a_program_mapping_until_unmap;
    immediate_exit_makes_vcpu_run_return_eintr;
    a_signal_to_a_running_vcpu_thread_ends_vcpu_run_with_eintr;
    // The program's mappings of guest memory (mappings.c).
    a_partly_unmapped_mapping_still_blocks_the_pages_it_keeps;
    unmapping_the_dtb_page_out_of_a_mapping_lets_start_take_it;
    a_mapping_grown_by_mremap_covers_its_new_pages;
    a_mapping_replaced_with_map_fixed_is_forgotten;
    mprotect_of_a_mapping_keeps_lent_pages_hidden;
    a_mapping_replaced_by_mremap_fixed_is_forgotten;
}

/// Every case of the C program runs as a test here, and only those.
#[test]
fn every_case_of_the_c_program_is_a_test() {
    let out = std::process::Command::new(common::cases_program())
        .arg("--list")
        .output()
        .expect("the case program runs");
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(listed, ALL);
}

/// The guest's console reaches the program's output.
#[test]
fn the_hello_guest_prints_on_the_programs_console() {
    let Some(out) = common::case("the_hello_guest_runs_to_its_exit_through_the_run_page", &[])
    else {
        return;
    };
    assert!(
        out.contains("hello from lendvm guest vCPU 0\n")
            && out.contains("1 MiB of RAM at 0x400000: ok\n"),
        "{out}"
    );
}

/// Without the library there is no /dev/gunyah: the cases test the
/// library, not the host.
#[test]
fn without_the_library_the_cases_fail() {
    if testkit::kvm().is_none() {
        return;
    }
    let out = std::process::Command::new(common::cases_program())
        .arg("create_vm_returns_a_close_on_exec_descriptor")
        .output()
        .expect("the case program runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAIL"));
}
