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

/// lendvm's access region: the top of the system region, installed
/// read-only in every VM (DESIGN D11). The access vCPU runs on its own
/// TSS, page tables and stubs here, so no guest (a native guest may write
/// its GDT, IDT and tables; a kernel may map any address) can change what
/// the access vCPU executes or where it loads and stores: it always
/// reaches its `out` and returns. In a kernel's VM it is the only lendvm
/// memory, inside the 32-bit MMIO hole where RAM never goes (D12).
pub const ACCESS_REGION_BASE: u64 = SYSTEM_REGION_BASE + 0x1b_a000;
/// Its size: TSS with I/O bitmap (3 pages), PML4, PDPT, the PDs, stubs.
pub const ACCESS_REGION_SIZE: u64 = SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE - ACCESS_REGION_BASE;
const ACCESS_TSS: u64 = ACCESS_REGION_BASE;
const ACCESS_PML4: u64 = ACCESS_REGION_BASE + 3 * PAGE;
/// Accessed and dirty bits, preset so that no page walk writes the
/// read-only access tables.
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;

/// One region image being built: `put` stores a little-endian u64 at a
/// guest address.
struct Image {
    base: u64,
    bytes: Vec<u8>,
}

impl Image {
    fn new(base: u64, end: u64) -> Image {
        Image {
            base,
            bytes: vec![0; (end - base) as usize],
        }
    }

    fn at(&self, gpa: u64) -> usize {
        (gpa - self.base) as usize
    }

    fn put(&mut self, gpa: u64, v: u64) {
        let at = self.at(gpa);
        self.bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Identity-map [0, IDENTITY_MAP_SIZE) with 2 MiB user pages: PML4 at
    /// `pml4`, one PDPT after it, then `PD_COUNT` page directories.
    fn identity_map(&mut self, pml4: u64, extra: u64, leaf_extra: u64) {
        let table = PTE_P | PTE_RW | PTE_US | extra;
        let pdpt = pml4 + PAGE;
        let pd = pdpt + PAGE;
        self.put(pml4, pdpt | table);
        for i in 0..PD_COUNT {
            self.put(pdpt + 8 * i, (pd + i * PAGE) | table);
            for j in 0..512u64 {
                self.put(
                    pd + i * PAGE + 8 * j,
                    ((i << 30) + j * HUGE) | table | PTE_PS | leaf_extra,
                );
            }
        }
    }

    /// A TSS at `tss` whose I/O bitmap allows every port: only the bitmap
    /// base matters (no privilege changes happen at CPL3 with DPL3
    /// handlers); the bitmap is zero and ends with 0xff.
    fn tss(&mut self, tss: u64) {
        let at = self.at(tss);
        self.bytes[at + 0x66..at + 0x68].copy_from_slice(&(IOMAP_OFFSET as u16).to_le_bytes());
        self.bytes[at + TSS_LIMIT as usize] = 0xff;
    }
}

// ----- the access vCPU's stubs (see memory/access_vcpu.rs) -----

/// The port the stubs report completion on (nothing else uses it).
pub(crate) const STUB_PORT: u16 = 0xef;
/// Where the stubs live: the last page of the access region.
pub(crate) const STUB_BASE: u64 = SYSTEM_REGION_BASE + 0x1f_f000;
/// Distance between stubs.
pub(crate) const STUB_STRIDE: u64 = 16;

/// The stubs, one per (direction, size), `STUB_STRIDE` bytes apart, loads
/// first: `mov {bl,bx,ebx,rbx}, [rdi]` or `mov [rdi], {al,ax,eax,rax}`,
/// then `xor eax, eax; out 0xef, al`, so the value itself never appears
/// in the port data KVM hands to lendvm.
pub(crate) fn stub_code() -> [u8; 128] {
    let mut code = [0xccu8; 128];
    let stubs: [&[u8]; 8] = [
        &[0x8a, 0x1f],       // mov bl, [rdi]
        &[0x66, 0x8b, 0x1f], // mov bx, [rdi]
        &[0x8b, 0x1f],       // mov ebx, [rdi]
        &[0x48, 0x8b, 0x1f], // mov rbx, [rdi]
        &[0x88, 0x07],       // mov [rdi], al
        &[0x66, 0x89, 0x07], // mov [rdi], ax
        &[0x89, 0x07],       // mov [rdi], eax
        &[0x48, 0x89, 0x07], // mov [rdi], rax
    ];
    const TAIL: [u8; 4] = [0x31, 0xc0, 0xe6, STUB_PORT as u8]; // xor eax,eax; out 0xef,al
    for (i, s) in stubs.iter().enumerate() {
        let at = i * STUB_STRIDE as usize;
        code[at..at + s.len()].copy_from_slice(s);
        code[at + s.len()..at + s.len() + TAIL.len()].copy_from_slice(&TAIL);
    }
    code
}

/// The native part of the system region from its start to the end of the
/// page tables, made once per process (every native VM gets a copy).
fn native_image() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut img = Image::new(SYSTEM_REGION_BASE, PD_BASE + PD_COUNT * PAGE);
        for (i, d) in gdt().iter().enumerate() {
            img.put(GDT_BASE + 8 * i as u64, *d);
        }
        // The IDT stays zero: no gate is present until the guest writes one.
        img.identity_map(PML4_BASE, 0, 0);
        img.tss(TSS_BASE);
        img.bytes
    })
}

