/* /dev/gunyah itself and what it creates (GUNYAH-USERSPACE §1.3-1.5). */
#include "check.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

/* TV gunyah::{open_with_cloexec, open_with_cloexec_at, gunyah_new}. */
void opening_dev_gunyah_sets_cloexec_only_when_asked(void)
{
	int d = OK(open("/dev/gunyah", O_RDWR));
	CHECK(!cloexec_of(d));
	int e = OK(open("/dev/gunyah", O_RDWR | O_CLOEXEC));
	CHECK(cloexec_of(e));
	int f = OK(openat(AT_FDCWD, "/dev/gunyah", O_RDWR | O_CLOEXEC));
	CHECK(cloexec_of(f));
	int g = OK(open64("/dev/gunyah", O_RDWR));
	CHECK(!cloexec_of(g));
	/* Each open is a device of its own that creates VMs. */
	OK(vm_create(d));
	OK(vm_create(g));
}

/* Other VMMs probe the node before opening it. */
void stat_and_access_see_a_character_device(void)
{
	struct stat st;
	OK(stat("/dev/gunyah", &st));
	CHECK(S_ISCHR(st.st_mode));
	CHECK(major(st.st_rdev) == 10);
	OK(lstat("/dev/gunyah", &st));
	CHECK(S_ISCHR(st.st_mode));
	OK(fstatat(AT_FDCWD, "/dev/gunyah", &st, 0));
	CHECK(S_ISCHR(st.st_mode));
	struct statx sx;
	OK(statx(AT_FDCWD, "/dev/gunyah", 0, STATX_BASIC_STATS, &sx));
	CHECK(S_ISCHR(sx.stx_mode));
	OK(access("/dev/gunyah", R_OK | W_OK));
	FAILS(access("/dev/gunyah", X_OK), EACCES);
	/* Other paths are untouched. */
	FAILS(stat("/dev/gunyah-not", &st), ENOENT);
}

/* TV gunyah-bindings create_vm_fd, gunyah create_vm; SPEC B-VM-1. */
void create_vm_returns_a_close_on_exec_descriptor(void)
{
	int d = OK(dev_open(0));
	int vm = OK(vm_create(d));
	CHECK(vm != d);
	CHECK(cloexec_of(vm));
}

/* SPEC B-VM-1. */
void create_vm_with_a_nonzero_type_is_invalid(void)
{
	int d = OK(dev_open(0));
	FAILS(ioctl(d, GUNYAH_CREATE_VM, 1), EINVAL);
}

/* TV gunyah::create_mem_with_cloexec; SPEC GM-4. */
void create_guest_mem_sets_cloexec_only_with_ghmf_cloexec(void)
{
	int d = OK(dev_open(1));
	int a = OK(gm_create(d, 10 * MiB, 0));
	CHECK(!cloexec_of(a));
	int b = OK(gm_create(d, 10 * MiB, GHMF_CLOEXEC));
	CHECK(cloexec_of(b));
	OK(gm_create(d, 4 * MiB, GHMF_ALLOW_HUGEPAGE));
	struct stat st;
	OK(fstat(a, &st));
	CHECK(st.st_size == (off_t)(10 * MiB));
}

/* TV gunyah-bindings create_mem_fd_invalid_flags; SPEC GM-1. */
void create_guest_mem_with_unknown_flags_is_invalid(void)
{
	int d = OK(dev_open(0));
	FAILS(gm_create(d, 0, 0x8), EINVAL);
	FAILS(gm_create(d, MiB, 0x8), EINVAL);
}

/* SPEC GM-2. */
void create_guest_mem_with_a_size_that_is_not_whole_pages_is_invalid(void)
{
	int d = OK(dev_open(0));
	FAILS(gm_create(d, 0, 0), EINVAL);
	FAILS(gm_create(d, 4097, 0), EINVAL);
}

/* SPEC GM-3 [REC]. */
void create_guest_mem_with_reserved_words_set_is_invalid(void)
{
	int d = OK(dev_open(0));
	struct gunyah_create_mem_args a = { .size = MiB };
	a.reserved[5] = 1;
	FAILS(ioctl(d, GUNYAH_CREATE_GUEST_MEM, &a), EINVAL);
}

/* SPEC B-ADD-1 / F-1: the kernel's copy_from_user says EFAULT. */
void an_unreadable_argument_is_efault(void)
{
	int d = OK(dev_open(0));
	FAILS(ioctl(d, GUNYAH_CREATE_GUEST_MEM, NULL), EFAULT);
	int vm = OK(vm_create(d));
	FAILS(ioctl(vm, GUNYAH_VM_MAP_MEM, (void *)8), EFAULT);
	struct gunyah_fn_desc desc = { .type = GUNYAH_FN_VCPU, .arg_size = 4, .arg = 16 };
	FAILS(ioctl(vm, GUNYAH_VM_ADD_FUNCTION, &desc), EFAULT);
}

void unknown_requests_on_gunyah_descriptors_are_enotty(void)
{
	int d = OK(dev_open(0));
	int vm = OK(vm_create(d));
	int gm = OK(gm_create(d, MiB, 0));
	int vcpu = OK(vcpu_add(vm, 0));
	FAILS(ioctl(d, GUNYAH_VM_START), ENOTTY);
	FAILS(ioctl(vm, GUNYAH_CREATE_VM, 0), ENOTTY);
	FAILS(ioctl(vm, GUNYAH_VCPU_RUN), ENOTTY);
	FAILS(ioctl(vcpu, GUNYAH_VM_START), ENOTTY);
	FAILS(ioctl(gm, GUNYAH_VM_START), ENOTTY);
	FAILS(ioctl(vm, _IO('G', 0x7f)), ENOTTY);
}

/* Every object is a real descriptor with an inode of its own
 * (GUNYAH-USERSPACE §3.2): statx gives (dev, ino), dups share it. */
void every_object_has_an_inode_of_its_own_that_dups_share(void)
{
	int d = OK(dev_open(1));
	int fds[4] = { d, OK(vm_create(d)), OK(gm_create(d, MiB, 0)), 0 };
	fds[3] = OK(vcpu_add(fds[1], 0));
	struct statx sx[4];
	for (int i = 0; i < 4; i++) {
		OK(statx(fds[i], "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx[i]));
		for (int j = 0; j < i; j++)
			CHECK(sx[i].stx_ino != sx[j].stx_ino || sx[i].stx_dev_minor != sx[j].stx_dev_minor);
		int dup_fd = OK(dup(fds[i]));
		struct statx again;
		OK(statx(dup_fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &again));
		CHECK(again.stx_ino == sx[i].stx_ino);
		/* Rust std checks F_GETFD before every close. */
		OK(fcntl(dup_fd, F_GETFD));
		OK(close(dup_fd));
	}
	/* A dup made with fcntl works as the original. */
	int vm2 = OK(fcntl(fds[1], F_DUPFD_CLOEXEC, 100));
	CHECK(vm2 >= 100);
	OK(vcpu_add(vm2, 1));
}

/* Gunyah's device and VM files have no mmap; vCPU pages map natively. */
void device_and_vm_descriptors_cannot_be_mapped(void)
{
	int d = OK(dev_open(0));
	int vm = OK(vm_create(d));
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, d, 0) == MAP_FAILED && errno == ENODEV);
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, vm, 0) == MAP_FAILED && errno == ENODEV);
	FAILS(ftruncate(vm, 4096), EINVAL);
	FAILS(fallocate(vm, FALLOC_FL_KEEP_SIZE, 0, 4096), EOPNOTSUPP);
}
