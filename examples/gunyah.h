/*
 * The Gunyah VM API as Gunyah userspace sees it: the ioctls on /dev/gunyah
 * and on the descriptors made from it, their argument structs and flags.
 * Values follow the upstream (v16) interface that Qualcomm's test VMM
 * builds against by default; lendvm's preload library serves exactly these
 * (LENDVM_GUNYAH_ABI=android selects the Android header's MAP_MEM flags).
 *
 * Written for lendvm's example and tests; a real Gunyah tree provides
 * <linux/gunyah.h> instead.
 */
#ifndef LENDVM_EXAMPLE_GUNYAH_H
#define LENDVM_EXAMPLE_GUNYAH_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define GUNYAH_IOCTL_TYPE 'G'

/* /dev/gunyah: create a VM (argument by value: the VM type, 0). */
#define GUNYAH_CREATE_VM _IO(GUNYAH_IOCTL_TYPE, 0x0)

/* /dev/gunyah: create a guest memory file. */
struct gunyah_create_mem_args {
	__u64 flags;       /* GHMF_* */
	__u64 size;        /* bytes, a multiple of the page size */
	__u64 reserved[6]; /* zero */
};
#define GHMF_CLOEXEC (1ULL << 0)
#define GHMF_ALLOW_HUGEPAGE (1ULL << 1)
#define GUNYAH_CREATE_GUEST_MEM _IOW(GUNYAH_IOCTL_TYPE, 0x8, struct gunyah_create_mem_args)

/* VM: where the devicetree lives in guest memory. */
struct gunyah_vm_dtb_config {
	__u64 guest_phys_addr;
	__u64 size;
};
#define GUNYAH_VM_SET_DTB_CONFIG _IOW(GUNYAH_IOCTL_TYPE, 0x2, struct gunyah_vm_dtb_config)

/* VM: start it. */
#define GUNYAH_VM_START _IO(GUNYAH_IOCTL_TYPE, 0x3)

/* VM: add or remove a function (vCPU, irqfd, ioeventfd). */
enum gunyah_fn_type {
	GUNYAH_FN_VCPU = 1,
	GUNYAH_FN_IRQFD,
	GUNYAH_FN_IOEVENTFD,
};
struct gunyah_fn_vcpu_arg {
	__u32 id;
};
#define GUNYAH_IRQFD_FLAGS_LEVEL (1UL << 0)
struct gunyah_fn_irqfd_arg {
	__u32 fd;
	__u32 label;
	__u32 flags;
	__u32 padding;
};
#define GUNYAH_IOEVENTFD_FLAGS_DATAMATCH (1UL << 0)
struct gunyah_fn_ioeventfd_arg {
	__u64 datamatch;
	__u64 addr;
	__u32 len;
	__s32 fd;
	__u32 flags;
	__u32 padding;
};
struct gunyah_fn_desc {
	__u32 type;     /* enum gunyah_fn_type */
	__u32 arg_size; /* size of *arg */
	__u64 arg;      /* address of the type's argument struct */
};
#define GUNYAH_VM_ADD_FUNCTION _IOW(GUNYAH_IOCTL_TYPE, 0x4, struct gunyah_fn_desc)
#define GUNYAH_VM_REMOVE_FUNCTION _IOW(GUNYAH_IOCTL_TYPE, 0x7, struct gunyah_fn_desc)

/* VM: bind (or, with GUNYAH_MEM_UNMAP, unbind) guest memory. */
#define GUNYAH_MEM_DEFAULT_ACCESS 0x0
#define GUNYAH_MEM_FORCE_LEND 0x1
#define GUNYAH_MEM_FORCE_SHARE 0x2
#define GUNYAH_MEM_ACCESS_MASK 0x7
#define GUNYAH_MEM_ALLOW_READ (1UL << 4)
#define GUNYAH_MEM_ALLOW_WRITE (1UL << 5)
#define GUNYAH_MEM_ALLOW_EXEC (1UL << 6)
#define GUNYAH_MEM_ALLOW_RWX (GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE | GUNYAH_MEM_ALLOW_EXEC)
#define GUNYAH_MEM_UNMAP (1UL << 8)
struct gunyah_map_mem_args {
	__u64 guest_addr;
	__u32 flags;
	__u32 guest_mem_fd;
	__u64 offset;
	__u64 size;
};
#define GUNYAH_VM_MAP_MEM _IOW(GUNYAH_IOCTL_TYPE, 0x9, struct gunyah_map_mem_args)