/// The access region's contents, made once per process.
fn access_image() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut img = Image::new(ACCESS_REGION_BASE, SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE);
        img.tss(ACCESS_TSS);
        img.identity_map(ACCESS_PML4, PTE_A, PTE_D);
        let stubs = img.at(STUB_BASE);
        let code = stub_code();
        img.bytes[stubs..stubs + code.len()].copy_from_slice(&code);
        img.bytes
    })
}

/// Write the whole system region (native part and access region) into
/// `file` (mapped at `SYSTEM_REGION_BASE`): a fresh memfd, so untouched
/// bytes read zero. Public so raw-KVM references (benchmarks) can enter
/// the same mode.
pub fn build_system_region(file: &GuestMemFile) -> gmem::Result<()> {
    file.write_at(0, native_image())?;
    file.write_at(ACCESS_REGION_BASE - SYSTEM_REGION_BASE, access_image())
}

/// Write the access region alone into `file` (mapped at
/// `ACCESS_REGION_BASE`): a VM that boots a kernel needs nothing else.
pub(crate) fn build_access_region(file: &GuestMemFile) -> gmem::Result<()> {
    file.write_at(0, access_image())
}

// The system region's layout is checked when lendvm is compiled.
const _: () = {
    assert!(TSS_BASE + TSS_LIMIT < PML4_BASE);
    assert!(PD_BASE + PD_COUNT * PAGE <= ACCESS_REGION_BASE);
    assert!(ACCESS_REGION_BASE.is_multiple_of(PAGE));
    assert!(ACCESS_TSS + TSS_LIMIT < ACCESS_PML4);
    assert!(ACCESS_PML4 + (2 + PD_COUNT) * PAGE <= STUB_BASE);
    assert!(STUB_BASE + 128 <= SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE);
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

/// Special registers of the access vCPU: the native mode's, on the access
/// region's TSS and page tables, with no GDT or IDT (segments are loaded
/// from these registers; a fault in a stub ends in a triple fault, which
/// the access vCPU reports as an error instead of running anything).
pub(crate) fn access_sregs(sregs: &mut kvm_sregs) {
    native_sregs(sregs);
    sregs.tr.base = ACCESS_TSS;
    sregs.gdt.base = 0;
    sregs.gdt.limit = 0;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = ACCESS_PML4;
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

/// Where the Linux 64-bit boot protocol's entry tables live in guest RAM,
/// as other microVMs place them (DESIGN D12: a kernel's VM has no lendvm
/// system region): a three-entry GDT and page tables identity-mapping the
/// first 4 GiB with 2 MiB pages, all below the EBDA.
pub const BOOT_GDT: u64 = 0x500;
/// The boot PML4; the PDPT and four page directories follow it.
pub const BOOT_PML4: u64 = 0x9000;
const BOOT_PDPT: u64 = BOOT_PML4 + PAGE;
const BOOT_PD: u64 = BOOT_PDPT + PAGE;
/// GiB the boot page tables map.
const BOOT_MAP_GIB: u64 = 4;
/// One past the last byte of the boot page tables.
pub const BOOT_TABLES_END: u64 = BOOT_PD + BOOT_MAP_GIB * PAGE;

/// The Linux 64-bit entry's GDT and page tables, as (guest address,
/// bytes) to write into guest RAM.
pub fn linux64_tables() -> Vec<(u64, Vec<u8>)> {
    let words = |w: &[u64]| w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let gdt = [
        0,
        segment_descriptor(0x9a, 0xa), // 0x08: 64-bit code, DPL 0
        segment_descriptor(0x92, 0xc), // 0x10: data, DPL 0
    ];
    let table = PTE_P | PTE_RW;
    let pdpt: Vec<u64> = (0..BOOT_MAP_GIB)
        .map(|i| (BOOT_PD + i * PAGE) | table)
        .collect();
    let pds: Vec<u64> = (0..BOOT_MAP_GIB * 512)
        .map(|j| (j * HUGE) | table | PTE_PS)
        .collect();
    vec![
        (BOOT_GDT, words(&gdt)),
        (BOOT_PML4, words(&[BOOT_PDPT | table])),
        (BOOT_PDPT, words(&pdpt)),
        (BOOT_PD, words(&pds)),
    ]
}

/// Special registers for Linux's 64-bit boot protocol: long mode at CPL0,
/// flat segments from the tables of [`linux64_tables`] (in guest RAM).
pub fn linux64_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = flat(KERNEL_CODE_SELECTOR, 0xb, true);
    set_data_segments(sregs, flat(KERNEL_DATA_SELECTOR, 0x3, false));
    sregs.tr = kvm_segment {
        limit: 0x67,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x8000_0033; // PG | NE | ET | MP | PE
    sregs.cr3 = BOOT_PML4;
    sregs.cr4 = 0x620; // OSXMMEXCPT | OSFXSR | PAE
    sregs.efer = 0x500; // LMA | LME
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
