/*
 * Test support for the C programs that exercise liblendvm_gunyah.so through
 * the Gunyah ioctl ABI only. Each case is a function; a failed check prints
 * where and why, then exits non-zero.
 */
#ifndef LENDVM_GUNYAH_CHECK_H
#define LENDVM_GUNYAH_CHECK_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gunyah.h"

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)

void fail(const char *file, int line, const char *what, long got, int err);

/* The expression must hold. */
#define CHECK(cond)                                                  \
	do {                                                         \
		if (!(cond))                                         \
			fail(__FILE__, __LINE__, #cond, 0, errno);   \
	} while (0)

/* The call must succeed (return >= 0); its result is returned. */
#define OK(expr)                                                       \
	({                                                             \
		errno = 0;                                             \
		long ok_r_ = (long)(expr);                             \
		if (ok_r_ < 0)                                         \
			fail(__FILE__, __LINE__, #expr, ok_r_, errno); \
		ok_r_;                                                 \
	})

/* The call must fail with -1 and errno `err`. */
#define FAILS(expr, err)                                              \
	do {                                                          \
		errno = 0;                                            \
		long fails_r_ = (long)(expr);                         \
		if (fails_r_ != -1 || errno != (err))                 \
			fail(__FILE__, __LINE__, #expr " fails with " #err, \
			     fails_r_, errno);                        \
	} while (0)

/* Gunyah operations, returning what the ioctl returns. */
int dev_open(int cloexec);
int vm_create(int dev);
int gm_create(int dev, uint64_t size, uint64_t flags);
int map_mem(int vm, uint64_t gpa, uint32_t flags, int fd, uint64_t offset, uint64_t size);
int vcpu_add(int vm, uint32_t id);
int vcpu_remove(int vm, uint32_t id);
int irqfd_add(int vm, int fd, uint32_t label, uint32_t flags);
int irqfd_remove(int vm, int fd, uint32_t label, uint32_t flags);
int ioeventfd_add(int vm, int fd, uint64_t addr, uint32_t len, int datamatch, uint64_t value);
int ioeventfd_remove(int vm, int fd, uint64_t addr, uint32_t len, int datamatch, uint64_t value);
int boot_reg(int vm, uint32_t set, uint32_t index, uint64_t value);
int dtb_config(int vm, uint64_t gpa, uint64_t size);
int cloexec_of(int fd);
/* Write `len` bytes at `offset` of a guest memory file through a mapping. */
void gm_write(int gm, uint64_t offset, const void *data, size_t len);
/* True if reading `p` faults (SIGSEGV or SIGBUS). */
int read_faults(const volatile uint8_t *p);

/* The holding-cell setup of TV (GUNYAH-USERSPACE §1.7) with `flags`. */
struct cell {
	int vm, gm, vcpu;
	struct gunyah_vcpu_run *run;
};
void cell_setup(struct cell *c, uint32_t flags);

/* Load the ELF64 at `path` into guest memory file `gm`, whose offset 0 is
 * guest address 0; returns the entry point. */
uint64_t load_elf(const char *path, int gm);

/* The case's extra argument (a file path), or NULL. */
extern const char *case_arg;

#endif
