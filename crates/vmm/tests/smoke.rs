use binding::{Access, Perms};
use test_guests::holding_cell::{Cell, fnv1a, protocol::*};
use vmm::loader::ElfImage;
use vmm::{BindRequest, Console, Device, Exit, GuestAddress, Status};

#[test]
fn holding_cell_boots_and_answers() {
    let _kvm = testkit::require_kvm!();
    let dev = Device::open().unwrap();
    let vm = dev.create_vm().unwrap();
    vm.set_console(Console::Off);
    let image = dev.create_guest_mem(4 << 20, 0).unwrap();
    vm.bind(&BindRequest::new(
        &image,
        GuestAddress(0x10_0000),
        0,
        4 << 20,
        Access::Lend,
        Perms::RWX,
    ))
    .unwrap();
    let elf = ElfImage::parse(test_guests::images::HOLDING_CELL).unwrap();
    elf.load(&vm).unwrap();
    vm.set_dtb_config(GuestAddress(0x40_0000), 4096).unwrap();
    let mut vcpu = vm.add_vcpu(0).unwrap();
    vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    assert_eq!(cell.ping().unwrap(), PING_REPLY);
    cell.fill(0x30_0000, 8192, 0xab).unwrap();
    assert_eq!(
        cell.checksum(0x30_0000, 8192).unwrap(),
        fnv1a(&[0xab; 8192])
    );
    let exit = cell.exit(7).unwrap();
    assert!(
        matches!(exit, Exit::Status(Status::Exited(e)) if e.code() == 7),
        "{exit:?}"
    );
    println!("{:?} {:?}", vm.metrics(), vm.installed());
}
