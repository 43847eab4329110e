//! lendvm's native x86 boot ABI: what an ELF64 image without a PVH note
//! finds when lendvm enters it.
//!
//! Entry state of every vCPU:
//! * 64-bit long mode at CPL3 (the only natively executed mode on PVM
//!   hosts, and valid on VMX/SVM hosts too): CS = [`USER_CODE_SELECTOR`],
//!   SS = DS = ES = FS = GS = [`USER_DATA_SELECTOR`], RFLAGS = 0x2.
//! * Paging on, CR3 = lendvm's page tables, which identity-map guest
//!   physical `[0, IDENTITY_MAP_SIZE)` with 2 MiB user-writable pages.
//! * RIP = the ELF entry (or the boot context's PC), RSP = the boot
//!   context's SP (0 if unset: the image sets up its own stack),
//!   RDI = the vCPU id, RSI = the DTB/boot-info address (0 if unset); any
//!   other register = its boot context value, else 0. `lendvm run` sets
//!   RDX (X2) to the number of vCPUs it starts.
//! * SSE is enabled (CR4.OSFXSR | OSXMMEXCPT); the FPU is in its reset state.
//! * Port I/O is allowed for every port (the TSS I/O bitmap is all zeros).
//!
//! The IDT lives in lendvm's system region and starts empty: an exception
//! without a handler triple-faults, and the VM ends CRASHED. A guest that
//! wants handlers writes 16-byte 64-bit gate descriptors into the IDT at
//! [`IDT_BASE`] (selector [`USER_CODE_SELECTOR`], DPL 3, present) before
//! the first fault; handlers run at CPL3 and return with IRETQ.
//!
//! `cli`/`sti`/`hlt` fault at CPL3. CPUID at CPL3 may report the host's
//! values on PVM hosts.

/// Where lendvm's system region (GDT, IDT, TSS, page tables) lives in every
/// natively booted VM. MAP_MEM refuses bindings that overlap it.
pub const SYSTEM_REGION_BASE: u64 = 0xFFE0_0000;
/// Size of the system region.
pub const SYSTEM_REGION_SIZE: u64 = 2 << 20;
/// The GDT.
pub const GDT_BASE: u64 = SYSTEM_REGION_BASE;
/// The IDT: 256 gates of 16 bytes, initially all not-present.
pub const IDT_BASE: u64 = SYSTEM_REGION_BASE + 0x1000;
/// Number of IDT gates.
pub const IDT_ENTRIES: u64 = 256;
/// The 64-bit TSS, followed by its I/O permission bitmap.
pub const TSS_BASE: u64 = SYSTEM_REGION_BASE + 0x2000;
/// The top-level page table.
pub const PML4_BASE: u64 = SYSTEM_REGION_BASE + 0x5000;
/// Guest physical memory the page tables identity-map.
pub const IDENTITY_MAP_SIZE: u64 = 64 << 30;

/// Kernel code segment (64-bit, DPL 0): unused by native guests.
pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
/// Kernel data segment (DPL 0).
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;
/// User data/stack segment (DPL 3), with RPL 3.
pub const USER_DATA_SELECTOR: u16 = 0x2b;
/// User code segment (64-bit, DPL 3), with RPL 3.
pub const USER_CODE_SELECTOR: u16 = 0x33;
/// The TSS descriptor.
pub const TSS_SELECTOR: u16 = 0x38;

/// Writing a byte to this port prints it on lendvm's console (the
/// `debugcon` convention of QEMU and Bochs).
pub const CONSOLE_PORT: u16 = 0xe9;
/// Writing a 32-bit value to this port ends the VM: the vCPU reports
/// STATUS / EXITED with the value as the 4-byte exit reason.
pub const EXIT_PORT: u16 = 0xf4;

/// Default guest physical window where accesses to unbound addresses are
/// MMIO (DESIGN D1): `[MMIO_WINDOW_BASE, MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE)`.
/// Unbound accesses outside it are page faults.
pub const MMIO_WINDOW_BASE: u64 = 0xC000_0000;
/// Size of the default MMIO window (up to 4 GiB).
pub const MMIO_WINDOW_SIZE: u64 = 0x4000_0000;
