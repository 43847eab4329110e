/* VM requests without running a guest (GUNYAH-USERSPACE §1.4-1.5 vm.rs;
 * SPEC §2.5-2.7, B-VM-4..6). Flags in the upstream encoding TV sends:
 * 0x70 DEFAULT|RWX, 0x71 LEND|RWX, 0x72 SHARE|RWX, +0x100 UNMAP. */
#include "check.h"

#define GPA 0x80000000ULL
#define SHARE_RWX 0x72
#define LEND_RWX 0x71
#define UNMAP GUNYAH_MEM_UNMAP

struct vm_env {
	int d, vm, gm;
};

static struct vm_env env(uint64_t size)
{
	struct vm_env e;
	e.d = OK(dev_open(1));
	e.gm = OK(gm_create(e.d, size, 0));
	e.vm = OK(vm_create(e.d));
	return e;
}

/* TV gunyah-bindings map_mem_fd. */
void map_mem_binds_default_access_at_a_page_aligned_address(void)
{
	int d = OK(dev_open(0));
	int gm = OK(gm_create(d, 100 * MiB, 0));
	int d2 = OK(dev_open(0));
	int vm = OK(vm_create(d2));
	OK(map_mem(vm, 0x4000, 0x70, gm, 0, 4 * MiB));
}

/* TV vm::map_memory; each map passes a dup of the file, closed after. */
void map_mem_accepts_a_duplicate_of_the_file_descriptor(void)
{
	struct vm_env e = env(10 * MiB);
	int copy = OK(dup(e.gm));
	OK(map_mem(e.vm, GPA, SHARE_RWX, copy, 0, 10 * MiB));
	OK(close(copy));
}

/* TV vm::unmap_memory_single; SPEC B-RM-2: ENOENT unless exact. */
void unmap_at_the_wrong_address_is_refused(void)
{
	struct vm_env e = env(11 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	FAILS(map_mem(e.vm, 0x70000000, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB), ENOENT);
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB));
}

void unmap_with_lend_for_a_share_binding_is_refused(void)
{
	struct vm_env e = env(11 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	FAILS(map_mem(e.vm, GPA, LEND_RWX | UNMAP, e.gm, 0, 10 * MiB), ENOENT);
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB));
}

void unmap_with_wrong_access_flags_is_refused(void)
{
	struct vm_env e = env(11 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	uint32_t rx = GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_EXEC;
	FAILS(map_mem(e.vm, GPA, rx | UNMAP, e.gm, 0, 10 * MiB), ENOENT);
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB));
}

void unmap_at_the_wrong_file_offset_is_refused(void)
{
	struct vm_env e = env(11 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	FAILS(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 1 * MiB, 10 * MiB), ENOENT);
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB));
	/* Gone: a second unmap finds nothing. */
	FAILS(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 10 * MiB), ENOENT);
}

/* SPEC B-RM-2: DEFAULT and FORCE_LEND are different values for matching. */
void default_access_and_lend_are_different_for_unmap(void)
{
	struct vm_env e = env(4 * MiB);
	OK(map_mem(e.vm, GPA, 0x70, e.gm, 0, 4 * MiB));
	FAILS(map_mem(e.vm, GPA, LEND_RWX | UNMAP, e.gm, 0, 4 * MiB), ENOENT);
	OK(map_mem(e.vm, GPA, 0x70 | UNMAP, e.gm, 0, 4 * MiB));
}

/* TV vm::unmap_memory_single2 (back first) and single3 (front first). */
void unmap_shrinks_a_binding_from_either_end(void)
{
	struct vm_env e = env(10 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	OK(map_mem(e.vm, GPA + 1 * MiB, SHARE_RWX | UNMAP, e.gm, 1 * MiB, 9 * MiB));
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 1 * MiB));
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 1 * MiB));
	OK(map_mem(e.vm, GPA + 1 * MiB, SHARE_RWX | UNMAP, e.gm, 1 * MiB, 9 * MiB));
}

/* TV vm::unmap_memory_single4. */
void unmap_pieces_of_a_binding_that_starts_inside_the_file(void)
{
	struct vm_env e = env(10 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 1 * MiB, 5 * MiB));
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 1 * MiB, 1 * MiB));
	OK(map_mem(e.vm, GPA + 1 * MiB, SHARE_RWX | UNMAP, e.gm, 2 * MiB, 4 * MiB));
}

/* TV vm::unmap_memory_multiple_simple1/2/3. */
void adjacent_bindings_unmap_exactly_in_any_order(void)
{
	struct vm_env e = env(30 * MiB);
	for (int order = 0; order < 3; order++) {
		for (int i = 0; i < 3; i++)
			OK(map_mem(e.vm, GPA + i * 10 * MiB, SHARE_RWX, e.gm, i * 10 * MiB, 10 * MiB));
		/* One request spanning two bindings matches neither. */
		FAILS(map_mem(e.vm, GPA + 5 * MiB, SHARE_RWX | UNMAP, e.gm, 5 * MiB, 10 * MiB), ENOENT);
		for (int k = 0; k < 3; k++) {
			int i = (k + order) % 3;
			OK(map_mem(e.vm, GPA + i * 10 * MiB, SHARE_RWX | UNMAP, e.gm, i * 10 * MiB, 10 * MiB));
		}
	}
}

