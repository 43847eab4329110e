//! The holding cell: lendvm's test guest. lendvm enters it at CPL3 in 64-bit
//! long mode (its native boot ABI, `lendvm-guest-abi`), and every vCPU then obeys
//! the host over its own MMIO mailbox (`guest_abi::holding_cell`): read, write, fill, hash
//! and copy guest memory, print, spin, fault, crash or exit on command. Tests
//! use it to make a real guest touch memory exactly when and how they want.
//!
//! A command that raises a CPU exception is aborted: the handler records the
//! fault, IRETQs to `fault_resume` on the vCPU's emptied stack, the vCPU
//! reports `FAULTED | vector` and keeps serving.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use guest_abi::holding_cell::*;
use guest_abi::native::{CONSOLE_PORT, EXIT_PORT, IDT_BASE, IDT_ENTRIES, USER_CODE_SELECTOR};

/// Stack size of each vCPU.
const STACK_SIZE: u64 = 16 << 10;

/// The vCPUs' stacks, vCPU `i`'s at index `i`. Only `_start`, `fault_resume`
/// and the code they call run on them; nothing takes a reference to them.
#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE as usize]; MAX_VCPUS as usize]);
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE as usize]; MAX_VCPUS as usize]);

/// Exceptions for which the CPU pushes an error code.
const ERROR_CODE_VECTORS: u32 = bits(&[8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

const fn bits(vectors: &[u32]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < vectors.len() {
        mask |= 1 << vectors[i];
        i += 1;
    }
    mask
}

global_asm!(
    // Entry of every vCPU, RDI = vCPU id: switch to its stack, run `main`.
    ".globl _start",
    "_start:",
    "    cmp rdi, {max_vcpus}",
    "    jae 2f",
    "    lea rax, [rdi + 1]",
    "    imul rax, rax, {stack_size}",
    "    lea rsp, [rip + {stacks}]",
    "    add rsp, rax",
    "    call {main}",
    "2:  mov eax, {too_many_vcpus}",
    "    out {exit_port}, eax",
    "    jmp 2b",
    // One 16-byte stub per exception vector 0..=31: push a dummy error code
    // if the CPU pushed none, then the vector.
    ".balign 16",
    ".globl exception_stubs",
    "exception_stubs:",
    ".irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .balign 16",
    "    .if (({error_code_vectors} >> \\vector) & 1) == 0",
    "    push 0",
    "    .endif",
    "    push \\vector",
    "    jmp exception_common",
    ".endr",
    // RSP points at an `ExceptionFrame`; `on_exception` rewrites it to
    // return to `fault_resume` and returns the vCPU id, for `fault_resume`.
    "exception_common:",
    "    mov rbx, rsp",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    call {on_exception}",
    "    mov rsp, rbx",
    "    mov rdi, rax",
    "    add rsp, 16",
    "    iretq",
    // Entered by that IRETQ with RSP = top of the vCPU's stack, RDI = its id.
    ".globl fault_resume",
    "fault_resume:",
    "    call {after_fault}",
    max_vcpus = const MAX_VCPUS,
    stack_size = const STACK_SIZE,
    stacks = sym STACKS,
    main = sym main,
    too_many_vcpus = const TOO_MANY_VCPUS_EXIT_CODE,
    exit_port = const EXIT_PORT,
    error_code_vectors = const ERROR_CODE_VECTORS,
    on_exception = sym on_exception,
    after_fault = sym after_fault,
);

unsafe extern "C" {
    /// The exception stubs (`global_asm!` above), 16 bytes per vector.
    fn exception_stubs();
    /// Where an aborted command's vCPU resumes (`global_asm!` above).
    fn fault_resume();
}

/// Rust entry of every vCPU, on its own stack.
extern "C" fn main(vcpu: u64) -> ! {
    install_exception_handlers();
    let mailbox = Mailbox::of(vcpu);
    mailbox.write(REG_HELLO, vcpu);
    serve(vcpu, mailbox)
}

/// Rust entry of a vCPU whose command faulted, on its emptied stack.
extern "C" fn after_fault(vcpu: u64) -> ! {
    let mailbox = Mailbox::of(vcpu);
    let vector = FAULTS[vcpu as usize].packed.load(Relaxed) & 0xff;
    mailbox.write(REG_RESULT, FAULTED | vector);
    serve(vcpu, mailbox)
}

/// The command loop.
fn serve(vcpu: u64, mailbox: Mailbox) -> ! {
    loop {
        let command = mailbox.read(REG_CMD);
        let result = execute(vcpu, mailbox, command);
        mailbox.write(REG_RESULT, result);
    }
}

/// Reads the arguments `command` takes, executes it and returns its result.
fn execute(vcpu: u64, mailbox: Mailbox, command: u64) -> u64 {
    let arg0 = || mailbox.read(REG_ARG0);
    let arg1 = || mailbox.read(REG_ARG1);
    let arg2 = || mailbox.read(REG_ARG2);
    let bad = BAD_COMMAND | command;
    match command {
        CMD_PING => PING_REPLY,
        CMD_READ => {
            let (addr, size) = (arg0(), arg1());
            load(addr, size).unwrap_or(bad)
        }
        CMD_WRITE => {
            let (addr, value, size) = (arg0(), arg1(), arg2());
            store(addr, value, size).map_or(bad, |()| 0)
        }
        CMD_FILL => {
            let (addr, len, byte) = (arg0(), arg1(), arg2());
            fill(addr, len, byte as u8);
            0
        }
        CMD_CHECKSUM => {
            let (addr, len) = (arg0(), arg1());
            bytes(addr, len).fold(FNV_OFFSET_BASIS, |hash, a| {
                (hash ^ u64::from(peek::<u8>(a))).wrapping_mul(FNV_PRIME)
            })
        }
        CMD_TOUCH_READ => {
            let (addr, stride, count) = (arg0(), arg1(), arg2());
            for k in 0..count {
                peek::<u8>(addr.wrapping_add(k.wrapping_mul(stride)));
            }
            count
        }
        CMD_TOUCH_WRITE => {
            let (addr, stride, count) = (arg0(), arg1(), arg2());
            for k in 0..count {
                poke(addr.wrapping_add(k.wrapping_mul(stride)), k as u8);
            }
            count
        }
        CMD_COPY => {
            let (dst, src, len) = (arg0(), arg1(), arg2());
            for k in 0..len {
                poke(dst.wrapping_add(k), peek::<u8>(src.wrapping_add(k)));
            }
            0
        }
        CMD_PRINT => {
            let (addr, len) = (arg0(), arg1());
            bytes(addr, len).for_each(|a| out_byte(CONSOLE_PORT, peek(a)));
            0
        }
        CMD_LAST_FAULT => FAULTS[vcpu as usize].packed.load(Relaxed),
        CMD_LAST_FAULT_RIP => FAULTS[vcpu as usize].rip.load(Relaxed),
        CMD_SPIN => {
            (0..arg0()).for_each(|_| core::hint::spin_loop());
            0
        }
        CMD_TRIPLE_FAULT => triple_fault(),
        CMD_EXIT => exit(arg0() as u32),
        CMD_PORT_OUT => {
            let (port, value, size) = (arg0(), arg1(), arg2());
            port_out(port as u16, value as u32, size).map_or(bad, |()| 0)
        }
        CMD_PORT_IN => {
            let (port, size) = (arg0(), arg1());
            port_in(port as u16, size).unwrap_or(bad)
        }
        CMD_STORE16 => {
            let (addr, low, high) = (arg0(), arg1(), arg2());
            store16(addr, low, high);
            0
        }
        CMD_LOAD16 => {
            let (addr, half) = (arg0(), arg1());
            let (low, high) = load16(addr);
            if half == 0 { low } else { high }
        }
        CMD_REP_STOSB => {
            let (addr, len, byte) = (arg0(), arg1(), arg2());
            rep_stosb(addr, len, byte as u8);
            0
        }
        CMD_REP_MOVSB => {
            let (dst, src, len) = (arg0(), arg1(), arg2());
            rep_movsb(dst, src, len);
            0
        }
        CMD_XADD => {
            let (addr, value) = (arg0(), arg1());
            xadd(addr, value)
        }
        CMD_MARKER => {
            let (addr, len, mut state) = (arg0(), arg1(), arg2());
            let mut hash = FNV_OFFSET_BASIS;
            for k in 0..len / 8 {
                let word = marker_next(&mut state);
                poke(addr.wrapping_add(8 * k), word);
                for b in word.to_le_bytes() {
                    hash = (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
                }
            }
            hash
        }
        _ => bad,
    }
}

/// A vCPU's mailbox: 8-byte MMIO registers (`guest_abi::holding_cell`).
#[derive(Clone, Copy)]
struct Mailbox(u64);

impl Mailbox {
    fn of(vcpu: u64) -> Self {
        Self(MAILBOX_BASE + vcpu * MAILBOX_STRIDE)
    }

    fn read(self, reg: u64) -> u64 {
        peek(self.0 + reg)
    }

    fn write(self, reg: u64, value: u64) {
        poke(self.0 + reg, value);
    }
}

// Accesses to the addresses lendvm's ABI and the host's commands name: the
// host owns those addresses. The guest keeps no Rust object outside its own
// image, which the commands stay clear of, so such an access cannot break the
// guest's memory safety, and one that faults is aborted by `on_exception`.

/// One volatile load of a `T` at `addr`, which must be aligned for `T`.
fn peek<T>(addr: u64) -> T {
    // SAFETY: see above.
    unsafe { read_volatile(addr as *const T) }
}

/// One volatile store of a `T` at `addr`, which must be aligned for `T`.
fn poke<T>(addr: u64, value: T) {
    // SAFETY: see above.
    unsafe { write_volatile(addr as *mut T, value) }
}

/// One load (one `mov`) of `size` (1, 2, 4 or 8) bytes at `addr`, aligned
/// or not, zero-extended.
fn load(addr: u64, size: u64) -> Option<u64> {
    let value: u64;
    macro_rules! mov {
        ($insn:literal) => {
            asm!($insn, a = in(reg) addr, v = lateout(reg) value, options(nostack, preserves_flags))
        };
    }
    // SAFETY: see above.
    unsafe {
        match size {
            1 => mov!("movzx {v:e}, byte ptr [{a}]"),
            2 => mov!("movzx {v:e}, word ptr [{a}]"),
            4 => mov!("mov {v:e}, dword ptr [{a}]"),
            8 => mov!("mov {v}, qword ptr [{a}]"),
            _ => return None,
        }
    }
    Some(value)
}

/// One store (one `mov`) of the low `size` (1, 2, 4 or 8) bytes of `value`
/// at `addr`, aligned or not.
fn store(addr: u64, value: u64, size: u64) -> Option<()> {
    macro_rules! mov {
        ($insn:literal) => {
            asm!($insn, a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
        };
    }
    // SAFETY: see above.
    unsafe {
        match size {
            1 => mov!("mov byte ptr [{a}], {v:l}"),
            2 => mov!("mov word ptr [{a}], {v:x}"),
            4 => mov!("mov dword ptr [{a}], {v:e}"),
            8 => mov!("mov qword ptr [{a}], {v}"),
            _ => return None,
        }
    }
    Some(())
}

/// One 16-byte SSE store (`movdqu`) of `high:low` at `addr`.
fn store16(addr: u64, low: u64, high: u64) {
    // SAFETY: see above; xmm0/xmm1 are declared clobbered.
    unsafe {
        asm!(
            "movq xmm0, {lo}",
            "movq xmm1, {hi}",
            "punpcklqdq xmm0, xmm1",
            "movdqu xmmword ptr [{a}], xmm0",
            a = in(reg) addr, lo = in(reg) low, hi = in(reg) high,
            out("xmm0") _, out("xmm1") _,
            options(nostack, preserves_flags),
        )
    }
}

/// One 16-byte SSE load (`movdqu`) at `addr`: (low, high).
fn load16(addr: u64) -> (u64, u64) {
    let (low, high): (u64, u64);
    // SAFETY: see above; xmm0 is declared clobbered.
    unsafe {
        asm!(
            "movdqu xmm0, xmmword ptr [{a}]",
            "movq {lo}, xmm0",
            "psrldq xmm0, 8",
            "movq {hi}, xmm0",
            a = in(reg) addr, lo = lateout(reg) low, hi = lateout(reg) high,
            out("xmm0") _,
            options(nostack, preserves_flags),
        )
    }
    (low, high)
}

/// One `rep stosb` of `len` bytes of `byte` at `addr`.
fn rep_stosb(addr: u64, len: u64, byte: u8) {
    // SAFETY: see above. DF is clear (the boot ABI's RFLAGS, never set here).
    unsafe {
        asm!(
            "rep stosb",
            inout("rdi") addr => _, inout("rcx") len => _, in("al") byte,
            options(nostack, preserves_flags),
        )
    }
}

/// One `rep movsb` of `len` bytes from `src` to `dst`.
fn rep_movsb(dst: u64, src: u64, len: u64) {
    // SAFETY: see above. DF is clear.
    unsafe {
        asm!(
            "rep movsb",
            inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") len => _,
            options(nostack, preserves_flags),
        )
    }
}

/// One 8-byte `lock xadd` of `value` at `addr`; returns the old value.
fn xadd(addr: u64, value: u64) -> u64 {
    let old: u64;
    // SAFETY: see above.
    unsafe {
        asm!(
            "lock xadd qword ptr [{a}], {v}",
            a = in(reg) addr, v = inout(reg) value => old,
            options(nostack),
        )
    }
    old
}

/// The addresses of the `len` bytes at `addr`.
fn bytes(addr: u64, len: u64) -> impl Iterator<Item = u64> {
    (0..len).map(move |k| addr.wrapping_add(k))
}

/// Sets the `len` bytes at `addr` to `byte`: single bytes up to the first
/// 8-byte boundary, then 8 bytes per store, then the remaining bytes.
fn fill(mut addr: u64, mut len: u64, byte: u8) {
    while len > 0 && !addr.is_multiple_of(8) {
        poke(addr, byte);
        (addr, len) = (addr.wrapping_add(1), len - 1);
    }
    while len >= 8 {
        poke(addr, u64::from_ne_bytes([byte; 8]));
        (addr, len) = (addr.wrapping_add(8), len - 8);
    }
    bytes(addr, len).for_each(|a| poke(a, byte));
}

/// A vCPU's last fault.
struct Fault {
    /// `vector | error_code << 8`, 0 if none.
    packed: AtomicU64,
    /// RIP of the faulting instruction, 0 if none.
    rip: AtomicU64,
}

static FAULTS: [Fault; MAX_VCPUS as usize] = [const {
    Fault {
        packed: AtomicU64::new(0),
        rip: AtomicU64::new(0),
    }
}; MAX_VCPUS as usize];

/// What `exception_common` hands to [`on_exception`]: the vector and error
/// code the stub pushed, then the frame the CPU pushed for IRETQ.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Writes trap gates for vectors 0..=31 to the IDT, each pointing at its
/// stub. Every vCPU does it at startup; they all write the same values.
fn install_exception_handlers() {
    const PRESENT_DPL3_TRAP_GATE: u64 = 0xef;
    for vector in 0..32 {
        let handler = exception_stubs as *const () as u64 + 16 * vector;
        let low = (handler & 0xffff)
            | u64::from(USER_CODE_SELECTOR) << 16
            | PRESENT_DPL3_TRAP_GATE << 40
            | (handler >> 16 & 0xffff) << 48;
        let gate = IDT_BASE + 16 * vector;
        poke(gate, low);
        poke(gate + 8, handler >> 32);
    }
}

/// Records the fault of the vCPU whose stack holds `frame` and rewrites the
/// frame so that IRETQ enters `fault_resume` on that vCPU's emptied stack,
/// aborting the command. Returns the vCPU id.
extern "C" fn on_exception(frame: &mut ExceptionFrame) -> u64 {
    let offset = (frame as *mut ExceptionFrame as u64).wrapping_sub(&raw const STACKS as u64);
    let vcpu = offset / STACK_SIZE;
    if vcpu >= MAX_VCPUS {
        panic!(
            "exception {} at {:#x} off the vCPU stacks",
            frame.vector, frame.rip
        );
    }
    let fault = &FAULTS[vcpu as usize];
    fault.packed.store(
        frame.vector | (frame.error_code & 0xffff_ffff) << 8,
        Relaxed,
    );
    fault.rip.store(frame.rip, Relaxed);
    frame.rip = fault_resume as *const () as u64;
    frame.rsp = &raw const STACKS as u64 + (vcpu + 1) * STACK_SIZE;
    vcpu
}

/// Clears the IDT and raises #UD: with no gate present the VM triple-faults.
fn triple_fault() -> ! {
    for entry in 0..IDT_ENTRIES * 2 {
        poke(IDT_BASE + 8 * entry, 0u64);
    }
    // SAFETY: `ud2` only raises #UD, which now shuts the VM down.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Ends the VM with exit code `code`.
fn exit(code: u32) -> ! {
    loop {
        // SAFETY: port output touches no memory; the boot ABI allows every
        // port; a write to the exit port ends the VM.
        unsafe {
            asm!("out dx, eax", in("dx") EXIT_PORT, in("eax") code, options(nomem, nostack, preserves_flags))
        }
    }
}

/// One `out` of `size` (1, 2 or 4) bytes of `value` to `port`.
fn port_out(port: u16, value: u32, size: u64) -> Option<()> {
    // SAFETY: port output touches no memory; the boot ABI allows every port.
    unsafe {
        match size {
            1 => {
                asm!("out dx, al", in("dx") port, in("al") value as u8, options(nomem, nostack, preserves_flags))
            }
            2 => {
                asm!("out dx, ax", in("dx") port, in("ax") value as u16, options(nomem, nostack, preserves_flags))
            }
            4 => {
                asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
            }
            _ => return None,
        }
    }
    Some(())
}

/// One `in` of `size` (1, 2 or 4) bytes from `port`, zero-extended.
fn port_in(port: u16, size: u64) -> Option<u64> {
    // SAFETY: port input touches no memory; the boot ABI allows every port.
    unsafe {
        Some(match size {
            1 => {
                let v: u8;
                asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags));
                u64::from(v)
            }
            2 => {
                let v: u16;
                asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags));
                u64::from(v)
            }
            4 => {
                let v: u32;
                asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags));
                u64::from(v)
            }
            _ => return None,
        })
    }
}

fn out_byte(port: u16, byte: u8) {
    // SAFETY: port output touches no memory; the boot ABI allows every port.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") byte, options(nomem, nostack, preserves_flags))
    }
}

/// The lendvm console, for panic messages.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| out_byte(CONSOLE_PORT, b));
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Console writes cannot fail.
    let _ = writeln!(Console, "holding-cell: {info}");
    exit(PANIC_EXIT_CODE)
}
