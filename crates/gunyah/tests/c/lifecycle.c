/* START and object lifetimes (GUNYAH-USERSPACE §1.6-1.7, §3.3; SPEC
 * B-VM-3, B-VM-8, B-VM-9, GM-MM-6; DESIGN D13). */

#include "check.h"

#include <sys/eventfd.h>

#define GPA 0x80000000ULL

/* TV misc.rs setup, steps 1-7, with `flags` for the binding. */
struct misc {
	int vm, vm_dup1, vm_dup2, gm_dup, vcpu;
	void *run;
	long run_size;
};

static void misc_setup(struct misc *m, uint32_t flags)
{
	int d = OK(dev_open(1));
	m->vm = OK(vm_create(d));
	OK(close(d)); /* the VM outlives the device descriptor */
	d = OK(dev_open(1));
	int gm = OK(gm_create(d, 16 * KiB, 0));
	OK(close(d));
	m->gm_dup = OK(dup(gm));
	OK(map_mem(m->vm, GPA, flags, m->gm_dup, 0, 16 * KiB));
	m->vm_dup1 = OK(dup(m->vm));
	m->vm_dup2 = OK(dup(m->vm));
	OK(close(gm));
	m->vcpu = OK(vcpu_add(m->vm_dup1, 0));
	m->run_size = OK(ioctl(m->vcpu, GUNYAH_VCPU_MMAP_SIZE));
	m->run = mmap(NULL, (size_t)m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	CHECK(m->run != MAP_FAILED);
	static const uint8_t dtb[0x4c4] = { 0xd0, 0x0d, 0xfe, 0xed };
	gm_write(m->gm_dup, 0, dtb, sizeof(dtb));
	OK(dtb_config(m->vm, GPA, 4096));
}

/* TV's teardown order for misc.rs. */
static void misc_teardown(struct misc *m)
{
	OK(close(m->vm));
	/* REMOVE on a dup after the first VM descriptor was closed. */
	OK(vcpu_remove(m->vm_dup2, 0));
	OK(close(m->vm_dup2));
	OK(close(m->vcpu));
	OK(munmap(m->run, (size_t)m->run_size));
	OK(close(m->gm_dup));
	OK(close(m->vm_dup1));
}

/* TV misc::shared_vm. */
void a_vm_outlives_its_device_and_first_descriptor_and_starts(void)
{
	struct misc m;
	misc_setup(&m, 0x72);
	OK(ioctl(m.vm, GUNYAH_VM_START));
	/* START on a running VM answers 0 (SPEC B-VM-3.1). */
	OK(ioctl(m.vm_dup1, GUNYAH_VM_START));
	misc_teardown(&m);
}

/* TV misc::vm_dtb_no_map; SPEC GM-MM-6, B-VM-3.4: EBUSY. */
void start_fails_while_the_program_maps_lent_dtb_pages(void)
{
	struct misc m;
	misc_setup(&m, 0x71);
	void *held = mmap(NULL, 16 * KiB, PROT_READ, MAP_SHARED, m.gm_dup, 0);
	CHECK(held != MAP_FAILED);
	FAILS(ioctl(m.vm, GUNYAH_VM_START), EBUSY);
	OK(munmap(held, 16 * KiB));
	/* SPEC B-VM-3.3: a failed START leaves the VM unusable. */
	FAILS(ioctl(m.vm, GUNYAH_VM_START), ENODEV);
	misc_teardown(&m);
}

/* TV holding-cell new_holding_cell and starts: the host writes into a
 * lend binding before START. */
void a_lend_binding_written_by_the_host_starts(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	OK(ioctl(c.vm, GUNYAH_VM_START));
}

/* The bad_dtb_* setup: a second 16 KiB lend binding at `gpa` with
 * `flags`, holding the DTB. */
static int dtb_elsewhere(uint64_t gpa, uint32_t flags)
{
	struct cell c;
	cell_setup(&c, 0x71);
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 16 * KiB, 0));
	OK(map_mem(c.vm, gpa, flags, gm, 0, 16 * KiB));
	static const uint8_t dtb[16 * KiB] = { 0xd0, 0x0d, 0xfe, 0xed };
	gm_write(gm, 0, dtb, sizeof(dtb));
	OK(dtb_config(c.vm, gpa, 16 * KiB));
	return ioctl(c.vm, GUNYAH_VM_START);
}

