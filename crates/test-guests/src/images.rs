//! Guest images built from `guests/` by `build.rs` and embedded for tests.

/// The holding cell (`guests/holding-cell`): a freestanding test guest for
/// lendvm's native boot ABI (a static ELF64 executable loaded at 1 MiB) whose
/// every vCPU obeys the host over an MMIO mailbox. Its protocol, shared with
/// the host-side driver, is `guests/holding-cell/src/protocol.rs`.
pub const HOLDING_CELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/holding_cell.elf"));

/// A minimal native guest (`guests/hello`): each vCPU greets on the console,
/// vCPU 0 checks 1 MiB of RAM at 4 MiB and stops the VM with code 0.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.elf"));

/// A tiny PVH guest (`guests/pvh-hello`): an ELF64 image at 1 MiB entered
/// through its Xen PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`) in 32-bit protected
/// mode with EBX = the `hvm_start_info`. It checks the start info's magic,
/// prints `Hello from a PVH guest\n` on COM1 (port 0x3f8, polling the line
/// status register at 0x3fd for THR empty before each byte; or
/// `PVH guest: bad start_info\n`), writes 0x7b to the boot-complete port 0xee,
/// resets through the i8042 (0xfe to port 0x64), then halts with interrupts
/// off. The same image boots on QEMU `-M microvm -kernel`.
pub const PVH_HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvh_hello.elf"));