/* TV vm::unmap_memory_multiple_partial_unmap (ignored by TV: lendvm
 * implements SPEC B-RM-3 case 4, the split). */
void unmapping_the_middle_of_a_binding_splits_it(void)
{
	struct vm_env e = env(10 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	OK(map_mem(e.vm, GPA + 4 * MiB, SHARE_RWX | UNMAP, e.gm, 4 * MiB, 2 * MiB));
	/* Both halves exist and the middle is free to bind again. */
	OK(map_mem(e.vm, GPA + 4 * MiB, SHARE_RWX, e.gm, 4 * MiB, 2 * MiB));
	OK(map_mem(e.vm, GPA + 4 * MiB, SHARE_RWX | UNMAP, e.gm, 4 * MiB, 2 * MiB));
	OK(map_mem(e.vm, GPA, SHARE_RWX | UNMAP, e.gm, 0, 4 * MiB));
	OK(map_mem(e.vm, GPA + 6 * MiB, SHARE_RWX | UNMAP, e.gm, 6 * MiB, 4 * MiB));
}

/* TV vm::map_memory_ioff; SPEC B-ADD-9 (file range) and B-ADD-10. */
void a_file_range_is_bound_only_once_in_any_vm(void)
{
	struct vm_env e = env(20 * MiB);
	int vm2 = OK(vm_create(e.d));
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	FAILS(map_mem(e.vm, GPA + 10 * MiB, SHARE_RWX, e.gm, 0, 10 * MiB), EEXIST);
	FAILS(map_mem(e.vm, GPA, LEND_RWX, e.gm, 0, 10 * MiB), EEXIST);
	FAILS(map_mem(e.vm, GPA + 10 * MiB, LEND_RWX, e.gm, 0, 10 * MiB), EEXIST);
	FAILS(map_mem(vm2, GPA + 10 * MiB, LEND_RWX, e.gm, 0, 10 * MiB), EEXIST);
	OK(map_mem(e.vm, GPA + 10 * MiB, SHARE_RWX, e.gm, 10 * MiB, 10 * MiB));
}

void a_guest_range_is_bound_only_once(void)
{
	struct vm_env e = env(20 * MiB);
	OK(map_mem(e.vm, GPA, SHARE_RWX, e.gm, 0, 10 * MiB));
	FAILS(map_mem(e.vm, GPA + 4 * MiB, SHARE_RWX, e.gm, 10 * MiB, 4 * MiB), EEXIST);
}

/* SPEC B-ADD-2/3: the descriptor inside MAP_MEM. */
void map_mem_with_a_closed_descriptor_is_ebadf(void)
{
	struct vm_env e = env(MiB);
	int copy = OK(dup(e.gm));
	OK(close(copy));
	FAILS(map_mem(e.vm, GPA, SHARE_RWX, copy, 0, MiB), EBADF);
	FAILS(map_mem(e.vm, GPA, SHARE_RWX, -1, 0, MiB), EBADF);
}

void map_mem_with_a_descriptor_that_is_not_guest_memory_is_einval(void)
{
	struct vm_env e = env(MiB);
	int pipefd[2];
	OK(pipe(pipefd));
	FAILS(map_mem(e.vm, GPA, SHARE_RWX, pipefd[0], 0, MiB), EINVAL);
	FAILS(map_mem(e.vm, GPA, SHARE_RWX, e.vm, 0, MiB), EINVAL);
	int memfd = OK(memfd_create("plain", 0));
	OK(ftruncate(memfd, MiB));
	FAILS(map_mem(e.vm, GPA, SHARE_RWX, memfd, 0, MiB), EINVAL);
}

/* SPEC B-ADD-4..8. */
void map_mem_refuses_bad_flags_and_ranges(void)
{
	struct vm_env e = env(4 * MiB);
	FAILS(map_mem(e.vm, GPA, 0x72 | 0x8, e.gm, 0, MiB), EINVAL);   /* unknown bit */
	FAILS(map_mem(e.vm, GPA, 0x02, e.gm, 0, MiB), EINVAL);         /* no RWX */
	FAILS(map_mem(e.vm, GPA, 0x73, e.gm, 0, MiB), EINVAL);         /* access 3 */
	FAILS(map_mem(e.vm, GPA + 1, 0x72, e.gm, 0, MiB), EINVAL);     /* misaligned */
	FAILS(map_mem(e.vm, GPA, 0x72, e.gm, 0, 0), EINVAL);           /* empty */
	FAILS(map_mem(e.vm, GPA, 0x72, e.gm, 2 * MiB, 4 * MiB), EINVAL); /* past EOF */
	OK(map_mem(e.vm, GPA, 0x72, e.gm, 0, 4 * MiB));
}

/* LENDVM_GUNYAH_ABI=android: seed 004's encoding (R/W/X 1/2/4,
 * LEND 0x10, SHARE 0x20); run with that variable set. */
void android_encoding_is_used_when_selected(void)
{
	CHECK(getenv("LENDVM_GUNYAH_ABI") != NULL);
	struct vm_env e = env(4 * MiB);
	/* Upstream's DEFAULT|RWX is access value 0x70 here: invalid. */
	FAILS(map_mem(e.vm, GPA, 0x70, e.gm, 0, MiB), EINVAL);
	OK(map_mem(e.vm, GPA, 0x27, e.gm, 0, MiB));            /* share RWX */
	FAILS(map_mem(e.vm, GPA, 0x127 & ~0x4, e.gm, 0, MiB), ENOENT);
	OK(map_mem(e.vm, GPA, 0x127, e.gm, 0, MiB));
	OK(map_mem(e.vm, GPA, 0x17, e.gm, MiB, MiB));          /* lend RWX */
}

/* TV set_dtb_config (both suites); SPEC B-VM-4. */
void set_dtb_config_records_a_location(void)
{
	int d = OK(dev_open(0));
	int vm = OK(vm_create(d));
	OK(dtb_config(vm, 0, 4096));
	OK(dtb_config(vm, 0, 1 * MiB));
	FAILS(dtb_config(vm, UINT64_MAX - 10, 4096), EOVERFLOW);
}

/* TV vm::set_boot_context and gunyah-bindings set_boot_context;
 * SPEC B-VM-6 in the aarch64 namespace (DESIGN D13). */
void boot_context_takes_x0_to_x31_pc0_and_sp0_sp1(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	for (uint32_t i = 0; i < 32; i++)
		OK(boot_reg(vm, REG_SET_X, i, 0xd00d));
	OK(boot_reg(vm, REG_SET_X, 0, UINT64_MAX));
	FAILS(boot_reg(vm, REG_SET_X, 32, 0xd00d), EINVAL);
	OK(boot_reg(vm, REG_SET_PC, 0, 0x80000000));
	FAILS(boot_reg(vm, REG_SET_PC, 1, 0x80000000), EINVAL);
	OK(boot_reg(vm, REG_SET_SP, 0, 0x80004000));
	OK(boot_reg(vm, REG_SET_SP, 1, 0x80004000));
	FAILS(boot_reg(vm, REG_SET_SP, 2, 0x80004000), EINVAL);
	FAILS(boot_reg(vm, 3, 0, 0), EINVAL);
	struct gunyah_vm_boot_context c = { .reg = 0, .reserved = 1 };
	FAILS(ioctl(vm, GUNYAH_VM_SET_BOOT_CONTEXT, &c), EINVAL);
}

/* SPEC B-VM-6: only before START, for every register. */
void boot_context_after_start_is_invalid(void)
{
	struct cell c;
	cell_setup(&c, LEND_RWX);
	OK(ioctl(c.vm, GUNYAH_VM_START));
	FAILS(boot_reg(c.vm, REG_SET_X, 1, 1), EINVAL);
	FAILS(boot_reg(c.vm, REG_SET_X, 20, 1), EINVAL);
	FAILS(boot_reg(c.vm, REG_SET_PC, 0, 1), EINVAL);
	FAILS(dtb_config(c.vm, 0x80000000, 4096), EBUSY);
}

/* Android requests of seed 004 (SPEC B-VM-5, B-VM-7). */
void android_user_memory_regions_and_firmware_config_are_served(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	size_t len = 64 * KiB;
	uint8_t *share = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *lend = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(share != MAP_FAILED && lend != MAP_FAILED);
	lend[0] = 1;
	struct gunyah_userspace_memory_region r = {
		.label = 1, .flags = 0x7, .guest_phys_addr = 0x90000000, .memory_size = len,
		.userspace_addr = (uint64_t)(uintptr_t)share,
	};
	OK(ioctl(vm, GH_VM_SET_USER_MEM_REGION, &r));
	FAILS(ioctl(vm, GH_VM_SET_USER_MEM_REGION, &r), EEXIST);
	r.label = 2;
	r.guest_phys_addr = 0x90100000;
	r.userspace_addr = (uint64_t)(uintptr_t)lend;
	OK(ioctl(vm, GH_VM_ANDROID_LEND_USER_MEM, &r));
	/* Lent: the host lost access. */
	CHECK(read_faults(lend));
	CHECK(!read_faults(share));
	r.label = 3;
	r.flags = 0x8;
	FAILS(ioctl(vm, GH_VM_SET_USER_MEM_REGION, &r), EINVAL);
	struct gunyah_vm_firmware_config fw = { .guest_phys_addr = 0x90200000, .size = 4096 };
	OK(ioctl(vm, GH_VM_ANDROID_SET_FW_CONFIG, &fw));
}
