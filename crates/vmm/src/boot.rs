//! Standard boot paths: the Xen PVH boot protocol (an ELF with the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note, as Firecracker, cloud-hypervisor and
//! QEMU boot it) and Linux bzImages (64-bit boot protocol, version 2.12 or
//! later). An ELF without the note keeps lendvm's native entry.
//!
//! Each `prepare_*` writes the kernel and its boot structures into the VM's
//! bound memory (which must be host-writable then: not yet lent, or
//! shared), describes the memory from the VM's bindings, and sets the
//! vCPUs' entry state. The boot structure page doubles as the VM's DTB
//! location, which START requires (SPEC B-VM-3).
//!
//! Guest layout (as other microVMs use it): PVH start info at 0x6000, the
//! Linux zero page at 0x7000, the command line at 0x20000, the kernel at
//! 1 MiB (or where its ELF says), the initrd at the top of low RAM.

use std::ops::Range;

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{ByteValued, GuestAddress};

use crate::error::Error;
use crate::loader::{ElfImage, LoadError};
use crate::placement;
use crate::vm::Vm;

/// Where the PVH `hvm_start_info` goes (its memory map and module list follow).
pub const START_INFO: u64 = 0x6000;
/// Where the Linux zero page (`boot_params`) goes.
pub const ZERO_PAGE: u64 = 0x7000;
/// Where the kernel command line goes.
pub const CMDLINE: u64 = 0x2_0000;
/// Start of the legacy hole (EBDA, VGA, BIOS) below 1 MiB.
const EBDA_START: u64 = 0x9_fc00;
/// Start of the MMIO hole below 4 GiB: an initrd must end below it.
const MMIO_HOLE: u64 = crate::placement::MMIO_HOLE.start;
pub use crate::placement::HIMEM_START;
pub use crate::vm::BootMode;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const PVH_MAGIC: u32 = 0x336e_c578;
/// Linux boot protocol 2.12, the oldest with 64-bit entry flags lendvm reads.
const MIN_PROTOCOL: u16 = 0x020c;
/// `xloadflags`: the kernel has a 64-bit entry point at load + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// `loadflags`: protected-mode code loads at 0x100000.
const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags`: `heap_end_ptr` is valid.
const CAN_USE_HEAP: u8 = 1 << 7;
/// `type_of_loader`: "other".
const LOADER_OTHER: u8 = 0xff;

/// What a prepared boot put where, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLayout {
    /// The entry state.
    pub mode: BootMode,
    /// Guest range of the kernel.
    pub kernel: Range<u64>,
    /// Guest range of the initrd, if any.
    pub initrd: Option<Range<u64>>,
    /// The memory map given to the guest: (range, type: 1 RAM, 2 reserved).
    pub memory_map: Vec<(Range<u64>, u32)>,
    /// Length of the command line including its NUL.
    pub cmdline_len: u64,
}

/// A kernel or guest image in one of the formats lendvm boots.
pub enum KernelImage<'a> {
    /// An ELF: PVH if it has the note, else native.
    Elf(ElfImage<'a>),
    /// A Linux bzImage.
    BzImage(&'a [u8]),
}

/// Recognise an image by its contents.
pub fn detect(bytes: &[u8]) -> Result<KernelImage<'_>, LoadError> {
    if bytes.starts_with(b"\x7fELF") {
        return ElfImage::parse(bytes).map(KernelImage::Elf);
    }
    if bytes.len() > 0x210 && &bytes[0x202..0x206] == b"HdrS" {
        return Ok(KernelImage::BzImage(bytes));
    }
    Err(LoadError::UnknownFormat)
}

/// The boot structures' contents.
#[derive(Debug, Clone, Default)]
pub struct BootArgs<'a> {
    /// The kernel command line.
    pub cmdline: &'a str,
    /// An initrd (PVH: module 0).
    pub initrd: Option<&'a [u8]>,
}

fn write(vm: &Vm, gpa: u64, bytes: &[u8], what: &'static str) -> Result<(), Error> {
    vm.write_guest(gpa, bytes).map_err(|e| Error::GuestWrite {
        what,
        gpa,
        source: Box::new(e),
    })
}

/// RAM as the guest is told about it: the VM's bindings, merged, with the
/// legacy hole below 1 MiB reserved.
fn memory_map(vm: &Vm) -> Vec<(Range<u64>, u32)> {
    let mut ram: Vec<Range<u64>> = Vec::new();
    for b in vm.bindings() {
        match ram.last_mut() {
            Some(last) if last.end == b.guest_addr => last.end = b.guest_end(),
            _ => ram.push(b.guest_addr..b.guest_end()),
        }
    }
    let mut map = Vec::new();
    for r in ram {
        if r.start < EBDA_START && r.end > HIMEM_START {
            map.push((r.start..EBDA_START, E820_RAM));
            map.push((EBDA_START..HIMEM_START, E820_RESERVED));
            map.push((HIMEM_START..r.end, E820_RAM));
        } else {
            map.push((r, E820_RAM));
        }
    }
    map
}

/// The low RAM range that holds the boot structures and the kernel, or an
/// error saying what is missing.
fn low_ram(map: &[(Range<u64>, u32)]) -> Result<Range<u64>, Error> {
    let first = map.iter().find(|(r, t)| *t == E820_RAM && r.start == 0);
    let high = map
        .iter()
        .find(|(r, t)| *t == E820_RAM && r.start <= HIMEM_START && r.end > HIMEM_START);
    match (first, high) {
        (Some(_), Some((r, _))) => Ok(HIMEM_START..r.end.min(MMIO_HOLE)),
        _ => Err(Error::NoLowRam),
    }
}

fn placed<T>(r: Result<T, placement::PlaceError>) -> Result<T, Error> {
    r.map_err(Error::Place)
}

/// Place an initrd at the top of low RAM, above `floor`.
fn place_initrd(
    vm: &Vm,
    low: &Range<u64>,
    floor: u64,
    max_end: u64,
    initrd: &[u8],
) -> Result<Range<u64>, Error> {
    let at = placed(placement::initrd(
        low.clone(),
        floor,
        max_end,
        initrd.len() as u64,
    ))?;
    write(vm, at.start, initrd, "initrd")?;
    Ok(at)
}

fn write_cmdline(vm: &Vm, cmdline: &str, max: u64) -> Result<u64, Error> {
    let bytes = placed(placement::cmdline(cmdline, max))?;
    write(vm, CMDLINE, &bytes, "command line")?;
    Ok(bytes.len() as u64)
}

/// Boot an ELF with the PVH note: load it, build `hvm_start_info` with the
/// memory map from the bindings, the command line and the initrd as module
/// 0, and enter at the note's address in 32-bit protected mode.
pub fn prepare_pvh(vm: &Vm, elf: &ElfImage<'_>, args: &BootArgs<'_>) -> Result<BootLayout, Error> {
    let entry = elf.pvh_entry.ok_or(Error::NoPvhNote)?;
    let map = memory_map(vm);
    let low = low_ram(&map)?;
    elf.load_segments(vm).map_err(Error::Load)?;
    let kernel = elf.span();
    let cmdline_len = write_cmdline(vm, args.cmdline, 0x1_0000)?;
    let initrd = match args.initrd {
        Some(i) => Some(place_initrd(vm, &low, kernel.end, MMIO_HOLE, i)?),
        None => None,
    };
    // start_info, then the module list, then the memory map, in one page.
    let modlist = START_INFO + size_of::<hvm_start_info>() as u64;
    let memmap = modlist + size_of::<hvm_modlist_entry>() as u64;
    let room = (ZERO_PAGE - memmap) / size_of::<hvm_memmap_table_entry>() as u64;
    if map.len() as u64 > room {
        return Err(Error::TooManyMapEntries {
            entries: map.len(),
            max: room,
            table: "the start info page",
        });
    }
    let info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { modlist } else { 0 },
        cmdline_paddr: CMDLINE,
        memmap_paddr: memmap,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    write(vm, START_INFO, info.as_slice(), "PVH start info")?;
    if let Some(r) = &initrd {
        let m = hvm_modlist_entry {
            paddr: r.start,
            size: r.end - r.start,
            ..Default::default()
        };
        write(vm, modlist, m.as_slice(), "PVH module list")?;
    }
    let entries: Vec<u8> = map
        .iter()
        .flat_map(|(r, t)| {
            hvm_memmap_table_entry {
                addr: r.start,
                size: r.end - r.start,
                type_: *t,
                reserved: 0,
            }
            .as_slice()
            .to_vec()
        })
        .collect();
    write(vm, memmap, &entries, "PVH memory map")?;
    let mode = BootMode::Pvh {
        entry,
        start_info: START_INFO,
    };
    enter(
        vm,
        START_INFO,
        BootLayout {
            mode,
            kernel,
            initrd,
            memory_map: map,
            cmdline_len,
        },
    )
}

/// The setup header of a bzImage, checked for what lendvm needs.
pub fn bzimage_header(image: &[u8]) -> Result<setup_header, LoadError> {
    let mut hdr = setup_header::default();
    let len = size_of::<setup_header>();
    let bytes = image
        .get(0x1f1..0x1f1 + len)
        .ok_or_else(|| LoadError::Truncated("the bzImage ends inside its setup header".into()))?;
    hdr.as_mut_slice().copy_from_slice(bytes);
    let (magic, version, loadflags, xloadflags) =
        (hdr.header, hdr.version, hdr.loadflags, hdr.xloadflags);
    if magic != 0x5372_6448 {
        return Err(LoadError::BzImage("no HdrS magic at offset 0x202".into()));
    }
    if version < MIN_PROTOCOL {
        return Err(LoadError::BzImage(format!(
            "Linux boot protocol {}.{:02}; lendvm needs 2.12 or later",
            version >> 8,
            version & 0xff
        )));
    }
    if loadflags & LOADED_HIGH == 0 || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoadError::BzImage(
            "the kernel has no 64-bit entry point (xloadflags.XLF_KERNEL_64)".into(),
        ));
    }
    Ok(hdr)
}

/// Boot a Linux bzImage with the 64-bit boot protocol: load the protected-
/// mode kernel at 1 MiB (with linux-loader), write the zero page with the
/// e820 map from the bindings, the command line and the initrd, and enter
/// at load + 0x200 in long mode with RSI = the zero page.
pub fn prepare_linux(vm: &Vm, image: &[u8], args: &BootArgs<'_>) -> Result<BootLayout, Error> {
    let mut hdr = bzimage_header(image).map_err(Error::Load)?;
    let map = memory_map(vm);
    let low = low_ram(&map)?;
    // linux-loader writes the kernel straight into the VM's memory (its
    // host-accessible bindings, as vm-memory sees them).
    let loaded = {
        let mem = vm.host_memory()?;
        BzImage::load(
            &*mem,
            Some(GuestAddress(HIMEM_START)),
            &mut std::io::Cursor::new(image),
            Some(GuestAddress(HIMEM_START)),
        )
        .map_err(|source| Error::BzImageLoad { source })?
    };
    let kernel = loaded.kernel_load.0..loaded.kernel_end;
    for (gpa, bytes) in crate::x86::linux64_tables() {
        write(vm, gpa, &bytes, "64-bit entry tables")?;
    }
    // The kernel decompresses in place and needs `init_size` from its load
    // address: nothing else may live there.
    let kernel_floor = kernel.start + u64::from(hdr.init_size).max(kernel.end - kernel.start);
    if kernel_floor > low.end {
        return Err(Error::NoRoomToUnpack {
            needs: kernel_floor,
            ram_end: low.end,
        });
    }
    let max_cmdline = u64::from(hdr.cmdline_size).max(255) + 1;
    let cmdline_len = write_cmdline(vm, args.cmdline, max_cmdline)?;
    let initrd = match args.initrd {
        Some(i) => {
            let max = u64::from(hdr.initrd_addr_max) + 1;
            Some(place_initrd(vm, &low, kernel_floor, max, i)?)
        }
        None => None,
    };
    if map.len() > 128 {
        return Err(Error::TooManyMapEntries {
            entries: map.len(),
            max: 128,
            table: "the zero page's e820 table",
        });
    }
    let mut params = boot_params::default();
    hdr.type_of_loader = LOADER_OTHER;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.code32_start = HIMEM_START as u32;
    if let Some(r) = &initrd {
        hdr.ramdisk_image = r.start as u32;
        hdr.ramdisk_size = (r.end - r.start) as u32;
    }
    params.hdr = hdr;
    for (i, (r, t)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: r.start,
            size: r.end - r.start,
            r#type: *t,
        };
    }
    params.e820_entries = map.len() as u8;
    write(vm, ZERO_PAGE, params.as_slice(), "zero page")?;
    let mode = BootMode::Linux64 {
        entry: HIMEM_START + 0x200,
        boot_params: ZERO_PAGE,
    };
    enter(
        vm,
        ZERO_PAGE,
        BootLayout {
            mode,
            kernel,
            initrd,
            memory_map: map,
            cmdline_len,
        },
    )
}

/// Set the vCPUs' entry and make the boot structure page at `page` the
/// VM's DTB location (unless one is set): the last step of every boot.
fn enter(vm: &Vm, page: u64, layout: BootLayout) -> Result<BootLayout, Error> {
    vm.set_boot_mode(layout.mode)?;
    if vm.configs().0.is_none() {
        vm.set_dtb_config(vm_memory::GuestAddress(page), 4096)?;
    }
    Ok(layout)
}

/// Loading a checked image into a VM's bound memory.
impl ElfImage<'_> {
    /// Copy the segments into `vm`'s bound memory (zero-filling each
    /// segment's tail) and, unless the boot context already names one, make
    /// the ELF entry the boot PC: lendvm's native entry.
    pub fn load(&self, vm: &Vm) -> Result<(), LoadError> {
        self.load_segments(vm)?;
        if vm.boot_pc().is_none() {
            vm.set_boot_reg(crate::vm::BootReg::Pc, self.entry)
                .map_err(|e| LoadError::Unsupported(format!("cannot set the entry point: {e}")))?;
        }
        Ok(())
    }

    /// Copy the segments into `vm`'s bound memory, zero-filling each
    /// segment's tail; the entry is the caller's business (PVH enters at
    /// its note, not at `e_entry`).
    pub fn load_segments(&self, vm: &Vm) -> Result<(), LoadError> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        for s in &self.segments {
            let place = |e: Error| LoadError::Place {
                index: s.index,
                addr: s.guest_addr,
                size: s.mem_size,
                why: e.to_string(),
            };
            let data = self.segment_bytes(s);
            vm.write_guest(s.guest_addr, data).map_err(place)?;
            let mut at = s.guest_addr + s.file_size;
            let end = s.guest_addr + s.mem_size;
            while at < end {
                let n = (end - at).min(ZEROS.len() as u64);
                vm.write_guest(at, &ZEROS[..n as usize]).map_err(place)?;
                at += n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_content() {
        assert!(
            matches!(detect(test_guests::images::HELLO), Ok(KernelImage::Elf(e)) if e.pvh_entry.is_none())
        );
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(matches!(detect(&bz), Ok(KernelImage::BzImage(_))));
        assert!(detect(b"plain text").is_err());
    }

    #[test]
    fn bzimage_headers_are_checked() {
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020bu16.to_le_bytes());
        // Issue 9 item 4: a bzImage problem says bzImage, not ELF.
        assert_eq!(
            bzimage_header(&bz).unwrap_err().to_string(),
            "unsupported bzImage: Linux boot protocol 2.11; lendvm needs 2.12 or later"
        );
        bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let err = bzimage_header(&bz).unwrap_err().to_string();
        assert!(err.starts_with("unsupported bzImage: "), "{err}");
        assert!(
            err.contains("64-bit entry") && !err.contains("ELF"),
            "{err}"
        );
        let mut no_magic = bz.clone();
        no_magic[0x202] = b'X';
        let err = bzimage_header(&no_magic).unwrap_err().to_string();
        assert!(err.starts_with("unsupported bzImage: no HdrS"), "{err}");
        bz[0x211] = LOADED_HIGH;
        bz[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        let hdr = bzimage_header(&bz).unwrap();
        assert_eq!({ hdr.version }, 0x020f);
        assert!(bzimage_header(&bz[..0x250]).is_err(), "truncated");
    }
}
