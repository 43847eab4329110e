//! Standard boot paths: the PVH protocol with lendvm's tiny PVH guest, and
//! the boot structures Debian's real cloud kernel receives (bzImage zero
//! page, e820, command line, initrd; vmlinux PVH start info).
//!
//! The Debian kernel comes from `scripts/fetch-debian-kernel.sh --vmlinux`
//! (CI runs it). Without it those tests print SKIP, or fail when
//! `LENDVM_REQUIRE_KERNEL` is set.

use std::sync::{Arc, Mutex};

use binding::{Access, Perms};
use linux_loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use test_guests::testing::device;
use vm_memory::ByteValued;
use vmm::boot::{BootArgs, BootMode, CMDLINE, HIMEM_START, START_INFO, ZERO_PAGE};
use vmm::loader::ElfImage;
use vmm::{BindRequest, Console, Exit, GuestAddress, GuestMem, Status, Vm, exit_kind};

const RAM: u64 = 256 << 20;

/// A VM with `RAM` bytes of shared RAM at 0 (shared so the test can read
/// what the guest receives).
fn vm_with_ram() -> Option<(Vm, GuestMem)> {
    let dev = device()?;
    let vm = dev.create_vm().unwrap();
    let ram = vm
        .create_guest_memfd(RAM, gmem::Mode::HostMappable)
        .unwrap();
    vm.bind(&BindRequest::new(
        &ram,
        GuestAddress(0),
        0,
        RAM,
        Access::Share,
        Perms::RWX,
    ))
    .unwrap();
    Some((vm, ram))
}

/// Start the prepared tiny PVH guest on COM1 and run it: it prints its
/// line and resets through the i8042.
fn run_to_hello_and_reset(vm: &Vm) {
    let out = Arc::new(Mutex::new(Vec::new()));
    vm.add_legacy_devices(Console::Buffer(out.clone()), None)
        .unwrap();
    let mut vcpu = vm.add_vcpu(0).unwrap();
    vm.start().unwrap();
    let exit = vcpu.run().unwrap();
    assert!(
        matches!(exit, Exit::Status(Status::Exited(e)) if e.kind == exit_kind::RESET),
        "{exit:?}"
    );
    assert_eq!(out.lock().unwrap().as_slice(), b"Hello from a PVH guest\n");
}

fn read<T: ByteValued + Default>(vm: &Vm, gpa: u64) -> T {
    let mut v = T::default();
    vm.read_guest(gpa, v.as_mut_slice()).unwrap();
    v
}

fn expected_map() -> Vec<(std::ops::Range<u64>, u32)> {
    vec![
        (0..0x9_fc00, 1),
        (0x9_fc00..0x10_0000, 2),
        (0x10_0000..RAM, 1),
    ]
}

// The PVH protocol end to end: the start info, memory map, command line and
// initrd the guest receives, the 32-bit entry, COM1, the boot-complete
// probe and the i8042 reset.
#[test]
fn the_tiny_pvh_guest_boots_prints_and_resets() {
    let Some((vm, _ram)) = vm_with_ram() else {
        return;
    };
    let elf = ElfImage::parse(test_guests::images::PVH_HELLO).unwrap();
    let initrd = vec![0x5au8; 10_000];
    let layout = vmm::boot::prepare_pvh(
        &vm,
        &elf,
        &BootArgs {
            cmdline: "hello world",
            initrd: Some(&initrd),
        },
    )
    .unwrap();
    let entry = elf.pvh_entry.unwrap();
    assert_eq!(
        layout.mode,
        BootMode::Pvh {
            entry,
            start_info: START_INFO
        }
    );
    assert_eq!(layout.memory_map, expected_map());
    // What the guest will read.
    let info: hvm_start_info = read(&vm, START_INFO);
    assert_eq!({ info.magic }, 0x336e_c578);
    assert_eq!(({ info.nr_modules }, { info.cmdline_paddr }), (1, CMDLINE));
    let mut cmdline = [0u8; 12];
    vm.read_guest(CMDLINE, &mut cmdline).unwrap();
    assert_eq!(&cmdline, b"hello world\0");
    let module: hvm_modlist_entry = read(&vm, info.modlist_paddr);
    let r = layout.initrd.clone().unwrap();
    assert_eq!(({ module.paddr }, { module.size }), (r.start, 10_000));
    assert!(r.start >= layout.kernel.end && r.end <= RAM);
    let mut back = vec![0u8; 10_000];
    vm.read_guest(r.start, &mut back).unwrap();
    assert_eq!(back, initrd);
    assert_eq!({ info.memmap_entries }, 3);
    for (i, (range, kind)) in expected_map().into_iter().enumerate() {
        let e: hvm_memmap_table_entry = read(
            &vm,
            info.memmap_paddr + (i * size_of::<hvm_memmap_table_entry>()) as u64,
        );
        assert_eq!(
            ({ e.addr }, { e.size }, { e.type_ }),
            (range.start, range.end - range.start, kind)
        );
    }
    // The start info page is the VM's DTB location (START needs one).
    assert_eq!(vm.configs().0.unwrap().addr, START_INFO);
    // Run it.
    run_to_hello_and_reset(&vm);
    let m = vm.metrics();
    assert!(
        m.boot_complete.is_some(),
        "the guest wrote the boot-complete probe"
    );
    assert_eq!(m.unknown_port_io, 0);
}

