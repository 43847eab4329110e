//! Shared setup for lendvm's KVM tests: a VM running the holding-cell
//! guest from a lend binding, with room for the bindings each test adds.
//! (Test support: it panics on failures, as tests want.)

use std::sync::{Arc, Mutex};

use vmm::loader::ElfImage;
use vmm::{Access, BindingInfo, Perms};
use vmm::{BindRequest, Console, Device, GuestAddress, GuestMem, Vm};

/// Where the holding-cell image is bound (its link address is 1 MiB).
pub const IMAGE_BASE: u64 = 0x10_0000;
/// Size of the image binding: the image (~140 KiB) and its DTB page.
pub const IMAGE_SIZE: u64 = 4 << 20;
/// The DTB page, inside the image binding.
pub const DTB: u64 = IMAGE_BASE + IMAGE_SIZE - 0x1000;
/// A guest address for test data, outside the MMIO window.
pub const DATA: u64 = 0x1000_0000;
/// An unbound address outside the MMIO window (page faults: DESIGN D1).
pub const UNBOUND: u64 = 0x2000_0000;
/// An unbound address inside the MMIO window (MMIO exits: DESIGN D1).
pub const DEVICE: u64 = 0xD000_0000;

/// A VM with the holding cell loaded, and what it was made with.
pub struct Guest {
    /// The device the VM belongs to.
    pub dev: Device,
    /// The VM.
    pub vm: Vm,
    /// The file holding the image (and the DTB page).
    pub image: GuestMem,
    /// Everything the guest printed.
    pub console: Arc<Mutex<Vec<u8>>>,
}

/// A device, or None when the test must skip (no /dev/kvm).
pub fn device() -> Option<Device> {
    testkit::kvm()?;
    Some(Device::open().expect("/dev/kvm opened but lendvm cannot use it"))
}

/// A VM with the holding cell loaded (not started).
pub fn guest() -> Option<Guest> {
    Some(guest_on(device()?))
}

/// [`guest`] on a given device (its files can be bound into the VM).
pub fn guest_on(dev: Device) -> Guest {
    let vm = dev.create_vm().unwrap();
    let console = Arc::new(Mutex::new(Vec::new()));
    vm.set_console(Console::Buffer(console.clone()));
    let image = dev.create_guest_mem(IMAGE_SIZE, 0).unwrap();
    vm.bind(&BindRequest::new(
        &image,
        GuestAddress(IMAGE_BASE),
        0,
        IMAGE_SIZE,
        Access::Lend,
        Perms::RWX,
    ))
    .unwrap();
    ElfImage::parse(crate::images::HOLDING_CELL)
        .unwrap()
        .load(&vm)
        .unwrap();
    vm.set_dtb_config(GuestAddress(DTB), 0x1000).unwrap();
    Guest {
        dev,
        vm,
        image,
        console,
    }
}

/// The kinds of host-mappable file a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A free-standing memfd.
    Memfd,
    /// A host-mappable guest_memfd.
    GuestMemfd,
    /// A private guest_memfd.
    Private,
}

/// The host-mappable kinds.
pub const MAPPABLE: [FileKind; 2] = [FileKind::Memfd, FileKind::GuestMemfd];

impl Guest {
    /// A new file of `kind` for this VM.
    pub fn file(&self, kind: FileKind, size: u64) -> GuestMem {
        match kind {
            FileKind::Memfd => self.dev.create_guest_mem(size, 0).unwrap(),
            FileKind::GuestMemfd => self
                .vm
                .create_guest_memfd(size, vmm::Mode::HostMappable)
                .unwrap(),
            FileKind::Private => self
                .vm
                .create_guest_memfd(size, vmm::Mode::Private)
                .unwrap(),
        }
    }

    /// A new file of `kind` bound at `gpa` (whole file).
    pub fn bound(&self, kind: FileKind, gpa: u64, size: u64, access: Access) -> GuestMem {
        let f = self.file(kind, size);
        self.vm
            .bind(&BindRequest::new(
                &f,
                GuestAddress(gpa),
                0,
                size,
                access,
                Perms::RW,
            ))
            .unwrap();
        f
    }
}

/// DESIGN §6 invariant 3: every installed slot lies inside a binding.
pub fn assert_installed_within_bindings(vm: &Vm) {
    let bindings: Vec<BindingInfo> = vm.bindings();
    for (range, slot) in vm.installed() {
        let system = vmm::native_abi::SYSTEM_REGION_BASE;
        if range.start >= system && range.end <= system + vmm::native_abi::SYSTEM_REGION_SIZE {
            continue; // lendvm's own regions
        }
        let covered = bindings
            .iter()
            .any(|b| b.guest_addr <= range.start && range.end <= b.guest_end());
        assert!(covered, "slot {slot} {range:x?} lies outside every binding");
    }
}

/// The little-endian u64 at `offset` of `f`, read by the host.
pub fn u64_at(f: &GuestMem, offset: u64) -> Result<u64, vmm::GuestMemError> {
    let mut b = [0u8; 8];
    f.read_at(offset, &mut b)?;
    Ok(u64::from_le_bytes(b))
}
