//! x86 CPU state for lendvm's native entry (see `native_abi`): the system
//! region (GDT, IDT, TSS, identity-map page tables) and the registers of a
//! vCPU entering 64-bit long mode at CPL3.
//!
//! Why CPL3: on this project's PVM hosts only CPL3 long-mode code runs
//! natively (CPL0 is emulated about 6000× slower), and the same state is
//! valid on VMX/SVM hosts. Why a TSS with an I/O bitmap: PVM ignores IOPL at
//! CPL3, so port access is decided by the bitmap alone (measured).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::native_abi::*;
use gmem::GuestMemFile;

const PAGE: u64 = 4096;
const HUGE: u64 = 2 << 20;
/// Page-table entry bits: present, writable, user, 2 MiB page.
const PTE_P: u64 = 1;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;

/// Offset of the I/O permission bitmap inside the TSS (right after the
/// 104-byte TSS), and the bitmap's length: one bit per port.
const IOMAP_OFFSET: u64 = 0x68;
const IOMAP_LEN: u64 = 65536 / 8;
/// TSS limit: TSS + bitmap + the terminating 0xff byte the CPU requires.
const TSS_LIMIT: u64 = IOMAP_OFFSET + IOMAP_LEN;

const PDPT_BASE: u64 = PML4_BASE + PAGE;
const PD_BASE: u64 = PDPT_BASE + PAGE;
const PD_COUNT: u64 = IDENTITY_MAP_SIZE >> 30;

/// A GDT code/data descriptor (flat, 4 GiB limit, granularity 4 KiB).
const fn segment_descriptor(access: u64, flags: u64) -> u64 {
    0xffff | (0xf << 48) | (access << 40) | (flags << 52)
}

/// The GDT: null, kernel code/data, user code32/data/code64, TSS (16 bytes).
fn gdt() -> [u64; 9] {
    let tss = TSS_BASE;
    let tss_low = (TSS_LIMIT & 0xffff)
        | ((tss & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit available TSS
        | (((TSS_LIMIT >> 16) & 0xf) << 48)
        | (((tss >> 24) & 0xff) << 56);
    [
        0,
        segment_descriptor(0x9a, 0xa), // 0x08 kernel code, L=1
        segment_descriptor(0x92, 0xc), // 0x10 kernel data
        0,
        segment_descriptor(0xfa, 0xc), // 0x20 user code, 32-bit
        segment_descriptor(0xf2, 0xc), // 0x28 user data
        segment_descriptor(0xfa, 0xa), // 0x30 user code, L=1
        tss_low,                       // 0x38 TSS, low half
        tss >> 32,                     // 0x40 TSS, high half
    ]
}

/// The system region's contents from its start to the end of the page
/// tables, made once per process (every native VM gets a copy).
fn system_region_image() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let at = |gpa: u64| (gpa - SYSTEM_REGION_BASE) as usize;
        let mut img = vec![0u8; at(PD_BASE + PD_COUNT * PAGE)];
        let mut put = |gpa: u64, v: u64| {
            img[at(gpa)..at(gpa) + 8].copy_from_slice(&v.to_le_bytes());
        };
        for (i, d) in gdt().iter().enumerate() {
            put(GDT_BASE + 8 * i as u64, *d);
        }
        // The IDT stays zero: no gate is present until the guest writes one.
        // Identity map [0, IDENTITY_MAP_SIZE): PML4 → one PDPT → 2 MiB pages.
        let table = PTE_P | PTE_RW | PTE_US;
        put(PML4_BASE, PDPT_BASE | table);
        for i in 0..PD_COUNT {
            put(PDPT_BASE + 8 * i, (PD_BASE + i * PAGE) | table);
            for j in 0..512u64 {
                put(
                    PD_BASE + i * PAGE + 8 * j,
                    ((i << 30) + j * HUGE) | table | PTE_PS,
                );
            }
        }
        // TSS: only the I/O map base matters (no privilege changes happen
        // at CPL3 with DPL3 handlers); the bitmap is zero (every port
        // allowed) and ends with 0xff.
        let tss = at(TSS_BASE);
        img[tss + 0x66..tss + 0x68].copy_from_slice(&(IOMAP_OFFSET as u16).to_le_bytes());
        img[tss + TSS_LIMIT as usize] = 0xff;
        img
    })
}