// The guest's start info is checked: a corrupt one is reported by the
// guest itself (it prints a different line).
#[test]
fn the_tiny_pvh_guest_notices_a_bad_start_info() {
    let Some((vm, _ram)) = vm_with_ram() else {
        return;
    };
    let elf = ElfImage::parse(test_guests::images::PVH_HELLO).unwrap();
    vmm::boot::prepare_pvh(&vm, &elf, &BootArgs::default()).unwrap();
    vm.write_guest(START_INFO, &0u32.to_le_bytes()).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    vm.add_legacy_devices(Console::Buffer(out.clone()), None)
        .unwrap();
    let mut vcpu = vm.add_vcpu(0).unwrap();
    vm.start().unwrap();
    vcpu.run().unwrap();
    assert_eq!(
        out.lock().unwrap().as_slice(),
        b"PVH guest: bad start_info\n"
    );
}

// Standard boots describe RAM from the bindings and need it from 0.
#[test]
fn standard_boots_need_ram_from_address_zero() {
    let Some(dev) = device() else { return };
    let vm = dev.create_vm().unwrap();
    let ram = vm
        .create_guest_memfd(RAM, gmem::Mode::HostMappable)
        .unwrap();
    vm.bind(&BindRequest::new(
        &ram,
        GuestAddress(0x4000_0000),
        0,
        RAM,
        Access::Share,
        Perms::RWX,
    ))
    .unwrap();
    let elf = ElfImage::parse(test_guests::images::PVH_HELLO).unwrap();
    let err = vmm::boot::prepare_pvh(&vm, &elf, &BootArgs::default()).unwrap_err();
    assert!(err.to_string().contains("from address 0"), "{err}");
    assert_eq!(vm.boot_mode(), BootMode::Native, "nothing changed");
}

