//! DESIGN §6 invariant 5 in a test binary of its own: descriptor and
//! memory counts are per process, so no other test may run beside it.

use binding::{Access, Perms};
use test_guests::holding_cell::{Cell, protocol::*};
use test_guests::testing::*;
use vmm::{BindRequest, Exit, GuestAddress, Status};

// DESIGN §6 invariant 5: no descriptor or memory growth over 1 000 VMs.
#[test]
fn a_thousand_vm_lifecycles_leak_nothing() {
    let Some(dev) = device() else { return };
    let image = dev.create_guest_mem(IMAGE_SIZE, 0).unwrap();
    let elf = vmm::loader::ElfImage::parse(test_guests::images::HOLDING_CELL).unwrap();
    let cycle = || {
        let vm = dev.create_vm().unwrap();
        vm.set_console(vmm::Console::Off);
        vm.bind(&BindRequest::new(
            &image,
            GuestAddress(IMAGE_BASE),
            0,
            IMAGE_SIZE,
            Access::Lend,
            Perms::RWX,
        ))
        .unwrap();
        elf.load(&vm).unwrap();
        vm.set_dtb_config(GuestAddress(DTB), 0x1000).unwrap();
        let mut vcpu = vm.add_vcpu(0).unwrap();
        vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(cell.ping().unwrap(), PING_REPLY);
        assert!(matches!(
            cell.exit(0).unwrap(),
            Exit::Status(Status::Exited(_))
        ));
    };
    // Warm up (lazily created process-wide state), then measure.
    for _ in 0..20 {
        cycle();
    }
    dev.wait_for_teardown();
    let fds = testkit::open_fds();
    let rss = rss_kib();
    for _ in 0..1000 {
        cycle();
    }
    // The kernel's part of a VM's teardown finishes in the background.
    dev.wait_for_teardown();
    assert_eq!(testkit::open_fds(), fds, "descriptors leaked");
    let grown = rss_kib().saturating_sub(rss);
    assert!(
        grown < 8 << 10,
        "resident memory grew by {grown} KiB over 1000 VMs"
    );
    // The image file is free again.
    assert_eq!(
        image.page_states(0, IMAGE_SIZE).unwrap(),
        vec![(0..IMAGE_SIZE, gmem::PageState::Host)]
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}
