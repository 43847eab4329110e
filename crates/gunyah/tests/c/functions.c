/* VM functions: vCPUs, irqfds, ioeventfds (GUNYAH-USERSPACE §1.3-1.5;
 * SPEC §2.11). */

#include "check.h"

#include <sys/eventfd.h>

/* TV vm::add_vcpu (and gunyah-bindings add_vcpu); SPEC F-2, F-3. */
void vcpu_ids_are_unique_and_remove_needs_an_existing_id(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int v0 = OK(vcpu_add(vm, 0));
	CHECK(cloexec_of(v0));
	FAILS(vcpu_add(vm, 0), EEXIST);
	OK(vcpu_add(vm, 1));
	OK(vcpu_add(vm, 2));
	OK(vcpu_remove(vm, 0));
	FAILS(vcpu_remove(vm, 0), ENOENT);
	FAILS(vcpu_remove(vm, 500), ENOENT);
	OK(vcpu_remove(vm, 1));
	OK(vcpu_remove(vm, 2));
}

/* TV gunyah-bindings vcpu_mmap and vcpu::mmap; SPEC F-4, R-1. */
void the_run_page_is_a_page_that_starts_with_exit_unknown(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int vcpu = OK(vcpu_add(vm, 0));
	long size = OK(ioctl(vcpu, GUNYAH_VCPU_MMAP_SIZE));
	CHECK(size >= (long)sizeof(struct gunyah_vcpu_run) && size == 4096);
	struct gunyah_vcpu_run *run =
		mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	CHECK(run != MAP_FAILED);
	CHECK(run->exit_reason == GUNYAH_VCPU_EXIT_UNKNOWN);
	CHECK(run->immediate_exit == 0);
}

/* TV vcpu::create_vcpu and vcpu::drops: REMOVE with the descriptor still
 * open and mapped, then the same id again. */
void a_removed_vcpu_id_can_be_added_again(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	for (int round = 0; round < 2; round++) {
		for (uint32_t id = 0; id < 8; id++) {
			int vm_dup = OK(dup(vm));
			int vcpu = OK(vcpu_add(vm_dup, id));
			long size = OK(ioctl(vcpu, GUNYAH_VCPU_MMAP_SIZE));
			void *page = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
			CHECK(page != MAP_FAILED);
			OK(vcpu_remove(vm, id));
			OK(fcntl(vm_dup, F_GETFD));
			OK(close(vm_dup));
			OK(fcntl(vcpu, F_GETFD));
			OK(close(vcpu));
			OK(munmap(page, (size_t)size));
		}
	}
}

/* SPEC R-2. */
void vcpu_run_before_start_or_after_remove_is_enodev(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	FAILS(ioctl(c.vcpu, GUNYAH_VCPU_RUN), ENODEV);
	OK(vcpu_remove(c.vm, 0));
	OK(ioctl(c.vm, GUNYAH_VM_START));
	FAILS(ioctl(c.vcpu, GUNYAH_VCPU_RUN), ENODEV);
}

/* SPEC F-1. */
void functions_of_unknown_type_or_oversized_arguments_are_refused(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	uint8_t big[512] = { 0 };
	struct gunyah_fn_desc desc = { .type = 9, .arg_size = 4, .arg = (uint64_t)(uintptr_t)big };
	FAILS(ioctl(vm, GUNYAH_VM_ADD_FUNCTION, &desc), ENOENT);
	desc.type = GUNYAH_FN_VCPU;
	desc.arg_size = 257;
	FAILS(ioctl(vm, GUNYAH_VM_ADD_FUNCTION, &desc), EINVAL);
	desc.arg_size = 8;
	FAILS(ioctl(vm, GUNYAH_VM_ADD_FUNCTION, &desc), EINVAL);
}

/* TV gunyah-bindings irqfd, irqfd::create_edge/create_level. */
void irqfd_add_returns_zero_and_remove_undoes_it(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int e = OK(eventfd(0, 0));
	CHECK(irqfd_add(vm, e, 0, 0) == 0);
	OK(irqfd_remove(vm, e, 0, 0));
	int l = OK(eventfd(0, 0));
	CHECK(irqfd_add(vm, l, 1, GUNYAH_IRQFD_FLAGS_LEVEL) == 0);
	OK(irqfd_remove(vm, l, 1, GUNYAH_IRQFD_FLAGS_LEVEL));
	FAILS(irqfd_remove(vm, l, 1, GUNYAH_IRQFD_FLAGS_LEVEL), ENOENT);
}

/* TV irqfd::create_many; SPEC F-5. */
void an_irqfd_label_is_taken_only_once(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	for (uint32_t label = 0; label < 4; label++) {
		int vm_dup = OK(dup(vm));
		CHECK(irqfd_add(vm_dup, OK(eventfd(0, 0)), label, 0) == 0);
	}
	FAILS(irqfd_add(vm, OK(eventfd(0, 0)), 0, 0), EEXIST);
	FAILS(irqfd_add(vm, OK(eventfd(0, 0)), 0, GUNYAH_IRQFD_FLAGS_LEVEL), EEXIST);
}

/* SPEC F-5. */
void irqfd_needs_an_open_eventfd_and_known_flags(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	FAILS(irqfd_add(vm, 900, 0, 0), EBADF);
	FAILS(irqfd_add(vm, d, 0, 0), EINVAL);
	FAILS(irqfd_add(vm, OK(eventfd(0, 0)), 0, 0x2), EINVAL);
}

/* TV gunyah-bindings ioeventfd, ioeventfd::create/create_datamatch. */
void ioeventfd_add_returns_zero_and_remove_undoes_it(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int e = OK(eventfd(0, 0));
	CHECK(ioeventfd_add(vm, e, 0xdead0000, 8, 0, 0) == 0);
	OK(ioeventfd_remove(vm, e, 0xdead0000, 8, 0, 0));
	CHECK(ioeventfd_add(vm, e, 0x8000, 4, 0, 0) == 0);
	CHECK(ioeventfd_add(vm, OK(eventfd(0, 0)), 0x9000, 4, 1, 1) == 0);
	OK(ioeventfd_remove(vm, e, 0x9000, 4, 1, 1));
	FAILS(ioeventfd_remove(vm, e, 0x9000, 4, 1, 1), ENOENT);
}

/* TV ioeventfd::create_many; SPEC F-6. */
void ioeventfds_at_one_address_conflict(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	uint64_t addrs[] = { 0x8000, 0x8008, 0x800a, 0x100 };
	for (int i = 0; i < 4; i++)
		CHECK(ioeventfd_add(vm, OK(eventfd(0, 0)), addrs[i], 8, 0, 0) == 0);
	FAILS(ioeventfd_add(vm, OK(eventfd(0, 0)), 0x8000, 4, 0, 0), EEXIST);
	FAILS(ioeventfd_add(vm, OK(eventfd(0, 0)), 0x8000, 8, 0, 0), EEXIST);
	/* Several datamatch values at one fresh address are fine. */
	for (uint64_t v = 1; v <= 3; v++)
		CHECK(ioeventfd_add(vm, OK(eventfd(0, 0)), 0x9000, 4, 1, v) == 0);
}

/* TV ioeventfd::drops. */
void an_ioeventfd_can_be_added_again_after_removal(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int e = OK(eventfd(0, 0));
	CHECK(ioeventfd_add(vm, e, 0x8000, 4, 0, 0) == 0);
	OK(ioeventfd_remove(vm, e, 0x8000, 4, 0, 0));
	CHECK(ioeventfd_add(vm, e, 0x8000, 4, 0, 0) == 0);
}