// Debian's real bzImage: the zero page, e820 and command line it receives.
#[test]
fn debian_bzimage_receives_zero_page_e820_cmdline_and_initrd() {
    let Some(path) = testkit::debian_kernel("vmlinuz") else {
        return;
    };
    let Some((vm, _ram)) = vm_with_ram() else {
        return;
    };
    let image = std::fs::read(&path).unwrap();
    let initrd = vec![0xa5u8; 3 << 20];
    let cmdline = "console=ttyS0 earlyprintk=serial,ttyS0 lendvm.test=1";
    let layout = vmm::boot::prepare_linux(
        &vm,
        &image,
        &BootArgs {
            cmdline,
            initrd: Some(&initrd),
        },
    )
    .unwrap();
    assert_eq!(
        layout.mode,
        BootMode::Linux64 {
            entry: HIMEM_START + 0x200,
            boot_params: ZERO_PAGE
        }
    );
    let params: boot_params = read(&vm, ZERO_PAGE);
    let hdr = params.hdr;
    assert_eq!({ hdr.header }, 0x5372_6448, "HdrS");
    assert!({ hdr.version } >= 0x020c, "boot protocol {:#x}", {
        hdr.version
    });
    assert_eq!({ hdr.type_of_loader }, 0xff);
    assert_eq!({ hdr.cmd_line_ptr }, CMDLINE as u32);
    assert_eq!({ hdr.code32_start }, HIMEM_START as u32);
    let r = layout.initrd.clone().unwrap();
    assert_eq!(
        ({ hdr.ramdisk_image }, { hdr.ramdisk_size }),
        (r.start as u32, 3 << 20)
    );
    assert!(r.end <= u64::from(hdr.initrd_addr_max) + 1);
    // The kernel's unpack area is left free.
    assert!(r.start >= HIMEM_START + u64::from(hdr.init_size));
    let mut cl = vec![0u8; cmdline.len() + 1];
    vm.read_guest(CMDLINE, &mut cl).unwrap();
    assert_eq!(&cl[..cmdline.len()], cmdline.as_bytes());
    assert_eq!(cl[cmdline.len()], 0);
    assert_eq!(params.e820_entries, 3);
    for (i, (range, kind)) in expected_map().into_iter().enumerate() {
        let e = params.e820_table[i];
        assert_eq!(
            ({ e.addr }, { e.size }, { e.r#type }),
            (range.start, range.end - range.start, kind)
        );
    }
    // The protected-mode kernel is at 1 MiB, byte for byte.
    let setup = (usize::from(image[0x1f1]).max(4) + 1) * 512;
    let mut head = vec![0u8; 4096];
    vm.read_guest(HIMEM_START, &mut head).unwrap();
    assert_eq!(head, image[setup..setup + 4096]);
    assert_eq!(
        layout.kernel.end - layout.kernel.start,
        (image.len() - setup) as u64
    );
}

// Debian's real vmlinux carries the PVH note; lendvm boots it with PVH.
#[test]
fn debian_vmlinux_boots_through_its_pvh_note() {
    let Some(path) = testkit::debian_kernel("vmlinux") else {
        return;
    };
    let Some((vm, _ram)) = vm_with_ram() else {
        return;
    };
    let image = std::fs::read(&path).unwrap();
    let elf = ElfImage::parse(&image).unwrap();
    let entry = elf
        .pvh_entry
        .expect("Debian's vmlinux has the Xen PVH note");
    assert_ne!(entry, elf.entry, "PVH enters at the note, not at e_entry");
    let layout = vmm::boot::prepare_pvh(
        &vm,
        &elf,
        &BootArgs {
            cmdline: "console=ttyS0",
            initrd: None,
        },
    )
    .unwrap();
    assert_eq!(
        layout.mode,
        BootMode::Pvh {
            entry,
            start_info: START_INFO
        }
    );
    // The boot PC stays unset: the entry is the note's, not e_entry.
    assert_eq!(vm.boot_pc(), None);
    let info: hvm_start_info = read(&vm, START_INFO);
    assert_eq!(
        ({ info.magic }, { info.nr_modules }, { info.memmap_entries }),
        (0x336e_c578, 0, 3)
    );
}

// DESIGN D12 / issue 9: RAM below the 32-bit MMIO hole and the rest above
// 4 GiB, as every x86 VMM lays it out. 64 GiB on a smaller host starts
// (nothing is allocated until touched), the memory map tells the guest
// both ranges, and the only lendvm memory left is the access region in
// the hole.
#[test]
fn a_64_gib_pvh_guest_gets_ram_on_both_sides_of_the_mmio_hole() {
    const G: u64 = 1 << 30;
    let Some(dev) = device() else { return };
    let vm = dev
        .create_vm_with(vmm::VmOptions {
            native: false,
            ..vmm::VmOptions::default()
        })
        .unwrap();
    let layout = vmm::placement::ram_layout(64 * G).unwrap();
    assert_eq!(layout, vec![0..3 * G, 4 * G..65 * G]);
    let ram = vm
        .create_guest_memfd(64 * G, gmem::Mode::HostMappable)
        .unwrap();
    let mut offset = 0;
    for r in &layout {
        let size = r.end - r.start;
        vm.bind(&BindRequest::new(
            &ram,
            GuestAddress(r.start),
            offset,
            size,
            Access::Share,
            Perms::RWX,
        ))
        .unwrap();
        offset += size;
    }
    for (r, _) in vm.installed() {
        assert!(
            r.end <= 3 * G || r.start >= 4 * G || r.start >= vmm::x86::ACCESS_REGION_BASE,
            "{r:x?}: only the access region may sit in the MMIO hole"
        );
    }
    let elf = ElfImage::parse(test_guests::images::PVH_HELLO).unwrap();
    vmm::boot::prepare_pvh(&vm, &elf, &BootArgs::default()).unwrap();
    let info: hvm_start_info = read(&vm, START_INFO);
    let map: Vec<(u64, u64, u32)> = (0..info.memmap_entries as usize)
        .map(|i| {
            let e: hvm_memmap_table_entry = read(
                &vm,
                info.memmap_paddr + (i * size_of::<hvm_memmap_table_entry>()) as u64,
            );
            ({ e.addr }, { e.size }, { e.type_ })
        })
        .collect();
    assert_eq!(
        map,
        vec![
            (0, 0x9_fc00, 1),
            (0x9_fc00, 0x10_0000 - 0x9_fc00, 2),
            (0x10_0000, 3 * G - 0x10_0000, 1),
            (4 * G, 61 * G, 1),
        ]
    );
    run_to_hello_and_reset(&vm);
}
