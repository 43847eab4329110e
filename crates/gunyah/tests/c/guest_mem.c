/* Guest memory files (GUNYAH-USERSPACE §1.5 guest_mem.rs; SPEC §2.1-2.3). */
#include "check.h"

#include <sys/stat.h>

#define KEEP FALLOC_FL_KEEP_SIZE
#define PUNCH (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)

static off_t size_of_file(int fd)
{
	struct stat st;
	OK(fstat(fd, &st));
	return st.st_size;
}

/* TV guest_mem::fallocate; SPEC GM-FA-3. */
void fallocate_needs_whole_pages_inside_the_file(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 4 * MiB, 0));
	OK(fallocate(gm, KEEP, 0, 4 * MiB));
	FAILS(fallocate(gm, KEEP, 0, 1), EINVAL);
	FAILS(fallocate(gm, KEEP, 1, 4 * MiB), EINVAL);
	FAILS(fallocate(gm, KEEP, 1, 10 * MiB), EINVAL);
	OK(fallocate(gm, KEEP, 0, 1 * MiB));
	OK(fallocate(gm, KEEP, 2 * MiB, 1 * MiB));
	/* SPEC GM-FA-4: not past the end. */
	FAILS(fallocate(gm, KEEP, 4 * MiB, 4 * KiB), EINVAL);
	FAILS(fallocate64(gm, KEEP, 3 * MiB, 2 * MiB), EINVAL);
}

/* SPEC GM-FA-1/2. */
void fallocate_without_keep_size_is_not_supported(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, MiB, 0));
	FAILS(fallocate(gm, 0, 0, 4 * KiB), EOPNOTSUPP);
	FAILS(fallocate(gm, FALLOC_FL_ZERO_RANGE | KEEP, 0, 4 * KiB), EOPNOTSUPP);
	CHECK(size_of_file(gm) == (off_t)MiB);
}

/* TV guest_mem::setlen; DESIGN D13 resizable files. */
void a_guest_memory_file_grows_and_shrinks(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 4 * MiB, 0));
	OK(ftruncate(gm, 100 * MiB));
	CHECK(size_of_file(gm) == (off_t)(100 * MiB));
	OK(ftruncate64(gm, 50 * MiB));
	OK(fallocate(gm, KEEP, 49 * MiB, 1 * MiB));
	FAILS(fallocate(gm, KEEP, 50 * MiB, 1 * MiB), EINVAL);
	OK(ftruncate(gm, 10 * MiB));
	CHECK(size_of_file(gm) == (off_t)(10 * MiB));
	FAILS(ftruncate(gm, -1), EINVAL);
	/* Past lendvm's capacity for one file: the kernel's "file too large". */
	FAILS(ftruncate(gm, (off_t)(1ULL << 40)), EFBIG);
}

/* TV guest_mem::punch_hole; SPEC GM-FA-5. */
void punch_hole_succeeds_past_the_end_and_on_unallocated_pages(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 4 * MiB, 0));
	OK(fallocate(gm, PUNCH, 1 * MiB, 1 * MiB));
	OK(fallocate(gm, PUNCH, 0, 1 * MiB));
	OK(ftruncate(gm, 4 * MiB));
	OK(fallocate(gm, PUNCH, 5 * MiB, 1 * MiB));
	OK(fallocate(gm, KEEP, 0, 4 * MiB));
	OK(fallocate(gm, PUNCH, 1 * MiB, 1 * MiB));
}

/* SPEC GM-FA-6: punched pages read zero. */
void punched_pages_read_zero(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 64 * KiB, 0));
	uint8_t *p = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, gm, 0);
	CHECK(p != MAP_FAILED);
	memset(p, 0xab, 64 * KiB);
	OK(fallocate(gm, PUNCH, 16 * KiB, 16 * KiB));
	CHECK(p[16 * KiB] == 0 && p[32 * KiB - 1] == 0);
	CHECK(p[16 * KiB - 1] == 0xab && p[32 * KiB] == 0xab);
	OK(munmap(p, 64 * KiB));
}

/* TV guest_mem::dup: the size change is seen through a dup. */
void a_size_change_is_seen_through_a_dup(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 4 * KiB, 0));
	int copy = OK(dup(gm));
	FAILS(fallocate(gm, KEEP, 0, 1 * MiB), EINVAL);
	FAILS(fallocate(copy, KEEP, 0, 1 * MiB), EINVAL);
	OK(ftruncate(gm, 1 * MiB));
	OK(fallocate(copy, KEEP, 0, 1 * MiB));
	CHECK(size_of_file(copy) == (off_t)MiB);
}

/* TV guest_mem::mmap. */
void a_new_guest_memory_file_reads_zeros_through_a_mapping(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, 4 * KiB, 0));
	struct statx sx;
	OK(statx(gm, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
	CHECK(sx.stx_size == 4 * KiB);
	uint8_t *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, gm, 0);
	CHECK(p != MAP_FAILED);
	for (int i = 0; i < 4096; i++)
		CHECK(p[i] == 0);
	OK(munmap(p, 4096));
}

/* SPEC GM-MM-1. */
void private_mappings_of_guest_memory_are_invalid(void)
{
	int d = OK(dev_open(1));
	int gm = OK(gm_create(d, MiB, 0));
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, gm, 0) == MAP_FAILED && errno == EINVAL);
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, gm, 1) == MAP_FAILED && errno == EINVAL);
}

/* SPEC GM-7: never below a bound range's end. */
void shrinking_a_file_below_a_binding_is_busy(void)
{
	int d = OK(dev_open(1));
	int vm = OK(vm_create(d));
	int gm = OK(gm_create(d, 8 * MiB, 0));
	OK(map_mem(vm, 0x80000000, 0x72, gm, 2 * MiB, 2 * MiB));
	FAILS(ftruncate(gm, 4 * MiB - 4 * KiB), EBUSY);
	CHECK(size_of_file(gm) == (off_t)(8 * MiB));
	OK(ftruncate(gm, 4 * MiB));
	OK(map_mem(vm, 0x80000000, 0x172, gm, 2 * MiB, 2 * MiB));
	OK(ftruncate(gm, 4 * KiB));
}

/* DESIGN D10 / SPEC GM-FA-7: lent pages the guest holds cannot be freed. */
void punching_pages_lent_to_a_started_vm_is_busy(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	OK(ioctl(c.vm, GUNYAH_VM_START));
	/* START handed the DTB page over: it is lent now. */
	FAILS(fallocate(c.gm, PUNCH, 0x2000, 4 * KiB), EBUSY);
	/* Pages the guest never touched are still the host's. */
	OK(fallocate(c.gm, PUNCH, 0x3000, 4 * KiB));
}
