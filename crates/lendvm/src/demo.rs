//! The built-in demo: a VM that borrows, shares and gives back memory.
//!
//! The guest is lendvm's holding cell, which obeys commands from the host
//! over an MMIO mailbox, so every step below is a real guest touching real
//! guest_memfd / memfd memory:
//! 1. a shared page: the host writes a message, the guest answers in it;
//! 2. lent RAM: the guest fills and checksums it; the host cannot read it;
//! 3. a private-file region: lent from a guest_memfd the kernel keeps from
//!    the host;
//! 4. an address bound only after the guest's page fault, then RETRY;
//! 5. an ioeventfd doorbell the guest rings without an exit;
//! 6. a clean exit, after which every page is back with the host.

use std::time::Instant;

use binding::{Access, Perms};
use gmem::Mode;
use test_guests::holding_cell::{Cell, CellError, fnv1a, protocol::*};
use vmm::loader::ElfImage;
use vmm::{
    BindRequest, Console, Device, Exit, GuestAddress, GuestMem, ResumeAction, Status, Vm, VmOptions,
};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::report::{BindingRow, Check, Report};

const IMAGE: u64 = 0x10_0000;
const IMAGE_SIZE: u64 = 4 << 20;
const SHARED: u64 = 0x1000_0000;
const RAM: u64 = 0x2000_0000;
const RAM_SIZE: u64 = 64 << 20;
const PRIVATE: u64 = 0x3000_0000;
const PRIVATE_SIZE: u64 = 16 << 20;
const LATE: u64 = 0x4000_0000;
const LATE_SIZE: u64 = 2 << 20;
const DOORBELL: u64 = 0xC010_0000;
const MESSAGE: &[u8] = b"Hello from the host: please read me and answer.";

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A VM manager call failed.
    #[error(transparent)]
    Vm(#[from] vmm::Error),
    /// A guest memory file call failed.
    #[error(transparent)]
    Memory(#[from] gmem::Error),
    /// The guest did something the demo did not expect.
    #[error("the guest did not behave as expected: {0}")]
    Guest(String),
    /// The image did not load.
    #[error("the demo image did not load: {0}")]
    Load(#[from] vmm::loader::LoadError),
}

impl From<CellError> for DemoError {
    fn from(e: CellError) -> DemoError {
        match e {
            CellError::Vm(e) => DemoError::Vm(e),
            other => DemoError::Guest(other.to_string()),
        }
    }
}

fn row(vm: &Vm, mem: &GuestMem, what: &'static str, kind: &'static str) -> BindingRow {
    let b = vm
        .bindings()
        .into_iter()
        .find(|b| b.file == mem.id())
        .unwrap_or(binding::BindingInfo {
            guest_addr: 0,
            size: 0,
            file: mem.id(),
            offset: 0,
            flags: 0,
        });
    BindingRow {
        what,
        guest_addr: b.guest_addr,
        size: b.size,
        file: kind,
        access: b.access(),
        perms: b.perms().to_string(),
    }
}

/// Run the demo and return its report.
pub fn run() -> Result<Report, DemoError> {
    let started = Instant::now();
    let dev = Device::open()?;
    // The demo uses no interrupts: a VM without an interrupt controller
    // starts faster (see VmOptions).
    let vm = dev.create_vm_with(VmOptions { irqchip: false })?;
    vm.set_console(Console::Off);

    // Memory: five files of three kinds.
    let image = vm.create_guest_memfd(IMAGE_SIZE, Mode::HostMappable)?;
    let shared = dev.create_guest_mem(4096, 0)?;
    let ram = vm.create_guest_memfd(RAM_SIZE, Mode::HostMappable)?;
    let private = vm.create_guest_memfd(PRIVATE_SIZE, Mode::Private)?;
    vm.bind(&BindRequest::new(
        &image,
        GuestAddress(IMAGE),
        0,
        IMAGE_SIZE,
        Access::Lend,
        Perms::RWX,
    ))?;
    vm.bind(&BindRequest::new(
        &shared,
        GuestAddress(SHARED),
        0,
        4096,
        Access::Share,
        Perms::RW,
    ))?;
    vm.bind(&BindRequest::new(
        &ram,
        GuestAddress(RAM),
        0,
        RAM_SIZE,
        Access::Lend,
        Perms::RW,
    ))?;
    vm.bind(&BindRequest::new(
        &private,
        GuestAddress(PRIVATE),
        0,
        PRIVATE_SIZE,
        Access::Lend,
        Perms::RW,
    ))?;
    ElfImage::parse(test_guests::images::HOLDING_CELL)?.load(&vm)?;
    vm.set_dtb_config(GuestAddress(IMAGE + IMAGE_SIZE - 4096), 4096)?;
    let doorbell = EventFd::new(EFD_NONBLOCK).map_err(|e| DemoError::Guest(e.to_string()))?;
    vm.add_ioeventfd(
        &doorbell,
        &vmm::Ioevent {
            addr: DOORBELL,
            len: 8,
            datamatch: None,
        },
    )?;
    let mut vcpu = vm.add_vcpu(0)?;
    vm.start()?;
    let mut checks = Vec::new();
    let mut cell = Cell::new(&mut vcpu);
    if cell.ping()? != PING_REPLY {
        return Err(DemoError::Guest("no answer to ping".into()));
    }

    // 1. The shared page: host writes, guest answers with the message's
    // checksum, host reads the answer.
    shared.write_at(0, MESSAGE)?;
    let guest_sum = cell.checksum(SHARED, MESSAGE.len() as u64)?;
    cell.write(SHARED + 0x100, guest_sum, 8)?;
    let mut answer = [0u8; 8];
    shared.read_at(0x100, &mut answer)?;
    checks.push(Check::new(
        "shared page: the guest read the host's message and the host read its answer",
        u64::from_le_bytes(answer) == fnv1a(MESSAGE),
        format!("checksum {:#018x}", u64::from_le_bytes(answer)),
    ));

    // 2. Lent RAM: the guest fills it (first touch of every page), then
    // checksums it; the host is refused.
    let before = vm.metrics().memory;
    let t = Instant::now();
    cell.fill(RAM, RAM_SIZE, 0xa5)?;
    let touch = t.elapsed();
    let sum = cell.checksum(RAM, RAM_SIZE)?;
    let chunks = vm.metrics().memory.demand_chunks - before.demand_chunks;
    checks.push(Check::new(
        "lent RAM: the guest filled and checksummed it",
        sum == fnv1a(&vec![0xa5; RAM_SIZE as usize]),
        format!("{} MiB in {chunks} first-touch chunks", RAM_SIZE >> 20),
    ));
    let mut probe = [0u8; 16];
    let host_read = ram.read_at(0, &mut probe);
    checks.push(Check::new(
        "lent RAM: the host's read was refused",
        matches!(host_read, Err(gmem::Error::Lent { .. })),
        host_read
            .err()
            .map_or("the host could read it".into(), |e| e.to_string()),
    ));

    // 3. The private region.
    cell.fill(PRIVATE, PRIVATE_SIZE, 0x3c)?;
    let sum = cell.checksum(PRIVATE, PRIVATE_SIZE)?;
    let host_read = private.read_at(0, &mut probe);
    checks.push(Check::new(
        "private region: the guest used it, the kernel keeps it from the host",
        sum == fnv1a(&vec![0x3c; PRIVATE_SIZE as usize])
            && matches!(host_read, Err(gmem::Error::Private)),
        host_read
            .err()
            .map_or("the host could read it".into(), |e| e.to_string()),
    ));

    // 4. An unbound address: the guest faults, the host binds memory, RETRY.
    cell.send(CMD_READ, &[LATE, 8])?;
    let fault = cell.finish();
    let late = dev.create_guest_mem(LATE_SIZE, 0)?;
    late.write_at(0, &0x1a7e_b0d5u64.to_le_bytes())?;
    let faulted = matches!(
        fault,
        Err(CellError::Exit(Exit::PageFault { phys_addr: LATE, attempt, .. })) if attempt == -libc::ENOENT
    );
    vm.bind(&BindRequest::new(
        &late,
        GuestAddress(LATE),
        0,
        LATE_SIZE,
        Access::Lend,
        Perms::RW,
    ))?;
    cell.vcpu().set_resume(ResumeAction::Retry);
    let value = if faulted { cell.finish()? } else { 0 };
    checks.push(Check::new(
        "late binding: page fault (-ENOENT), bind, RETRY",
        faulted && value == 0x1a7e_b0d5,
        format!("the guest read {value:#x} after the retry"),
    ));

    // 5. The doorbell: no exit, one eventfd signal.
    let exits = vm.metrics().kvm_exits;
    cell.write(DOORBELL, 1, 8)?;
    let rings = doorbell.read().unwrap_or(0);
    // The command itself is 5 mailbox exits; the doorbell adds none.
    checks.push(Check::new(
        "doorbell: the guest rang an ioeventfd without an exit",
        rings == 1 && vm.metrics().kvm_exits - exits == 5,
        format!("{rings} signal(s)"),
    ));

    // 6. A clean exit.
    let status = match cell.exit(0)? {
        Exit::Status(s) => s,
        other => {
            return Err(DemoError::Guest(format!(
                "expected a status exit, got {other:?}"
            )));
        }
    };
    checks.push(Check::new(
        "clean exit",
        matches!(status, Status::Exited(e) if e.code() == 0),
        crate::report::status_text(&status),
    ));

    let metrics = vm.metrics();
    let bindings = vec![
        row(&vm, &image, "guest image", "guest_memfd"),
        row(&vm, &shared, "shared page", "memfd"),
        row(&vm, &ram, "RAM", "guest_memfd"),
        row(&vm, &private, "private region", "guest_memfd (private)"),
        row(&vm, &late, "late binding", "memfd"),
    ];
    drop(vcpu);
    drop(vm);
    // After teardown every page is the host's again, lent ones zeroed.
    let back = ram.read_at(0, &mut probe).is_ok() && probe == [0; 16];
    checks.push(Check::new(
        "teardown: lent RAM is back with the host, zeroed",
        back,
        format!("first bytes {:02x?}", &probe[..4]),
    ));
    Ok(Report {
        bindings,
        metrics,
        status,
        first_touch: Some((RAM_SIZE, touch)),
        checks,
        elapsed: started.elapsed(),
        console: String::new(),
    })
}
