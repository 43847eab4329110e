//! The Gunyah VM API's userspace ABI, exactly as the Android `gunyah.h`
//! header defines it (SPEC §1.2–1.5): `#[repr(C)]` structs with the header's
//! names, every constant with the header's value, and the ioctl request
//! numbers computed the way the kernel's `_IO` / `_IOW` macros compute them.
//!
//! This crate is the one place that knows bit values. Everything above it
//! speaks in named constants or typed wrappers, so a change of encoding is a
//! change here only (SPEC R-ABI-1). It has no dependencies and no code beyond
//! constant arithmetic.

#![no_std]
#![allow(non_camel_case_types)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

// ---------------------------------------------------------------------------
// ioctl request encoding (asm-generic/ioctl.h)
// ---------------------------------------------------------------------------

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;

/// `_IOC(dir, type, nr, size)`: the generic request-number layout.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    // The size field is 14 bits wide; every struct here is far smaller, and a
    // larger one would be a compile-time bug, so refuse it at compile time.
    assert!(size < (1 << IOC_SIZEBITS), "ioctl argument too large");
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IO(type, nr)`: a request without an argument struct.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOW(type, nr, T)`: a request whose argument the kernel reads.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// The ioctl type byte of the Gunyah VM API (`'G'`).
pub const GUNYAH_IOCTL_TYPE: u8 = b'G';
/// The ioctl type byte of the Android extensions (`'A'`).
pub const GH_ANDROID_IOCTL_TYPE: u8 = b'A';

// ---------------------------------------------------------------------------
// Device and VM ioctls
// ---------------------------------------------------------------------------

/// Device ioctl: create a VM; the integer argument is the VM type (must be 0).
pub const GUNYAH_CREATE_VM: u32 = io(GUNYAH_IOCTL_TYPE, 0x0);

/// Where the VM's devicetree blob lives in guest memory, and how much room it
/// (plus the overlay the resource manager adds) may take.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vm_dtb_config {
    /// Guest physical address of the devicetree.
    pub guest_phys_addr: u64,
    /// Bytes reserved for the devicetree including overlays.
    pub size: u64,
}

/// VM ioctl: record the devicetree location.
pub const GUNYAH_VM_SET_DTB_CONFIG: u32 = iow::<gunyah_vm_dtb_config>(GUNYAH_IOCTL_TYPE, 0x2);

/// VM ioctl: start the VM.
pub const GUNYAH_VM_START: u32 = io(GUNYAH_IOCTL_TYPE, 0x3);

/// Function type: a vCPU (argument [`gunyah_fn_vcpu_arg`], returns a vCPU fd).
pub const GUNYAH_FN_VCPU: u32 = 1;
/// Function type: an eventfd that rings a guest doorbell ([`gunyah_fn_irqfd_arg`]).
pub const GUNYAH_FN_IRQFD: u32 = 2;
/// Function type: an eventfd signalled by guest writes ([`gunyah_fn_ioeventfd_arg`]).
pub const GUNYAH_FN_IOEVENTFD: u32 = 3;

/// Largest argument a function descriptor may point at.
pub const GUNYAH_FN_MAX_ARG_SIZE: u32 = 256;

/// Argument of a vCPU function.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_fn_vcpu_arg {
    /// The vCPU's number within the VM.
    pub id: u32,
}

/// irqfd flag: the doorbell behaves like a level-triggered interrupt.
pub const GUNYAH_IRQFD_FLAGS_LEVEL: u32 = 1 << 0;

/// Argument of an irqfd function.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_fn_irqfd_arg {
    /// The eventfd whose signals ring the doorbell.
    pub fd: u32,
    /// The doorbell's label, as the guest's devicetree names it.
    pub label: u32,
    /// `GUNYAH_IRQFD_FLAGS_*`.
    pub flags: u32,
    /// Must be zero.
    pub padding: u32,
}

/// ioeventfd flag: signal only when the written value equals `datamatch`.
pub const GUNYAH_IOEVENTFD_FLAGS_DATAMATCH: u32 = 1 << 0;

/// Argument of an ioeventfd function.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_fn_ioeventfd_arg {
    /// Value to compare with when DATAMATCH is set.
    pub datamatch: u64,
    /// Guest physical (MMIO) address the guest writes to.
    pub addr: u64,
    /// Access length: 1, 2, 4 or 8, or 0 for any length.
    pub len: u32,
    /// The eventfd to signal.
    pub fd: i32,
    /// `GUNYAH_IOEVENTFD_FLAGS_*`.
    pub flags: u32,
    /// Must be zero.
    pub padding: u32,
}

