/* Runs one case by name: `gunyah-cases <case> [argument]`. */
#include "check.h"

#define CASES(X)                                                             \
	X(opening_dev_gunyah_sets_cloexec_only_when_asked)                   \
	X(stat_and_access_see_a_character_device)                            \
	X(create_vm_returns_a_close_on_exec_descriptor)                      \
	X(create_vm_with_a_nonzero_type_is_invalid)                          \
	X(create_guest_mem_sets_cloexec_only_with_ghmf_cloexec)              \
	X(create_guest_mem_with_unknown_flags_is_invalid)                    \
	X(create_guest_mem_with_a_size_that_is_not_whole_pages_is_invalid)   \
	X(create_guest_mem_with_reserved_words_set_is_invalid)               \
	X(an_unreadable_argument_is_efault)                                  \
	X(unknown_requests_on_gunyah_descriptors_are_enotty)                 \
	X(every_object_has_an_inode_of_its_own_that_dups_share)              \
	X(device_and_vm_descriptors_cannot_be_mapped)                        \
	X(fallocate_needs_whole_pages_inside_the_file)                       \
	X(fallocate_without_keep_size_is_not_supported)                      \
	X(a_guest_memory_file_grows_and_shrinks)                             \
	X(punch_hole_succeeds_past_the_end_and_on_unallocated_pages)         \
	X(punched_pages_read_zero)                                           \
	X(a_size_change_is_seen_through_a_dup)                               \
	X(a_new_guest_memory_file_reads_zeros_through_a_mapping)             \
	X(private_mappings_of_guest_memory_are_invalid)                      \
	X(shrinking_a_file_below_a_binding_is_busy)                          \
	X(punching_pages_lent_to_a_started_vm_is_busy)                       \
	X(map_mem_binds_default_access_at_a_page_aligned_address)            \
	X(map_mem_accepts_a_duplicate_of_the_file_descriptor)                \
	X(unmap_at_the_wrong_address_is_refused)                             \
	X(unmap_with_lend_for_a_share_binding_is_refused)                    \
	X(unmap_with_wrong_access_flags_is_refused)                          \
	X(unmap_at_the_wrong_file_offset_is_refused)                         \
	X(default_access_and_lend_are_different_for_unmap)                   \
	X(unmap_shrinks_a_binding_from_either_end)                           \
	X(unmap_pieces_of_a_binding_that_starts_inside_the_file)             \
	X(adjacent_bindings_unmap_exactly_in_any_order)                      \
	X(unmapping_the_middle_of_a_binding_splits_it)                       \
	X(a_file_range_is_bound_only_once_in_any_vm)                         \
	X(a_guest_range_is_bound_only_once)                                  \
	X(map_mem_with_a_closed_descriptor_is_ebadf)                         \
	X(map_mem_with_a_descriptor_that_is_not_guest_memory_is_einval)      \
	X(map_mem_refuses_bad_flags_and_ranges)                              \
	X(android_encoding_is_used_when_selected)                            \
	X(set_dtb_config_records_a_location)                                 \
	X(boot_context_takes_x0_to_x31_pc0_and_sp0_sp1)                      \
	X(boot_context_after_start_is_invalid)                               \
	X(android_user_memory_regions_and_firmware_config_are_served)        \
	X(vcpu_ids_are_unique_and_remove_needs_an_existing_id)               \
	X(the_run_page_is_a_page_that_starts_with_exit_unknown)              \
	X(a_removed_vcpu_id_can_be_added_again)                              \
	X(vcpu_run_before_start_or_after_remove_is_enodev)                   \
	X(functions_of_unknown_type_or_oversized_arguments_are_refused)      \
	X(irqfd_add_returns_zero_and_remove_undoes_it)                       \
	X(an_irqfd_label_is_taken_only_once)                                 \
	X(irqfd_needs_an_open_eventfd_and_known_flags)                       \
	X(ioeventfd_add_returns_zero_and_remove_undoes_it)                   \
	X(ioeventfds_at_one_address_conflict)                                \
	X(an_ioeventfd_can_be_added_again_after_removal)                     \
	X(a_vm_outlives_its_device_and_first_descriptor_and_starts)          \
	X(start_fails_while_the_program_maps_lent_dtb_pages)                 \
	X(a_lend_binding_written_by_the_host_starts)                         \
	X(start_refuses_a_dtb_binding_without_execute)                       \
	X(start_refuses_a_dtb_in_the_platform_mmio_range)                    \
	X(start_needs_a_dtb_inside_a_binding)                                \
	X(a_vm_is_released_when_its_last_descriptor_closes)                  \
	X(dup2_and_close_range_release_objects_too)                          \
	X(a_bound_file_outlives_its_descriptors)                             \
	X(the_hello_guest_runs_to_its_exit_through_the_run_page)             \
	X(an_unbound_access_in_the_platform_window_is_an_mmio_exit)          \
	X(a_program_mapping_keeps_pages_from_the_guest_until_retry)          \
	X(lent_pages_are_hidden_from_a_program_mapping_until_unmap)          \
	X(immediate_exit_makes_vcpu_run_return_eintr)                        \
	X(a_signal_to_a_running_vcpu_thread_ends_vcpu_run_with_eintr)        \
	X(a_partly_unmapped_mapping_still_blocks_the_pages_it_keeps)         \
	X(unmapping_the_dtb_page_out_of_a_mapping_lets_start_take_it)        \
	X(a_mapping_grown_by_mremap_covers_its_new_pages)                    \
	X(a_mapping_replaced_with_map_fixed_is_forgotten)                    \
	X(mprotect_of_a_mapping_keeps_lent_pages_hidden)                     \
	X(a_mapping_replaced_by_mremap_fixed_is_forgotten)

#define DECLARE(name) void name(void);
CASES(DECLARE)

struct entry {
	const char *name;
	void (*run)(void);
};

#define ENTRY(name) { #name, name },
static const struct entry cases[] = { CASES(ENTRY) };

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <case> [argument] | --list\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[1], "--list") == 0) {
			printf("%s\n", cases[i].name);
			continue;
		}
		if (strcmp(argv[1], cases[i].name) == 0) {
			case_arg = argc > 2 ? argv[2] : NULL;
			cases[i].run();
			printf("ok %s\n", cases[i].name);
			return 0;
		}
	}
	if (strcmp(argv[1], "--list") == 0)
		return 0;
	fprintf(stderr, "no case named %s\n", argv[1]);
	return 2;
}