/* TV holding-cell bad_dtb_access (lend Rw, 0x31); DESIGN D13. */
void start_refuses_a_dtb_binding_without_execute(void)
{
	FAILS(dtb_elsewhere(0xa0000000, 0x31), EINVAL);
	/* Share bindings too: the resource manager needs X for the DTB. */
	FAILS(dtb_elsewhere(0xa0000000, 0x32), EINVAL);
	OK(dtb_elsewhere(0xa0000000, 0x71));
}

/* TV holding-cell bad_dtb_addr, here with full access so that only the
 * platform rule can refuse it; DESIGN D13. */
void start_refuses_a_dtb_in_the_platform_mmio_range(void)
{
	FAILS(dtb_elsewhere(0x00080000, 0x71), EINVAL);
	FAILS(dtb_elsewhere(0x00080000, 0x31), EINVAL);
}

/* SPEC B-VM-3.2. */
void start_needs_a_dtb_inside_a_binding(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	FAILS(ioctl(vm, GUNYAH_VM_START), EINVAL);
	int vm2 = OK(vm_create(d));
	OK(dtb_config(vm2, 0x90000000, 4096));
	FAILS(ioctl(vm2, GUNYAH_VM_START), ENOENT);
}

/* Whether `gm`'s range [0, 16 KiB) can be bound into a fresh VM now:
 * B-ADD-9 makes it EEXIST while another VM still holds it. */
static int range_is_free(int gm)
{
	int d = OK(dev_open(1));
	int probe = OK(vm_create(d));
	int r = map_mem(probe, GPA, 0x72, gm, 0, 16 * KiB);
	int err = errno;
	if (r == 0)
		OK(map_mem(probe, GPA, 0x172, gm, 0, 16 * KiB));
	OK(close(probe));
	OK(close(d));
	CHECK(r == 0 || err == EEXIST);
	return r == 0;
}

/* GUNYAH-USERSPACE §3.3; SPEC B-VM-8/9: a VM lives while any descriptor
 * of it or of one of its vCPUs is open, and its bindings go with it. */
void a_vm_is_released_when_its_last_descriptor_closes(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 16 * KiB, 0));
	int vm = OK(vm_create(d));
	OK(map_mem(vm, GPA, 0x72, gm, 0, 16 * KiB));
	int copy = OK(dup(vm));
	int vcpu = OK(vcpu_add(vm, 0));
	OK(close(vm));
	CHECK(!range_is_free(gm));
	OK(close(copy));
	CHECK(!range_is_free(gm)); /* the vCPU holds the VM */
	OK(close(vcpu));
	CHECK(range_is_free(gm));
}

/* The same through dup2 over the last descriptor and close_range. */
void dup2_and_close_range_release_objects_too(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 16 * KiB, 0));
	int vm = OK(vm_create(d));
	OK(map_mem(vm, GPA, 0x72, gm, 0, 16 * KiB));
	int other = OK(eventfd(0, 0));
	OK(dup2(other, vm));
	CHECK(range_is_free(gm));
	int first = OK(vm_create(d));
	int vm2 = OK(fcntl(first, F_DUPFD, 200));
	OK(close(first));
	OK(map_mem(vm2, GPA, 0x72, gm, 0, 16 * KiB));
	CHECK(!range_is_free(gm));
	OK(close_range(200, 300, 0));
	CHECK(range_is_free(gm));
}

/* SPEC GM-LT-1: a bound file lives on without descriptors: START hands
 * its DTB page over after the program closed every descriptor of it. */
void a_bound_file_outlives_its_descriptors(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	OK(close(c.gm));
	OK(ioctl(c.vm, GUNYAH_VM_START));
	OK(close(c.vcpu));
	OK(close(c.vm));
}