/// Describes one function to add to (or remove from) a VM.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_fn_desc {
    /// `GUNYAH_FN_*` (named `type` in C).
    pub type_: u32,
    /// Size in bytes of the argument `arg` points at.
    pub arg_size: u32,
    /// Address of the type-specific argument struct.
    pub arg: u64,
}

/// VM ioctl: add a function.
pub const GUNYAH_VM_ADD_FUNCTION: u32 = iow::<gunyah_fn_desc>(GUNYAH_IOCTL_TYPE, 0x4);
/// VM ioctl: remove every matching function.
pub const GUNYAH_VM_REMOVE_FUNCTION: u32 = iow::<gunyah_fn_desc>(GUNYAH_IOCTL_TYPE, 0x7);

// ---------------------------------------------------------------------------
// MAP_MEM
// ---------------------------------------------------------------------------

/// MAP_MEM flag: the guest may read.
pub const GUNYAH_MEM_ALLOW_READ: u32 = 1 << 0;
/// MAP_MEM flag: the guest may write.
pub const GUNYAH_MEM_ALLOW_WRITE: u32 = 1 << 1;
/// MAP_MEM flag: the guest may execute.
pub const GUNYAH_MEM_ALLOW_EXEC: u32 = 1 << 2;
/// All three guest permission bits.
pub const GUNYAH_MEM_ALLOW_RWX: u32 =
    GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE | GUNYAH_MEM_ALLOW_EXEC;
/// Access value: the VM type's default (lend, for every VM lendvm creates).
pub const GUNYAH_MEM_DEFAULT_ACCESS: u32 = 0x00;
/// Access value: lend — the host loses access once the guest uses the memory.
pub const GUNYAH_MEM_FORCE_LEND: u32 = 0x10;
/// Access value: share — the host keeps access while the guest uses it.
pub const GUNYAH_MEM_FORCE_SHARE: u32 = 0x20;
/// The bits that hold the access value.
pub const GUNYAH_MEM_ACCESS_MASK: u32 = 0x70;
/// MAP_MEM flag: remove (part of) a binding instead of adding one.
pub const GUNYAH_MEM_UNMAP: u32 = 1 << 8;

/// Argument of MAP_MEM: bind (or unbind) `size` bytes of a guest memory file
/// starting at `offset` to guest physical memory starting at `guest_addr`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_map_mem_args {
    /// Guest physical address of the range.
    pub guest_addr: u64,
    /// `GUNYAH_MEM_*` flags.
    pub flags: u32,
    /// File descriptor of the guest memory file.
    pub guest_mem_fd: u32,
    /// Byte offset into the guest memory file.
    pub offset: u64,
    /// Length of the range in bytes.
    pub size: u64,
}

/// VM ioctl: add or remove a binding.
pub const GUNYAH_VM_MAP_MEM: u32 = iow::<gunyah_map_mem_args>(GUNYAH_IOCTL_TYPE, 0x9);

// ---------------------------------------------------------------------------
// Boot context
// ---------------------------------------------------------------------------

/// Register set: general-purpose registers.
pub const REG_SET_X: u32 = 0;
/// Register set: the program counter.
pub const REG_SET_PC: u32 = 1;
/// Register set: stack pointers.
pub const REG_SET_SP: u32 = 2;

/// Bit position of the register set within a boot-context register number.
pub const GUNYAH_VM_BOOT_CONTEXT_REG_SHIFT: u32 = 8;

/// `GUNYAH_VM_BOOT_CONTEXT_REG(set, index)`: each part is masked to 8 bits.
pub const fn gunyah_vm_boot_context_reg(set: u32, index: u32) -> u32 {
    ((set & 0xff) << GUNYAH_VM_BOOT_CONTEXT_REG_SHIFT) | (index & 0xff)
}

/// Argument of SET_BOOT_CONTEXT: one initial register value.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vm_boot_context {
    /// Register number, from [`gunyah_vm_boot_context_reg`].
    pub reg: u32,
    /// Must be zero.
    pub reserved: u32,
    /// The value to load.
    pub value: u64,
}

/// VM ioctl: set one initial register.
pub const GUNYAH_VM_SET_BOOT_CONTEXT: u32 = iow::<gunyah_vm_boot_context>(GUNYAH_IOCTL_TYPE, 0xa);

// ---------------------------------------------------------------------------
// vCPU run page
// ---------------------------------------------------------------------------