/// Write the system region's contents into `file` (mapped at
/// `SYSTEM_REGION_BASE`): a fresh memfd, so untouched bytes read zero.
/// Public so raw-KVM references (benchmarks) can enter the same mode.
pub fn build_system_region(file: &GuestMemFile) -> gmem::Result<()> {
    file.write_at(0, system_region_image())?;
    let stubs = crate::memory::access_vcpu::STUB_BASE - SYSTEM_REGION_BASE;
    file.write_at(stubs, &crate::memory::access_vcpu::stub_code())?;
    Ok(())
}

// The system region's layout is checked when lendvm is compiled.
const _: () = {
    assert!(TSS_BASE + TSS_LIMIT < PML4_BASE);
    assert!(PD_BASE + PD_COUNT * PAGE <= crate::memory::access_vcpu::STUB_BASE);
    assert!(crate::memory::access_vcpu::STUB_BASE + 64 <= SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE);
    assert!(IDT_BASE + IDT_ENTRIES * 16 <= TSS_BASE);
    assert!(SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE <= IDENTITY_MAP_SIZE);
};

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 3,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Load one data segment into DS, ES, FS, GS and SS.
fn set_data_segments(sregs: &mut kvm_sregs, data: kvm_segment) {
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
}

/// Special registers of a vCPU entering long mode at CPL3.
pub fn native_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = segment(USER_CODE_SELECTOR, 0xb, true);
    set_data_segments(sregs, segment(USER_DATA_SELECTOR, 0x3, false));
    sregs.tr = kvm_segment {
        base: TSS_BASE,
        limit: TSS_LIMIT as u32,
        selector: TSS_SELECTOR,
        type_: 0xb, // busy 64-bit TSS
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = GDT_BASE;
    sregs.gdt.limit = (gdt().len() * 8 - 1) as u16;
    sregs.idt.base = IDT_BASE;
    sregs.idt.limit = (IDT_ENTRIES * 16 - 1) as u16;
    sregs.cr0 = 0x8000_0033; // PG | NE | ET | MP | PE
    sregs.cr3 = PML4_BASE;
    sregs.cr4 = 0x620; // OSXMMEXCPT | OSFXSR | PAE
    sregs.efer = 0x500; // LMA | LME
}

fn flat(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        dpl: 0,
        ..segment(selector, type_, long)
    }
}

/// Special registers for the Xen PVH entry: 32-bit protected mode, paging
/// off, CPL0, flat segments (the PVH boot protocol). The guest loads its
/// own GDT before it reloads a segment, so none is provided.
pub fn pvh_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = flat(KERNEL_CODE_SELECTOR, 0xb, false);
    set_data_segments(sregs, flat(KERNEL_DATA_SELECTOR, 0x3, false));
    sregs.tr = kvm_segment {
        limit: 0x67,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.cr0 = 0x11; // ET | PE
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// Special registers for Linux's 64-bit boot protocol: long mode at CPL0
/// with lendvm's GDT (64-bit code at `KERNEL_CODE_SELECTOR`) and its
/// identity-map page tables.
pub fn linux64_sregs(sregs: &mut kvm_sregs) {
    native_sregs(sregs);
    sregs.cs = flat(KERNEL_CODE_SELECTOR, 0xb, true);
    set_data_segments(sregs, flat(KERNEL_DATA_SELECTOR, 0x3, false));
}

/// The general-purpose registers of the boot context, in x86 instruction
/// encoding order: index 0..15 = RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
/// R8..R15 (SPEC B-VM-6 on x86, DESIGN §5).
pub fn set_gpr(regs: &mut kvm_regs, index: usize, value: u64) {
    let slot = match index {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        15 => &mut regs.r15,
        _ => return,
    };
    *slot = value;
}

/// Number of general-purpose registers a boot context can set on x86.
pub const GPR_COUNT: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_descriptors_decode_as_intended() {
        let g = gdt();
        // User code: present, DPL 3, code, L=1, D=0.
        let ucode = g[(USER_CODE_SELECTOR >> 3) as usize];
        assert_eq!((ucode >> 40) & 0xff, 0xfa);
        assert_eq!((ucode >> 53) & 1, 1, "L bit");
        assert_eq!((ucode >> 54) & 1, 0, "D bit must be clear in long mode");
        let udata = g[(USER_DATA_SELECTOR >> 3) as usize];
        assert_eq!((udata >> 40) & 0xff, 0xf2);
        // TSS: base split over the two halves, limit covers the bitmap.
        let lo = g[(TSS_SELECTOR >> 3) as usize];
        let base = ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24) | (g[8] << 32);
        assert_eq!(base, TSS_BASE);
        assert_eq!((lo & 0xffff) | (((lo >> 48) & 0xf) << 16), TSS_LIMIT);
    }
}
