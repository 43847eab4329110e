//! The holding cell's mailbox protocol, between the guest
//! (`guests/holding-cell`) and lendvm's host-side driver
//! (`lendvm-test-guests`).
//!
//! Every vCPU `i` owns a mailbox of 8-byte registers at guest physical
//! `MAILBOX_BASE + i * MAILBOX_STRIDE`, inside lendvm's MMIO window, so every
//! access is one 8-byte MMIO exit to the host. The guest:
//! 1. writes its vCPU id to [`REG_HELLO`] once, at startup;
//! 2. reads [`REG_CMD`]: the host answers with a command code (`CMD_*`);
//! 3. reads the arguments that command takes, in order, and no others
//!    ([`REG_ARG0`], [`REG_ARG1`], [`REG_ARG2`]);
//! 4. executes the command and writes its result to [`REG_RESULT`];
//! 5. goes back to 2.
//!
//! A command whose execution raises a CPU exception is aborted: its result is
//! [`FAULTED`] `| vector`, the guest remembers the fault (see
//! [`CMD_LAST_FAULT`]) and serves the next command.

/// Guest physical address of vCPU 0's mailbox.
pub const MAILBOX_BASE: u64 = 0xC000_0000;
/// Distance between the mailboxes of consecutive vCPUs.
pub const MAILBOX_STRIDE: u64 = 0x1000;
/// How many vCPUs the guest serves (ids `0..MAX_VCPUS`); a vCPU with a larger
/// id exits at once with [`TOO_MANY_VCPUS_EXIT_CODE`].
pub const MAX_VCPUS: u64 = 8;

/// Read by the guest: the host answers with the next command code.
pub const REG_CMD: u64 = 0x00;
/// Read by the guest: the command's first argument.
pub const REG_ARG0: u64 = 0x08;
/// Read by the guest: the command's second argument.
pub const REG_ARG1: u64 = 0x10;
/// Read by the guest: the command's third argument.
pub const REG_ARG2: u64 = 0x18;
/// Written by the guest: the result of the command it just executed.
pub const REG_RESULT: u64 = 0x20;
/// Written by the guest once, before its first [`REG_CMD`] read: its vCPU id.
pub const REG_HELLO: u64 = 0x28;

/// No arguments. Result: [`PING_REPLY`].
pub const CMD_PING: u64 = 1;
/// ARG0 address, ARG1 length (1, 2, 4 or 8): one load of exactly that size.
/// Result: the value, zero-extended ([`BAD_COMMAND`] `| CMD_READ` for another
/// length).
pub const CMD_READ: u64 = 2;
/// ARG0 address, ARG1 value, ARG2 length (1, 2, 4 or 8): one store of exactly
/// that size of the value's low bytes. Result: 0 ([`BAD_COMMAND`]
/// `| CMD_WRITE` for another length).
pub const CMD_WRITE: u64 = 3;
/// ARG0 address, ARG1 length, ARG2 byte: sets every byte of the range to the
/// byte (8-byte stores where aligned). Result: 0.
pub const CMD_FILL: u64 = 4;
/// ARG0 address, ARG1 length. Result: the 64-bit FNV-1a hash of the range
/// ([`FNV_OFFSET_BASIS`], [`FNV_PRIME`]).
pub const CMD_CHECKSUM: u64 = 5;
/// ARG0 address, ARG1 stride, ARG2 count: reads one byte at
/// `address + k * stride` for `k` in `0..count`. Result: count.
pub const CMD_TOUCH_READ: u64 = 6;
/// ARG0 address, ARG1 stride, ARG2 count: writes the byte `k as u8` at
/// `address + k * stride` for `k` in `0..count`. Result: count.
pub const CMD_TOUCH_WRITE: u64 = 7;
/// ARG0 destination, ARG1 source, ARG2 length: copies the range byte by byte,
/// lowest address first. Result: 0.
pub const CMD_COPY: u64 = 8;
/// ARG0 address, ARG1 length: sends the bytes to the console port, one `out`
/// each. Result: 0.
pub const CMD_PRINT: u64 = 9;
/// No arguments. Result: this vCPU's last fault as
/// `vector | error_code << 8` (error code: 32 bits), 0 if it has none. A #DE
/// (vector 0) packs to 0 too; [`CMD_LAST_FAULT_RIP`] is nonzero after any
/// fault.
pub const CMD_LAST_FAULT: u64 = 10;
/// No arguments. Result: RIP of the instruction that raised this vCPU's last
/// fault, 0 if it has none.
pub const CMD_LAST_FAULT_RIP: u64 = 11;
/// ARG0 iterations: busy-waits. Result: 0.
pub const CMD_SPIN: u64 = 12;
/// No arguments: clears the whole IDT and executes `ud2`, so the VM
/// triple-faults (ends CRASHED). No result.
pub const CMD_TRIPLE_FAULT: u64 = 13;
/// ARG0 code: writes the code's low 32 bits to the exit port, which ends the
/// VM with that exit code. No result.
pub const CMD_EXIT: u64 = 14;
/// ARG0 port, ARG1 value, ARG2 length (1, 2 or 4): one `out` of that size.
/// Result: 0 ([`BAD_COMMAND`] `| CMD_PORT_OUT` for another length).
pub const CMD_PORT_OUT: u64 = 15;
/// ARG0 port, ARG1 length (1, 2 or 4): one `in` of that size. Result: the
/// value, zero-extended ([`BAD_COMMAND`] `| CMD_PORT_IN` for another length).
pub const CMD_PORT_IN: u64 = 16;

