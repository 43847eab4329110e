#include "check.h"

#include <elf.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>

const char *case_arg;

void fail(const char *file, int line, const char *what, long got, int err)
{
	fprintf(stderr, "FAIL %s:%d: %s (returned %ld, errno %d: %s)\n", file, line, what,
		got, err, strerror(err));
	exit(1);
}

int dev_open(int cloexec)
{
	return open("/dev/gunyah", O_RDWR | (cloexec ? O_CLOEXEC : 0));
}

int vm_create(int dev)
{
	return ioctl(dev, GUNYAH_CREATE_VM, 0);
}

int gm_create(int dev, uint64_t size, uint64_t flags)
{
	struct gunyah_create_mem_args a = { .flags = flags, .size = size };
	return ioctl(dev, GUNYAH_CREATE_GUEST_MEM, &a);
}

int map_mem(int vm, uint64_t gpa, uint32_t flags, int fd, uint64_t offset, uint64_t size)
{
	struct gunyah_map_mem_args a = {
		.guest_addr = gpa, .flags = flags, .guest_mem_fd = (uint32_t)fd,
		.offset = offset, .size = size,
	};
	return ioctl(vm, GUNYAH_VM_MAP_MEM, &a);
}

static int function(int vm, unsigned long req, uint32_t type, void *arg, uint32_t size)
{
	struct gunyah_fn_desc d = { .type = type, .arg_size = size, .arg = (uint64_t)(uintptr_t)arg };
	return ioctl(vm, req, &d);
}

int vcpu_add(int vm, uint32_t id)
{
	struct gunyah_fn_vcpu_arg a = { .id = id };
	return function(vm, GUNYAH_VM_ADD_FUNCTION, GUNYAH_FN_VCPU, &a, sizeof(a));
}

int vcpu_remove(int vm, uint32_t id)
{
	struct gunyah_fn_vcpu_arg a = { .id = id };
	return function(vm, GUNYAH_VM_REMOVE_FUNCTION, GUNYAH_FN_VCPU, &a, sizeof(a));
}

int irqfd_add(int vm, int fd, uint32_t label, uint32_t flags)
{
	struct gunyah_fn_irqfd_arg a = { .fd = (uint32_t)fd, .label = label, .flags = flags };
	return function(vm, GUNYAH_VM_ADD_FUNCTION, GUNYAH_FN_IRQFD, &a, sizeof(a));
}

int irqfd_remove(int vm, int fd, uint32_t label, uint32_t flags)
{
	struct gunyah_fn_irqfd_arg a = { .fd = (uint32_t)fd, .label = label, .flags = flags };
	return function(vm, GUNYAH_VM_REMOVE_FUNCTION, GUNYAH_FN_IRQFD, &a, sizeof(a));
}

static struct gunyah_fn_ioeventfd_arg ioevent(int fd, uint64_t addr, uint32_t len, int dm,
					      uint64_t value)
{
	struct gunyah_fn_ioeventfd_arg a = {
		.datamatch = dm ? value : 0, .addr = addr, .len = len, .fd = fd,
		.flags = dm ? GUNYAH_IOEVENTFD_FLAGS_DATAMATCH : 0,
	};
	return a;
}

int ioeventfd_add(int vm, int fd, uint64_t addr, uint32_t len, int dm, uint64_t value)
{
	struct gunyah_fn_ioeventfd_arg a = ioevent(fd, addr, len, dm, value);
	return function(vm, GUNYAH_VM_ADD_FUNCTION, GUNYAH_FN_IOEVENTFD, &a, sizeof(a));
}

int ioeventfd_remove(int vm, int fd, uint64_t addr, uint32_t len, int dm, uint64_t value)
{
	struct gunyah_fn_ioeventfd_arg a = ioevent(fd, addr, len, dm, value);
	return function(vm, GUNYAH_VM_REMOVE_FUNCTION, GUNYAH_FN_IOEVENTFD, &a, sizeof(a));
}

int boot_reg(int vm, uint32_t set, uint32_t index, uint64_t value)
{
	struct gunyah_vm_boot_context c = { .reg = GUNYAH_VM_BOOT_CONTEXT_REG(set, index), .value = value };
	return ioctl(vm, GUNYAH_VM_SET_BOOT_CONTEXT, &c);
}

int dtb_config(int vm, uint64_t gpa, uint64_t size)
{
	struct gunyah_vm_dtb_config c = { .guest_phys_addr = gpa, .size = size };
	return ioctl(vm, GUNYAH_VM_SET_DTB_CONFIG, &c);
}

int cloexec_of(int fd)
{
	return (OK(fcntl(fd, F_GETFD)) & FD_CLOEXEC) != 0;
}

void gm_write(int gm, uint64_t offset, const void *data, size_t len)
{
	uint64_t base = offset & ~(4 * KiB - 1);
	size_t span = len + (offset - base);
	uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, gm, (off_t)base);
	CHECK(p != MAP_FAILED);
	memcpy(p + (offset - base), data, len);
	OK(munmap(p, span));
}

static sigjmp_buf fault_jump;

static void on_fault(int sig)
{
	siglongjmp(fault_jump, sig);
}

int read_faults(const volatile uint8_t *p)
{
	struct sigaction sa = { .sa_handler = on_fault }, old_segv, old_bus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	int faulted = 0;
	if (sigsetjmp(fault_jump, 1) == 0)
		(void)*p;
	else
		faulted = 1;
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return faulted;
}

void cell_setup(struct cell *c, uint32_t flags)
{
	/* GUNYAH-USERSPACE §1.7 steps 1-7 (TV HoldingCell::new). */
	int d = OK(dev_open(1));
	c->vm = OK(vm_create(d));
	OK(close(d));
	d = OK(dev_open(1));
	int gm = OK(gm_create(d, 16 * KiB, 0));
	OK(close(d));
	c->gm = OK(dup(gm));
	OK(close(gm));
	OK(map_mem(c->vm, 0x80000000, flags, c->gm, 0, 16 * KiB));
	c->vcpu = OK(vcpu_add(c->vm, 0));
	long size = OK(ioctl(c->vcpu, GUNYAH_VCPU_MMAP_SIZE));
	c->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, c->vcpu, 0);
	CHECK(c->run != MAP_FAILED);
	static const uint8_t dtb[0x4c4] = { 0xd0, 0x0d, 0xfe, 0xed };
	gm_write(c->gm, 0x2000, dtb, sizeof(dtb));
	OK(dtb_config(c->vm, 0x80002000, 4096));
	static uint8_t image[0x1850];
	memset(image, 0x90, sizeof(image));
	gm_write(c->gm, 0, image, sizeof(image));
	OK(boot_reg(c->vm, REG_SET_PC, 0, 0x80000000));
	OK(boot_reg(c->vm, REG_SET_SP, 1, 0x80004000));
}

uint64_t load_elf(const char *path, int gm)
{
	CHECK(path != NULL);
	int fd = OK(open(path, O_RDONLY));
	struct stat st;
	OK(fstat(fd, &st));
	uint8_t *file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(file != MAP_FAILED);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)file;
	CHECK(memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64);
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(file + eh->e_phoff + (uint64_t)i * eh->e_phentsize);
		if (ph->p_type == PT_LOAD && ph->p_filesz)
			gm_write(gm, ph->p_paddr, file + ph->p_offset, ph->p_filesz);
	}
	uint64_t entry = eh->e_entry;
	OK(munmap(file, (size_t)st.st_size));
	OK(close(fd));
	return entry;
}
