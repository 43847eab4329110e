/*
 * gunyah_hello: boot a guest through the Gunyah VM API, the way a Gunyah
 * VMM does, and run it to its end.
 *
 *   cc -I examples examples/gunyah_hello.c -o gunyah_hello
 *   LD_PRELOAD=liblendvm_gunyah.so ./gunyah_hello guest.elf
 *
 * On a Gunyah host this talks to the hypervisor's /dev/gunyah; under
 * lendvm's preload library the same binary runs on any KVM host. The guest
 * is an x86-64 ELF in lendvm's native boot ABI (64-bit mode, identity-mapped
 * memory, e.g. lendvm's guests/hello): it prints on its console port and
 * stops the VM through its exit port, both handled inside lendvm, so this
 * program only sees the final STATUS exit (and any MMIO or page-fault exit
 * on the way, which it reports and refuses).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gunyah.h"

#define MiB (1024UL * 1024UL)
/* Guest RAM [0, 8 MiB) lent to the VM; the image is linked at 1 MiB. */
#define RAM_SIZE (8 * MiB)
/* The DTB page: Gunyah's resource manager takes it from RAM above 2 GiB
 * (below is the platform's device space). */
#define DTB_ADDR 0x80000000UL
#define DTB_SIZE 4096UL
/* One file holds both: RAM at offset 0, the DTB page after it. */
#define FILE_SIZE (RAM_SIZE + DTB_SIZE)

static void die(const char *what)
{
	fprintf(stderr, "gunyah_hello: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Copy the ELF's loadable segments into guest memory (offset = address). */
static uint64_t load(const char *path, int mem)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die(path);
	uint8_t *elf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (elf == MAP_FAILED)
		die("mmap of the image");
	Elf64_Ehdr *eh = (Elf64_Ehdr *)elf;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_machine != EM_X86_64) {
		fprintf(stderr, "gunyah_hello: %s is not an x86-64 ELF\n", path);
		exit(1);
	}
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
	if (ram == MAP_FAILED)
		die("mmap of guest memory");
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(elf + eh->e_phoff + (size_t)i * eh->e_phentsize);
		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_paddr + ph->p_memsz > RAM_SIZE) {
			fprintf(stderr, "gunyah_hello: a segment lies outside guest RAM\n");
			exit(1);
		}
		memcpy(ram + ph->p_paddr, elf + ph->p_offset, ph->p_filesz);
	}
	uint64_t entry = eh->e_entry;
	/* Unmap before START: the guest cannot take pages the host maps. */
	munmap(ram, RAM_SIZE);
	munmap(elf, (size_t)st.st_size);
	close(fd);
	return entry;
}

static void set_reg(int vm, uint32_t set, uint32_t index, uint64_t value)
{
	struct gunyah_vm_boot_context ctx = {
		.reg = GUNYAH_VM_BOOT_CONTEXT_REG(set, index),
		.value = value,
	};
	if (ioctl(vm, GUNYAH_VM_SET_BOOT_CONTEXT, &ctx) < 0)
		die("SET_BOOT_CONTEXT");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s <guest.elf>\n", argv[0]);
		return 2;
	}
	int gunyah = open("/dev/gunyah", O_RDWR | O_CLOEXEC);
	if (gunyah < 0)
		die("open /dev/gunyah");
	int vm = ioctl(gunyah, GUNYAH_CREATE_VM, 0);
	if (vm < 0)
		die("CREATE_VM");

	struct gunyah_create_mem_args mem_args = { .flags = GHMF_CLOEXEC, .size = FILE_SIZE };
	int mem = ioctl(gunyah, GUNYAH_CREATE_GUEST_MEM, &mem_args);
	if (mem < 0)
		die("CREATE_GUEST_MEM");
	uint64_t entry = load(argv[1], mem);

	/* Lend RAM and the DTB page to the VM. */
	struct gunyah_map_mem_args ram = {
		.guest_addr = 0,
		.flags = GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_RWX,
		.guest_mem_fd = (uint32_t)mem,
		.offset = 0,
		.size = RAM_SIZE,
	};
	struct gunyah_map_mem_args dtb = ram;
	dtb.guest_addr = DTB_ADDR;
	dtb.offset = RAM_SIZE;
	dtb.size = DTB_SIZE;
	if (ioctl(vm, GUNYAH_VM_MAP_MEM, &ram) < 0 || ioctl(vm, GUNYAH_VM_MAP_MEM, &dtb) < 0)
		die("MAP_MEM");
	struct gunyah_vm_dtb_config dtb_config = { .guest_phys_addr = DTB_ADDR, .size = DTB_SIZE };
	if (ioctl(vm, GUNYAH_VM_SET_DTB_CONFIG, &dtb_config) < 0)
		die("SET_DTB_CONFIG");

	struct gunyah_fn_vcpu_arg vcpu_arg = { .id = 0 };
	struct gunyah_fn_desc fn = {
		.type = GUNYAH_FN_VCPU,
		.arg_size = sizeof(vcpu_arg),
		.arg = (uint64_t)(uintptr_t)&vcpu_arg,
	};
	int vcpu = ioctl(vm, GUNYAH_VM_ADD_FUNCTION, &fn);
	if (vcpu < 0)
		die("ADD_FUNCTION (vCPU)");
	long run_size = ioctl(vcpu, GUNYAH_VCPU_MMAP_SIZE);
	if (run_size < (long)sizeof(struct gunyah_vcpu_run))
		die("VCPU_MMAP_SIZE");
	struct gunyah_vcpu_run *run =
		mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap of the run page");

	/* PC = the ELF entry; X2 (RDX on x86) = the number of vCPUs. */
	set_reg(vm, REG_SET_PC, 0, entry);
	set_reg(vm, REG_SET_X, 2, 1);
	if (ioctl(vm, GUNYAH_VM_START) < 0)
		die("START");
	printf("gunyah_hello: VM started at %#lx\n", (unsigned long)entry);
	fflush(stdout);

	for (;;) {
		if (ioctl(vcpu, GUNYAH_VCPU_RUN) < 0) {
			if (errno == EINTR)
				continue;
			die("VCPU_RUN");
		}
		switch (run->exit_reason) {
		case GUNYAH_VCPU_EXIT_MMIO:
			printf("gunyah_hello: MMIO %s at %#llx: no device there\n",
			       run->mmio.is_write ? "write" : "read",
			       (unsigned long long)run->mmio.phys_addr);
			run->mmio.resume_action = GUNYAH_VCPU_RESUME_FAULT;
			break;
		case GUNYAH_VCPU_EXIT_PAGE_FAULT:
			printf("gunyah_hello: page fault at %#llx (%d)\n",
			       (unsigned long long)run->page_fault.phys_addr, run->page_fault.attempt);
			run->page_fault.resume_action = GUNYAH_VCPU_RESUME_FAULT;
			break;
		case GUNYAH_VCPU_EXIT_STATUS: {
			struct gunyah_vm_exit_info *info = &run->status.exit_info;
			uint32_t code = 0;
			memcpy(&code, info->reason, info->reason_size < 4 ? info->reason_size : 4);
			if (run->status.status == GUNYAH_VM_STATUS_EXITED) {
				printf("gunyah_hello: guest exited with code %u\n", code);
				return code == 0 ? 0 : 1;
			}
			printf("gunyah_hello: guest stopped with status %d\n", run->status.status);
			return 1;
		}
		default:
			printf("gunyah_hello: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		fflush(stdout);
	}
}