/* VM: one initial register value. */
enum gunyah_vm_boot_context_reg {
	REG_SET_X = 0,
	REG_SET_PC = 1,
	REG_SET_SP = 2,
};
#define GUNYAH_VM_BOOT_CONTEXT_REG(set, index) ((((set) & 0xff) << 8) | ((index) & 0xff))
struct gunyah_vm_boot_context {
	__u32 reg;
	__u32 reserved;
	__u64 value;
};
#define GUNYAH_VM_SET_BOOT_CONTEXT _IOW(GUNYAH_IOCTL_TYPE, 0xa, struct gunyah_vm_boot_context)

/* vCPU: run it; the state is in the mapped run page. */
#define GUNYAH_VCPU_RUN _IO(GUNYAH_IOCTL_TYPE, 0x5)
/* vCPU: how many bytes to mmap for the run page. */
#define GUNYAH_VCPU_MMAP_SIZE _IO(GUNYAH_IOCTL_TYPE, 0x6)

enum gunyah_vm_status {
	GUNYAH_VM_STATUS_LOAD_FAILED = 1,
	GUNYAH_VM_STATUS_EXITED = 2,
	GUNYAH_VM_STATUS_CRASHED = 3,
};
#define GUNYAH_VM_MAX_EXIT_REASON_SIZE 8u
struct gunyah_vm_exit_info {
	__u16 type;
	__u16 padding;
	__u32 reason_size;
	__u8 reason[GUNYAH_VM_MAX_EXIT_REASON_SIZE];
};
enum gunyah_vcpu_exit {
	GUNYAH_VCPU_EXIT_UNKNOWN,
	GUNYAH_VCPU_EXIT_MMIO,
	GUNYAH_VCPU_EXIT_STATUS,
	GUNYAH_VCPU_EXIT_PAGE_FAULT,
};
enum gunyah_vcpu_resume_action {
	GUNYAH_VCPU_RESUME_HANDLED = 0,
	GUNYAH_VCPU_RESUME_FAULT,
	GUNYAH_VCPU_RESUME_RETRY,
};
struct gunyah_vcpu_run {
	__u8 immediate_exit;
	__u8 padding[7];
	__u32 exit_reason; /* enum gunyah_vcpu_exit */
	union {
		struct {
			__u64 phys_addr;
			__u8 data[8];
			__u32 len;
			__u8 is_write;
			__u8 resume_action;
		} mmio;
		struct {
			enum gunyah_vm_status status;
			struct gunyah_vm_exit_info exit_info;
		} status;
		struct {
			__u64 phys_addr;
			__s32 attempt;
			__u8 resume_action;
		} page_fault;
	};
};

/* Android extensions (legacy user-memory regions, firmware location). */
struct gunyah_userspace_memory_region {
	__u32 label;
	__u32 flags; /* R 0x1, W 0x2, X 0x4 */
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
};
#define GH_VM_SET_USER_MEM_REGION _IOW(GUNYAH_IOCTL_TYPE, 0x1, struct gunyah_userspace_memory_region)
#define GH_VM_ANDROID_LEND_USER_MEM _IOW('A', 0x11, struct gunyah_userspace_memory_region)
struct gunyah_vm_firmware_config {
	__u64 guest_phys_addr;
	__u64 size;
};
#define GH_VM_ANDROID_SET_FW_CONFIG _IOW('A', 0x12, struct gunyah_vm_firmware_config)

#endif
