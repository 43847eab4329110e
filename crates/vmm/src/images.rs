//! Guest images built from `guests/` by `build.rs` and embedded for tests.

/// The holding cell (`guests/holding-cell`): a freestanding test guest for
/// lendvm's native boot ABI (a static ELF64 executable loaded at 1 MiB) whose
/// every vCPU obeys the host over an MMIO mailbox. Its protocol, shared with
/// the host-side driver, is `guests/holding-cell/src/protocol.rs`.
pub const HOLDING_CELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/holding_cell.elf"));

/// A minimal native guest (`guests/hello`): each vCPU greets on the console,
/// vCPU 0 checks 1 MiB of RAM at 4 MiB and stops the VM with code 0.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.elf"));
