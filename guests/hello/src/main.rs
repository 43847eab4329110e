//! The smallest useful native lendvm guest, and an example for writing one.
//!
//! lendvm enters every vCPU at `_start` in 64-bit long mode at CPL3 with
//! RDI = its vCPU id and RDX = the number of vCPUs (`lendvm-guest-abi`, `native`). Each
//! vCPU greets on the console port; vCPU 0 then fills 1 MiB of RAM at
//! 4 MiB, checks it, waits until every vCPU has greeted, reports and stops
//! the VM through the exit port with code 0 (1 if the memory check
//! failed). The other vCPUs wait for the VM to stop.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::native::{CONSOLE_PORT, EXIT_PORT};

const VCPUS: u64 = 8;
const STACK_SIZE: u64 = 16 << 10;
/// The RAM vCPU 0 exercises (the image itself lies at 1 MiB).
const SCRATCH: u64 = 4 << 20;
const SCRATCH_LEN: u64 = 1 << 20;

/// vCPUs that have greeted.
static GREETED: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE as usize]; VCPUS as usize]);
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE as usize]; VCPUS as usize]);

global_asm!(
    ".globl _start",
    "_start:",
    "    cmp rdi, {vcpus}",
    "    jae 2f",
    "    lea rax, [rdi + 1]",
    "    imul rax, rax, {stack_size}",
    "    lea rsp, [rip + {stacks}]",
    "    add rsp, rax",
    "    call {main}",
    "2:  jmp 2b",
    vcpus = const VCPUS,
    stack_size = const STACK_SIZE,
    stacks = sym STACKS,
    main = sym main,
);

extern "C" fn main(vcpu: u64, _boot_info: u64, vcpus: u64) -> ! {
    let _ = writeln!(Console, "hello from lendvm guest vCPU {vcpu}");
    GREETED.fetch_add(1, Ordering::SeqCst);
    if vcpu != 0 {
        loop {
            core::hint::spin_loop();
        }
    }
    for i in 0..SCRATCH_LEN / 8 {
        // SAFETY: [SCRATCH, +SCRATCH_LEN) is guest RAM the image does not
        // use (lendvm's default RAM is 64 MiB at 0); nothing else aliases it.
        unsafe { write_volatile((SCRATCH + i * 8) as *mut u64, i ^ 0x5a5a) };
    }
    // SAFETY: as above.
    let ok = (0..SCRATCH_LEN / 8)
        .all(|i| unsafe { read_volatile((SCRATCH + i * 8) as *const u64) } == i ^ 0x5a5a);
    let _ = writeln!(
        Console,
        "1 MiB of RAM at {SCRATCH:#x}: {}",
        if ok { "ok" } else { "BAD" }
    );
    // Let every vCPU greet before the VM stops (RDX = 0: nobody said).
    while GREETED.load(Ordering::SeqCst) < vcpus.min(VCPUS) {
        core::hint::spin_loop();
    }
    exit(u32::from(!ok))
}

fn exit(code: u32) -> ! {
    loop {
        // SAFETY: port output touches no memory; the boot ABI allows every
        // port; a write to the exit port stops the VM.
        unsafe {
            asm!("out dx, eax", in("dx") EXIT_PORT, in("eax") code, options(nomem, nostack, preserves_flags))
        }
    }
}

/// The lendvm console (the debugcon port).
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: port output touches no memory; every port is allowed.
            unsafe {
                asm!("out dx, al", in("dx") CONSOLE_PORT, in("al") b, options(nomem, nostack, preserves_flags))
            }
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "guest panic: {info}");
    exit(0xdead)
}