/// ARG0 address, ARG1 low 8 bytes, ARG2 high 8 bytes: one 16-byte SSE store
/// (`movdqu`), aligned or not. Result: 0.
pub const CMD_STORE16: u64 = 17;
/// ARG0 address, ARG1 half (0: low 8 bytes, else high): one 16-byte SSE
/// load (`movdqu`). Result: that half of what it loaded.
pub const CMD_LOAD16: u64 = 18;
/// ARG0 address, ARG1 length, ARG2 byte: one `rep stosb`. Result: 0.
pub const CMD_REP_STOSB: u64 = 19;
/// ARG0 destination, ARG1 source, ARG2 length: one `rep movsb`. Result: 0.
pub const CMD_REP_MOVSB: u64 = 20;
/// ARG0 address, ARG1 value: one 8-byte `lock xadd`, aligned or not.
/// Result: the old value.
pub const CMD_XADD: u64 = 21;
/// ARG0 address (8-aligned), ARG1 length (a multiple of 8), ARG2 seed:
/// stores the [`marker`] stream of `seed`, computed by the guest (the host
/// only ever sends the seed). Result: the FNV-1a hash of what it stored.
pub const CMD_MARKER: u64 = 22;

/// The marker stream: xorshift64 from `seed` (a zero seed counts as 1),
/// one 8-byte little-endian word per step. `state` is updated.
pub const fn marker_next(state: &mut u64) -> u64 {
    let mut x = if *state == 0 { 1 } else { *state };
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Result of [`CMD_PING`].
pub const PING_REPLY: u64 = 0x600D_CE11;
/// Result of an unknown command or bad argument: `BAD_COMMAND | command`.
pub const BAD_COMMAND: u64 = 0xBADC_0000_0000_0000;
/// Result of a command that raised an exception: `FAULTED | vector`.
pub const FAULTED: u64 = 0xFA17_0000_0000_0000;

/// FNV-1a 64-bit offset basis ([`CMD_CHECKSUM`]).
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime ([`CMD_CHECKSUM`]).
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Exit code of a guest that panicked (its message went to the console).
pub const PANIC_EXIT_CODE: u32 = 0xDEAD;
/// Exit code of a vCPU whose id is `MAX_VCPUS` or more.
pub const TOO_MANY_VCPUS_EXIT_CODE: u32 = 0xDEAD_0001;
