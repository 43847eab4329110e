/* The program's own mappings of guest memory stay recorded exactly through
 * munmap, mremap, MAP_FIXED and mprotect (DESIGN D13; SPEC GM-MM-6). The
 * holding-cell setup lends [0, 16 KiB) of its file with the DTB page at
 * 0x2000, so START shows whether a mapping still covers that page. */
#include "check.h"

#define SIZE (16 * KiB)
#define DTB_PAGE 0x2000

static uint8_t *map_all(int gm, int prot)
{
	uint8_t *p = mmap(NULL, SIZE, prot, MAP_SHARED, gm, 0);
	CHECK(p != MAP_FAILED);
	return p;
}

void a_partly_unmapped_mapping_still_blocks_the_pages_it_keeps(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	uint8_t *p = map_all(c.gm, PROT_READ);
	OK(munmap(p, 4 * KiB));
	FAILS(ioctl(c.vm, GUNYAH_VM_START), EBUSY);
}

void unmapping_the_dtb_page_out_of_a_mapping_lets_start_take_it(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	uint8_t *p = map_all(c.gm, PROT_READ);
	OK(munmap(p + DTB_PAGE, 4 * KiB));
	OK(ioctl(c.vm, GUNYAH_VM_START));
	/* The pieces on either side are still the program's. */
	CHECK(!read_faults(p) && !read_faults(p + DTB_PAGE + 4 * KiB));
}

void a_mapping_grown_by_mremap_covers_its_new_pages(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	uint8_t *p = mmap(NULL, 4 * KiB, PROT_READ, MAP_SHARED, c.gm, 0);
	CHECK(p != MAP_FAILED);
	uint8_t *q = mremap(p, 4 * KiB, SIZE, MREMAP_MAYMOVE);
	CHECK(q != MAP_FAILED);
	FAILS(ioctl(c.vm, GUNYAH_VM_START), EBUSY);
}

void a_mapping_replaced_with_map_fixed_is_forgotten(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	uint8_t *p = map_all(c.gm, PROT_READ);
	void *q = mmap(p, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(q == p);
	OK(ioctl(c.vm, GUNYAH_VM_START));
}

void mprotect_of_a_mapping_keeps_lent_pages_hidden(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	OK(ioctl(c.vm, GUNYAH_VM_START)); /* lends the DTB page */
	uint8_t *p = map_all(c.gm, PROT_READ);
	CHECK(!read_faults(p));
	CHECK(read_faults(p + DTB_PAGE));
	OK(mprotect(p, SIZE, PROT_READ | PROT_WRITE));
	p[0] = 1;
	CHECK(read_faults(p + DTB_PAGE));
	/* Part of the mapping only: the rest keeps its protection. */
	OK(mprotect(p + 12 * KiB, 4 * KiB, PROT_READ));
	p[4 * KiB] = 1;
	CHECK(read_faults(p + DTB_PAGE));
	OK(munmap(p, SIZE));
}

void a_mapping_replaced_by_mremap_fixed_is_forgotten(void)
{
	struct cell c;
	cell_setup(&c, 0x71);
	uint8_t *p = map_all(c.gm, PROT_READ);
	void *anon = mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(anon != MAP_FAILED);
	CHECK(mremap(anon, SIZE, SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, p) == p);
	OK(ioctl(c.vm, GUNYAH_VM_START));
}