/// VM status: the VM never started because loading it failed.
pub const GUNYAH_VM_STATUS_LOAD_FAILED: u32 = 1;
/// VM status: the guest asked to shut down or reset.
pub const GUNYAH_VM_STATUS_EXITED: u32 = 2;
/// VM status: the guest's state is unknown; it crashed.
pub const GUNYAH_VM_STATUS_CRASHED: u32 = 3;

/// Bytes of exit reason a status exit can carry.
pub const GUNYAH_VM_MAX_EXIT_REASON_SIZE: usize = 8;

/// Why a VM stopped, as the hypervisor reported it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vm_exit_info {
    /// How the VM stopped (named `type` in C).
    pub type_: u16,
    /// Padding.
    pub padding: u16,
    /// How many bytes of `reason` are meaningful.
    pub reason_size: u32,
    /// Little-endian reason bytes, uninterpreted.
    pub reason: [u8; GUNYAH_VM_MAX_EXIT_REASON_SIZE],
}

/// Exit reason: never reported by a successful run; the initial value.
pub const GUNYAH_VCPU_EXIT_UNKNOWN: u32 = 0;
/// Exit reason: an MMIO access the VMM must handle (`mmio` member).
pub const GUNYAH_VCPU_EXIT_MMIO: u32 = 1;
/// Exit reason: the VM is not runnable any more (`status` member).
pub const GUNYAH_VCPU_EXIT_STATUS: u32 = 2;
/// Exit reason: an access to memory that could not be provided (`page_fault` member).
pub const GUNYAH_VCPU_EXIT_PAGE_FAULT: u32 = 3;

/// Resume action: the access was handled; continue.
pub const GUNYAH_VCPU_RESUME_HANDLED: u8 = 0;
/// Resume action: the access cannot be satisfied; the guest takes a fault.
pub const GUNYAH_VCPU_RESUME_FAULT: u8 = 1;
/// Resume action: try the access again (e.g. after binding memory).
pub const GUNYAH_VCPU_RESUME_RETRY: u8 = 2;

/// The `mmio` member of the run page's union.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vcpu_run_mmio {
    /// Guest physical address accessed.
    pub phys_addr: u64,
    /// Written bytes (writes) or bytes to return (reads).
    pub data: [u8; 8],
    /// Access length in bytes.
    pub len: u32,
    /// 1 for a write, 0 for a read.
    pub is_write: u8,
    /// `GUNYAH_VCPU_RESUME_*`, set by the VMM before the next run.
    pub resume_action: u8,
}

/// The `status` member of the run page's union.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vcpu_run_status {
    /// `GUNYAH_VM_STATUS_*` (a C enum, four bytes).
    pub status: u32,
    /// Details for `GUNYAH_VM_STATUS_EXITED`.
    pub exit_info: gunyah_vm_exit_info,
}

/// The `page_fault` member of the run page's union.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vcpu_run_page_fault {
    /// Guest physical address accessed.
    pub phys_addr: u64,
    /// Why the fault could not be resolved: `-ENOENT` or `-EPERM`.
    pub attempt: i32,
    /// `GUNYAH_VCPU_RESUME_*`, set by the VMM before the next run.
    pub resume_action: u8,
}

/// The anonymous union of the run page; which member is valid depends on
/// `exit_reason`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union gunyah_vcpu_run_exit {
    /// Valid for `GUNYAH_VCPU_EXIT_MMIO`.
    pub mmio: gunyah_vcpu_run_mmio,
    /// Valid for `GUNYAH_VCPU_EXIT_STATUS`.
    pub status: gunyah_vcpu_run_status,
    /// Valid for `GUNYAH_VCPU_EXIT_PAGE_FAULT`.
    pub page_fault: gunyah_vcpu_run_page_fault,
}

impl Default for gunyah_vcpu_run_exit {
    fn default() -> Self {
        Self {
            mmio: gunyah_vcpu_run_mmio::default(),
        }
    }
}

impl core::fmt::Debug for gunyah_vcpu_run_exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Which member is live is only known from the enclosing exit_reason.
        f.write_str("gunyah_vcpu_run_exit { .. }")
    }
}

/// The vCPU run page shared between the VMM and its user.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct gunyah_vcpu_run {
    /// Non-zero: the next run returns `EINTR` without entering the guest.
    pub immediate_exit: u8,
    /// Padding.
    pub padding: [u8; 7],
    /// `GUNYAH_VCPU_EXIT_*` of the last successful run.
    pub exit_reason: u32,
    /// Exit details (named anonymously in C).
    pub exit: gunyah_vcpu_run_exit,
}

