//! The guest both sides run, and its entry state.

use kvm_bindings::kvm_regs;
use vmm::{BootReg, Vm};

// ----- guest layout ----------------------------------------------------------------

pub(crate) const PAGE: u64 = 4096;
/// The code binding / slot: a 64 KiB memfd holding the code page and the
/// DTB page.
pub(crate) const CODE_GPA: u64 = 0x10_0000;
pub(crate) const CODE_SIZE: u64 = 64 << 10;
/// The DTB page (content irrelevant), in the code binding.
pub(crate) const DTB_GPA: u64 = CODE_GPA + 0x1000;
/// The LEND variant of the code binding (`LendVm::new`).
pub(crate) const LEND_CODE_SIZE: u64 = 4 << 20;
pub(crate) const LEND_DTB_GPA: u64 = 0x20_0000;
/// Where the first-touch memory lives.
pub(crate) const DATA_GPA: u64 = 0x4000_0000;
/// Where the 2 MiB bind/unbind benchmark binds.
pub(crate) const BIND_GPA: u64 = 0x8000_0000;
pub(crate) const BIND_SIZE: u64 = 2 << 20;
/// An unbound address in lendvm's MMIO window [0xC000_0000, 4 GiB).
pub(crate) const MMIO_ADDR: u64 = 0xF000_0000;
/// The ioeventfd address (also in the window, never bound).
pub(crate) const IOEVENT_ADDR: u64 = 0xF000_1000;
/// lendvm's exit port; the raw reference sees it as a port-I/O exit.
pub(crate) const EXIT_PORT: u16 = 0xf4;

/// Entry points, as offsets in the code page.
pub(crate) const TOUCH: u64 = CODE_GPA;
pub(crate) const STORE_LOOP: u64 = CODE_GPA + 0x20;
pub(crate) const EXIT: u64 = CODE_GPA + 0x40;

/// The guest code (64-bit, runs at CPL3), hand-assembled.
pub(crate) fn guest_code() -> [u8; 0x80] {
    let mut code = [0xccu8; 0x80]; // int3 everywhere else
    // TOUCH: one byte per page. RSI = start, RDI = stride, ECX = pages.
    let touch: &[u8] = &[
        0x88, 0x06, //       0x00 loop: mov [rsi], al
        0x48, 0x01, 0xfe, // 0x02       add rsi, rdi
        0xff, 0xc9, //       0x05       dec ecx
        0x75, 0xf7, //       0x07       jnz loop
        0xe7, 0xf4, //       0x09       out 0xf4, eax   (end the VM)
    ];
    // STORE_LOOP: R9 stores of EBX to [RSI], then one store to [RDX], forever.
    let store: &[u8] = &[
        0x4c, 0x89, 0xc9, // 0x20 start: mov rcx, r9
        0x89, 0x1e, //       0x23 loop:  mov [rsi], ebx
        0xff, 0xc9, //       0x25        dec ecx
        0x75, 0xfa, //       0x27        jnz loop
        0x89, 0x1a, //       0x29        mov [rdx], ebx
        0xeb, 0xf3, //       0x2b        jmp start
    ];
    // EXIT: end the VM at once.
    let exit: &[u8] = &[
        0xe7, 0xf4, //       0x40 out 0xf4, eax
    ];
    code[..touch.len()].copy_from_slice(touch);
    code[0x20..0x20 + store.len()].copy_from_slice(store);
    code[0x40..0x40 + exit.len()].copy_from_slice(exit);
    code
}

/// The registers a guest starts with (everything else 0).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Entry {
    pub(crate) rip: u64,
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) r9: u64,
}

impl Entry {
    /// The boot context of a lendvm VM (GPR indexes in x86 encoding order).
    pub(crate) fn apply(&self, vm: &Vm) {
        let regs = [
            (BootReg::Pc, self.rip),
            (BootReg::Gpr(0), self.rax),
            (BootReg::Gpr(1), self.rcx),
            (BootReg::Gpr(2), self.rdx),
            (BootReg::Gpr(3), self.rbx),
            (BootReg::Gpr(6), self.rsi),
            (BootReg::Gpr(7), self.rdi),
            (BootReg::Gpr(9), self.r9),
        ];
        for (reg, v) in regs {
            vm.set_boot_reg(reg, v).expect("boot context");
        }
    }

    /// KVM_SET_REGS of the raw reference (RFLAGS as lendvm sets it).
    pub(crate) fn regs(&self) -> kvm_regs {
        kvm_regs {
            rflags: 2,
            rip: self.rip,
            rax: self.rax,
            rbx: self.rbx,
            rcx: self.rcx,
            rdx: self.rdx,
            rsi: self.rsi,
            rdi: self.rdi,
            r9: self.r9,
            ..Default::default()
        }
    }
}
