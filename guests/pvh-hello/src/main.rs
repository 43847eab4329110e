//! The smallest guest that boots with the Xen PVH boot protocol, the way
//! Firecracker, cloud-hypervisor and QEMU (`-M microvm -kernel`) boot
//! images: the same ELF runs unchanged on each of them and on lendvm.
//!
//! A PVH loader loads the `PT_LOAD` segments at their physical addresses
//! (1 MiB, `guests/link.ld`) and enters the address in the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note, in 32-bit protected mode with paging
//! off, flat segments, CPL0, interrupts off and EBX = the guest-physical
//! address of `struct hvm_start_info`. Nothing else is promised, not even a
//! stack. The guest checks the start info's magic, prints one line on COM1,
//! writes lendvm's boot-complete probe, resets through the i8042 and halts
//! if the reset does nothing. It is all 32-bit assembly: 64-bit code would
//! need page tables first.

#![no_std]
#![no_main]

use core::arch::global_asm;

/// `XEN_HVM_START_MAGIC_VALUE`, at offset 0 of `struct hvm_start_info`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note whose descriptor is the 32-bit
/// physical entry address.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// COM1, a 16550 UART: its transmit holding register ...
const COM1_THR: u16 = 0x3f8;
/// ... and its line status register, whose bit 5 says the THR is empty.
const COM1_LSR: u16 = 0x3fd;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// lendvm's boot-complete probe: a byte written here records the
/// guest-reported boot time. Other VMMs ignore it.
const BOOT_COMPLETE_PORT: u8 = 0xee;
const BOOT_COMPLETE_VALUE: u8 = 0x7b;
/// The i8042 command port and its "pulse the reset line" command.
const I8042_COMMAND_PORT: u8 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// The guest's own stack (`call` needs one).
const STACK_SIZE: usize = 256;

global_asm!(
    // The PVH entry note. It goes in a section of type SHT_NOTE, for which
    // the linker makes a PT_NOTE segment (loaders read notes from the
    // program headers). Not named `.note.*`: guests/link.ld discards those.
    // 4-byte alignment throughout, as Linux's own notes (QEMU pads the name
    // to the segment's alignment).
    ".pushsection .xen_pvh_note, \"a\", @note",
    ".balign 4",
    ".long 4", // n_namesz: "Xen\0"
    ".long 4", // n_descsz: a 32-bit address
    ".long {note_type}",
    ".asciz \"Xen\"",
    ".long _start",
    ".popsection",
    //
    ".pushsection .text, \"ax\"",
    ".code32",
    ".globl _start",
    "_start:",
    // The string instructions below count up.
    "    cld",
    "    mov esp, offset .Lstack + {stack_size}",
    // A loader that is not PVH-aware (or a broken one) enters with EBX not
    // pointing at a start info: say so instead of greeting.
    "    mov esi, offset .Lhello",
    "    cmp dword ptr [ebx], {magic}",
    "    je 1f",
    "    mov esi, offset .Lbad_start_info",
    "1:  call 4f",
    // Tell lendvm that the guest has booted.
    "    mov al, {done_value}",
    "    out {done_port}, al",
    // Reset, which ends the VM on lendvm and Firecracker.
    "    mov al, {reset}",
    "    out {i8042}, al",
    // Without an i8042 (QEMU microvm) the guest stops here.
    "2:  cli",
    "    hlt",
    "    jmp 2b",
    //
    // Prints the NUL-terminated string at ESI on COM1, waiting for the
    // transmitter before each byte as a real 16550 requires. Clobbers EAX,
    // EDX and ESI.
    "4:  lodsb",
    "    test al, al",
    "    jz 5f",
    "    mov ah, al",
    "    mov dx, {lsr}",
    "3:  in al, dx",
    "    test al, {thr_empty}",
    "    jz 3b",
    "    mov al, ah",
    "    mov dx, {thr}",
    "    out dx, al",
    "    jmp 4b",
    "5:  ret",
    ".code64",
    ".popsection",
    //
    ".pushsection .rodata, \"a\"",
    ".Lhello: .asciz \"Hello from a PVH guest\\n\"",
    ".Lbad_start_info: .asciz \"PVH guest: bad start_info\\n\"",
    ".popsection",
    //
    ".pushsection .bss, \"aw\", @nobits",
    ".balign 16",
    ".Lstack: .skip {stack_size}",
    ".popsection",
    note_type = const XEN_ELFNOTE_PHYS32_ENTRY,
    stack_size = const STACK_SIZE,
    magic = const START_INFO_MAGIC,
    done_value = const BOOT_COMPLETE_VALUE,
    done_port = const BOOT_COMPLETE_PORT,
    reset = const I8042_RESET,
    i8042 = const I8042_COMMAND_PORT,
    lsr = const COM1_LSR,
    thr_empty = const LSR_THR_EMPTY,
    thr = const COM1_THR,
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing in this guest can panic: it is all assembly.
    loop {}
}