/// vCPU ioctl: run until the next exit.
pub const GUNYAH_VCPU_RUN: u32 = io(GUNYAH_IOCTL_TYPE, 0x5);
/// vCPU ioctl: size of the mappable run page.
pub const GUNYAH_VCPU_MMAP_SIZE: u32 = io(GUNYAH_IOCTL_TYPE, 0x6);

// ---------------------------------------------------------------------------
// Legacy user-memory regions and firmware config (Android)
// ---------------------------------------------------------------------------

/// A range of the caller's own memory given to the VM (legacy interface).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_userspace_memory_region {
    /// Identifier of the region, unique within the VM.
    pub label: u32,
    /// Guest permissions (`GUNYAH_MEM_ALLOW_*`).
    pub flags: u32,
    /// Guest physical address (page-aligned).
    pub guest_phys_addr: u64,
    /// Size in bytes (page-aligned).
    pub memory_size: u64,
    /// Address of the memory in the caller's address space (page-aligned).
    pub userspace_addr: u64,
}

/// VM ioctl: share a range of the caller's memory with the VM.
pub const GH_VM_SET_USER_MEM_REGION: u32 =
    iow::<gunyah_userspace_memory_region>(GUNYAH_IOCTL_TYPE, 0x1);
/// VM ioctl: lend a range of the caller's memory to the VM.
pub const GH_VM_ANDROID_LEND_USER_MEM: u32 =
    iow::<gunyah_userspace_memory_region>(GH_ANDROID_IOCTL_TYPE, 0x11);

/// Where protected-VM firmware lives in guest memory.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_vm_firmware_config {
    /// Guest physical address of the firmware.
    pub guest_phys_addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// VM ioctl: record the firmware location.
pub const GH_VM_ANDROID_SET_FW_CONFIG: u32 =
    iow::<gunyah_vm_firmware_config>(GH_ANDROID_IOCTL_TYPE, 0x12);

// ---------------------------------------------------------------------------
// Guest memory files (upstream Gunyah; not in the Android header)
// ---------------------------------------------------------------------------

/// Guest memory file flag: the descriptor is closed on exec.
pub const GHMF_CLOEXEC: u64 = 1 << 0;
/// Guest memory file flag: bindings are placed in huge-page units.
pub const GHMF_ALLOW_HUGEPAGE: u64 = 1 << 1;

/// Argument of CREATE_GUEST_MEM (upstream Gunyah, as Qualcomm's test VMM
/// uses it; SPEC §1.2): a file of `size` bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct gunyah_create_mem_args {
    /// `GHMF_*` flags.
    pub flags: u64,
    /// Size in bytes.
    pub size: u64,
    /// Must be zero.
    pub reserved: [u64; 6],
}

/// Device ioctl: create a guest memory file.
pub const GUNYAH_CREATE_GUEST_MEM: u32 = iow::<gunyah_create_mem_args>(GUNYAH_IOCTL_TYPE, 0x8);

/// The upstream (Gunyah v16 patch series) MAP_MEM flag encoding, which
/// Qualcomm's test VMM and other upstream Gunyah userspace send with the
/// same request number as the Android encoding above (SPEC §1.3). Only the
/// flag bits differ.
pub mod upstream {
    /// Access value: the VM type's default (lend).
    pub const GUNYAH_MEM_DEFAULT_ACCESS: u32 = 0x0;
    /// Access value: lend.
    pub const GUNYAH_MEM_FORCE_LEND: u32 = 0x1;
    /// Access value: share.
    pub const GUNYAH_MEM_FORCE_SHARE: u32 = 0x2;
    /// The bits that hold the access value.
    pub const GUNYAH_MEM_ACCESS_MASK: u32 = 0x7;
    /// The guest may read.
    pub const GUNYAH_MEM_ALLOW_READ: u32 = 1 << 4;
    /// The guest may write.
    pub const GUNYAH_MEM_ALLOW_WRITE: u32 = 1 << 5;
    /// The guest may execute.
    pub const GUNYAH_MEM_ALLOW_EXEC: u32 = 1 << 6;
    /// All three permission bits.
    pub const GUNYAH_MEM_ALLOW_RWX: u32 =
        GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE | GUNYAH_MEM_ALLOW_EXEC;
    /// Remove instead of add.
    pub const GUNYAH_MEM_UNMAP: u32 = 1 << 8;
}
