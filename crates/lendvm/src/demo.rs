//! The built-in demo: a VM that borrows, shares and gives back memory.
//!
//! The guest is lendvm's holding cell, which obeys commands from the host
//! over an MMIO mailbox, so every step below is a real guest touching real
//! guest_memfd / memfd memory, and the report shows what each side saw:
//! 1. a shared page: the host writes a message, the guest reads it
//!    (checksum) and answers in the same page (its words, then the message
//!    copied as it read it); the host reads the answer through its mapping;
//! 2. lent RAM: the guest fills and checksums it, the host computes the
//!    checksum of the same pattern; the host's own read is refused;
//! 3. a private-file region: lent from a guest_memfd the kernel itself
//!    keeps from the host (kernel-enforced);
//! 4. an address bound only after the guest's page fault, then RETRY;
//! 5. an ioeventfd doorbell the guest rings without an exit;
//! 6. a clean exit, after which every page is back with the host and the
//!    lent RAM reads as zeros (DESIGN D5: the guest's bytes never reach
//!    the host).
//!
//! A stop signal interrupts the guest between (or inside) steps; the report
//! then has the checks done so far and names the signal.

use std::time::{Duration, Instant};

use test_guests::holding_cell::{Cell, CellError, fnv1a, protocol::*};
use vmm::loader::ElfImage;
use vmm::{
    Access, BindRequest, Console, Device, Exit, GuestAddress, GuestMem, Mode, Perms, ResumeAction,
    Status, Vm, VmOptions,
};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::report::{BindingRow, Check, DemoSummary, Ending, Report, Value};
use crate::stop::Stop;

const IMAGE: u64 = 0x10_0000;
const IMAGE_SIZE: u64 = 4 << 20;
const SHARED: u64 = 0x1000_0000;
/// Where in the shared page the guest answers.
const ANSWER: u64 = 0x100;
const RAM: u64 = 0x2000_0000;
const RAM_SIZE: u64 = 64 << 20;
const RAM_BYTE: u8 = 0xa5;
const PRIVATE: u64 = 0x3000_0000;
const PRIVATE_SIZE: u64 = 16 << 20;
const PRIVATE_BYTE: u8 = 0x3c;
const LATE: u64 = 0x4000_0000;
const LATE_SIZE: u64 = 2 << 20;
const LATE_VALUE: u64 = 0x1a7e_b0d5;
const DOORBELL: u64 = 0xC010_0000;
const MESSAGE: &[u8] = b"Hello from the host: please read me and answer.";
/// The guest's own words before the message it copies back.
const ANSWER_PREFIX: &[u8] = b"Guest here. You wrote: ";

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A VM manager call failed.
    #[error(transparent)]
    Vm(#[from] vmm::Error),
    /// A guest memory file call failed.
    #[error(transparent)]
    Memory(#[from] vmm::GuestMemError),
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

/// FNV-1a (as the guest's `CMD_CHECKSUM`) over `bytes`, continuing `hash`.
fn fnv1a_more(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// FNV-1a of `len` copies of `byte`, without a buffer that large.
fn fnv1a_repeat(byte: u8, len: u64) -> u64 {
    (0..len).fold(FNV_OFFSET_BASIS, |h, _| {
        (h ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The host's FNV-1a of `len` bytes of `file` from offset 0, read in
/// pieces (the file may be large).
fn host_checksum(file: &GuestMem, len: u64) -> Result<u64, vmm::GuestMemError> {
    let mut buf = vec![0u8; 64 << 10];
    let (mut hash, mut at) = (FNV_OFFSET_BASIS, 0);
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_at(at, &mut buf[..n])?;
        hash = fnv1a_more(hash, &buf[..n]);
        at += n as u64;
    }
    Ok(hash)
}

/// Have the guest store `text` at `addr`, 8 bytes (or fewer) per store.
fn guest_writes(cell: &mut Cell<'_>, addr: u64, text: &[u8]) -> Result<(), CellError> {
    let mut at = 0;
    while at < text.len() {
        let n = [8, 4, 2, 1]
            .into_iter()
            .find(|&n| n <= text.len() - at)
            .unwrap_or(1);
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(&text[at..at + n]);
        cell.write(addr + at as u64, u64::from_le_bytes(word), n as u64)?;
        at += n;
    }
    Ok(())
}

fn row(vm: &Vm, mem: &GuestMem, what: &'static str, kind: &'static str) -> BindingRow {
    let b = vm
        .bindings()
        .into_iter()
        .find(|b| b.file == mem.id())
        .unwrap_or(vmm::BindingInfo {
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

/// The demo's VM and files.
struct Demo {
    /// Kept open for the VM's lifetime, as the device's user.
    _dev: Device,
    vm: Vm,
    image: GuestMem,
    shared: GuestMem,
    ram: GuestMem,
    private: GuestMem,
    late: GuestMem,
    doorbell: EventFd,
}

/// What the steps saw that the report needs after the VM is gone.
#[derive(Default)]
struct Seen {
    checks: Vec<Check>,
    first_touch: Option<(u64, Duration)>,
    ram_sum: Option<u64>,
}

fn set_up() -> Result<Demo, DemoError> {
    let dev = Device::open()?;
    // The demo uses no interrupts: a VM without an interrupt controller
    // starts faster (see VmOptions).
    let vm = dev.create_vm_with(VmOptions {
        irqchip: false,
        ..VmOptions::default()
    })?;
    vm.set_console(Console::Off);
    // Memory: six files of three kinds.
    let image = vm.create_guest_memfd(IMAGE_SIZE, Mode::HostMappable)?;
    let shared = dev.create_guest_mem(4096, 0)?;
    let ram = vm.create_guest_memfd(RAM_SIZE, Mode::HostMappable)?;
    let private = vm.create_guest_memfd(PRIVATE_SIZE, Mode::Private)?;
    let late = dev.create_guest_mem(LATE_SIZE, 0)?;
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
    Ok(Demo {
        _dev: dev,
        vm,
        image,
        shared,
        ram,
        private,
        late,
        doorbell,
    })
}

/// Run the demo and return its report (a partial one if `stop` asks).
pub fn run(stop: &Stop) -> Result<Report, DemoError> {
    let started = Instant::now();
    let d = set_up()?;
    let mut vcpu = d.vm.add_vcpu(0)?;
    stop.watch(vcpu.kicker());
    d.vm.start()?;
    let mut seen = Seen::default();
    let steps = steps(&d, &mut Cell::new(&mut vcpu), &mut seen);
    stop.unwatch_all();
    let status = match (steps, stop.signal()) {
        (Ok(status), _) => Ending::Vm(status),
        (Err(DemoError::Vm(vmm::Error::Interrupted)), Some(signal)) => Ending::Signal(signal),
        (Err(e), _) => return Err(e),
    };
    let metrics = d.vm.metrics();
    let bindings = vec![
        row(&d.vm, &d.image, "guest image", "guest_memfd"),
        row(&d.vm, &d.shared, "shared page", "memfd"),
        row(&d.vm, &d.ram, "RAM", "guest_memfd"),
        row(&d.vm, &d.private, "private region", "guest_memfd (private)"),
        row(&d.vm, &d.late, "late binding", "memfd"),
    ];
    let Demo { vm, ram, .. } = d;
    drop(vcpu);
    drop(vm);
    // After teardown every page is the host's again, lent ones zeroed.
    seen.checks.push(reclaimed(&ram, seen.ram_sum));
    Ok(Report {
        bindings,
        metrics,
        status,
        first_touch: seen.first_touch,
        checks: seen.checks,
        elapsed: started.elapsed(),
        console: String::new(),
        demo: Some(DemoSummary {
            chunk: crate::info::demand_chunk(RAM_SIZE),
        }),
    })
}

/// The demo's steps, each adding its check to `seen` as it completes.
fn steps(d: &Demo, cell: &mut Cell<'_>, seen: &mut Seen) -> Result<Status, DemoError> {
    if cell.ping()? != PING_REPLY {
        return Err(DemoError::Guest("no answer to ping".into()));
    }
    seen.checks.push(shared_page(d, cell)?);
    lent_ram(d, cell, seen)?;
    seen.checks.push(private_region(d, cell)?);
    seen.checks.push(late_binding(d, cell)?);

    // The doorbell: no exit, one eventfd signal.
    let exits = d.vm.metrics().kvm_exits;
    cell.write(DOORBELL, 1, 8)?;
    let rings = d.doorbell.read().unwrap_or(0);
    // The command itself is 5 mailbox exits; the doorbell adds none.
    seen.checks.push(Check::new(
        "doorbell: the guest rang an ioeventfd without an exit",
        rings == 1 && d.vm.metrics().kvm_exits - exits == 5,
        format!("{rings} signal(s)"),
    ));

    // A clean exit.
    let status = match cell.exit(0)? {
        Exit::Status(s) => s,
        other => {
            return Err(DemoError::Guest(format!(
                "expected a status exit, got {other:?}"
            )));
        }
    };
    seen.checks.push(Check::new(
        "clean exit",
        matches!(status, Status::Exited(e) if e.code() == 0),
        crate::report::status_text(&status),
    ));
    Ok(status)
}

/// Step 1, the shared page: the host writes, the guest reads and answers
/// in the same page, the host reads the answer.
fn shared_page(d: &Demo, cell: &mut Cell<'_>) -> Result<Check, DemoError> {
    d.shared.write_at(0, MESSAGE)?;
    let guest_sum = cell.checksum(SHARED, MESSAGE.len() as u64)?;
    guest_writes(cell, SHARED + ANSWER, ANSWER_PREFIX)?;
    let copy_to = SHARED + ANSWER + ANSWER_PREFIX.len() as u64;
    cell.command(CMD_COPY, &[copy_to, SHARED, MESSAGE.len() as u64])?;
    let mut answer = vec![0u8; ANSWER_PREFIX.len() + MESSAGE.len()];
    d.shared.read_at(ANSWER, &mut answer)?;
    let host_sum = fnv1a(MESSAGE);
    let ok = guest_sum == host_sum && answer == [ANSWER_PREFIX, MESSAGE].concat();
    Ok(Check::new(
        "shared page: the guest read the host's message and answered in the same page",
        ok,
        format!(
            "the host read the guest's {}-byte answer through its own mapping",
            answer.len()
        ),
    )
    .fact(
        "host_message",
        "the host wrote",
        Value::Text(String::from_utf8_lossy(MESSAGE).into_owned()),
    )
    .fact(
        "guest_answer",
        "the guest answered",
        Value::Text(String::from_utf8_lossy(&answer).into_owned()),
    )
    .fact(
        "guest_checksum",
        "message checksum by the guest",
        Value::Hex(guest_sum),
    )
    .fact(
        "host_checksum",
        "message checksum by the host",
        Value::Hex(host_sum),
    ))
}

/// Step 2, lent RAM: the guest fills it (first touch of every page) and
/// checksums it; the host computes the checksum of the same pattern; the
/// host's read is refused.
fn lent_ram(d: &Demo, cell: &mut Cell<'_>, seen: &mut Seen) -> Result<(), DemoError> {
    let before = d.vm.metrics().memory;
    let t = Instant::now();
    cell.fill(RAM, RAM_SIZE, RAM_BYTE)?;
    seen.first_touch = Some((RAM_SIZE, t.elapsed()));
    let guest_sum = cell.checksum(RAM, RAM_SIZE)?;
    seen.ram_sum = Some(guest_sum);
    let host_sum = fnv1a_repeat(RAM_BYTE, RAM_SIZE);
    let chunks = d.vm.metrics().memory.demand_chunks - before.demand_chunks;
    let chunk = crate::info::demand_chunk(RAM_SIZE);
    seen.checks.push(
        Check::new(
            "lent RAM: the guest filled and checksummed it",
            guest_sum == host_sum && chunks == RAM_SIZE / chunk,
            format!(
                "{} MiB of {RAM_BYTE:#04x} in {chunks} first-touch chunks of {} MiB",
                RAM_SIZE >> 20,
                chunk >> 20
            ),
        )
        .pattern_checksums(guest_sum, host_sum)
        .fact("chunks", "first-touch chunks", Value::Num(chunks)),
    );
    let mut probe = [0u8; 16];
    let host_read = d.ram.read_at(0, &mut probe);
    seen.checks.push(Check::new(
        "lent RAM: the host's read was refused",
        matches!(host_read, Err(vmm::GuestMemError::Lent { .. })),
        host_read
            .err()
            .map_or("the host could read it".into(), |e| e.to_string()),
    ));
    Ok(())
}

/// Step 3, the private region: the guest uses it, the kernel keeps the host out.
fn private_region(d: &Demo, cell: &mut Cell<'_>) -> Result<Check, DemoError> {
    cell.fill(PRIVATE, PRIVATE_SIZE, PRIVATE_BYTE)?;
    let guest_sum = cell.checksum(PRIVATE, PRIVATE_SIZE)?;
    let host_sum = fnv1a_repeat(PRIVATE_BYTE, PRIVATE_SIZE);
    let mut probe = [0u8; 16];
    let host_read = d.private.read_at(0, &mut probe);
    let refused = matches!(host_read, Err(vmm::GuestMemError::Private));
    Ok(Check::new(
        "private region: the guest used it; the host is kept out, kernel-enforced",
        guest_sum == host_sum && refused,
        host_read
            .err()
            .map_or("the host could read it".into(), |e| e.to_string()),
    )
    .pattern_checksums(guest_sum, host_sum))
}

/// Step 4, an unbound address: the guest faults, the host binds memory, RETRY.
fn late_binding(d: &Demo, cell: &mut Cell<'_>) -> Result<Check, DemoError> {
    cell.send(CMD_READ, &[LATE, 8])?;
    let fault = match cell.finish() {
        Err(CellError::Exit(Exit::PageFault {
            phys_addr, attempt, ..
        })) => Some((phys_addr, attempt)),
        Err(CellError::Vm(e)) => return Err(DemoError::Vm(e)),
        _ => None,
    };
    let faulted = fault == Some((LATE, -libc::ENOENT));
    d.late.write_at(0, &LATE_VALUE.to_le_bytes())?;
    d.vm.bind(&BindRequest::new(
        &d.late,
        GuestAddress(LATE),
        0,
        LATE_SIZE,
        Access::Lend,
        Perms::RW,
    ))?;
    cell.vcpu().set_resume(ResumeAction::Retry);
    let value = if faulted { cell.finish()? } else { 0 };
    let errno = |attempt: i32| {
        if attempt == -libc::ENOENT {
            "-ENOENT".to_string()
        } else {
            attempt.to_string()
        }
    };
    let detail = match fault {
        Some((addr, attempt)) => format!(
            "page fault at {addr:#x} ({}), bound {} MiB there, RETRY: the guest read {value:#x}",
            errno(attempt),
            LATE_SIZE >> 20
        ),
        None => "no page fault".into(),
    };
    let mut check = Check::new(
        "late binding: page fault, bind, RETRY",
        faulted && value == LATE_VALUE,
        detail,
    );
    if let Some((addr, attempt)) = fault {
        check = check
            .fact("fault_addr", "faulting guest address", Value::Hex(addr))
            .fact(
                "fault_attempt",
                "fault attempt",
                Value::Text(errno(attempt)),
            )
            .fact(
                "value_read",
                "the guest read after RETRY",
                Value::Hex(value),
            );
    }
    Ok(check)
}

/// Step 6, after teardown: the lent RAM is the host's again, zeroed (D5).
fn reclaimed(ram: &GuestMem, guest_sum: Option<u64>) -> Check {
    let zeros = fnv1a_repeat(0, RAM_SIZE);
    let back = host_checksum(ram, RAM_SIZE);
    let mut check = Check::new(
        "teardown: the lent RAM is back with the host, zeroed (D5)",
        back.as_ref().is_ok_and(|&s| s == zeros),
        match &back {
            Ok(_) => format!(
                "the host read all {} MiB; none of the guest's bytes came back",
                RAM_SIZE >> 20
            ),
            Err(e) => format!("the host could not read it: {e}"),
        },
    );
    if let Some(sum) = guest_sum {
        check = check.fact(
            "guest_checksum",
            "checksum by the guest while lent",
            Value::Hex(sum),
        );
    }
    if let Ok(sum) = back {
        check = check.fact(
            "host_checksum",
            "checksum by the host after reclaim",
            Value::Hex(sum),
        );
    }
    check.fact(
        "zeros_checksum",
        "checksum of as many zero bytes",
        Value::Hex(zeros),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeat_checksum_matches_the_buffer_one() {
        for (byte, len) in [(0u8, 0u64), (0xa5, 1), (0x3c, 4097)] {
            assert_eq!(fnv1a_repeat(byte, len), fnv1a(&vec![byte; len as usize]));
            assert_eq!(
                fnv1a_more(fnv1a_more(FNV_OFFSET_BASIS, &[1, 2]), &[3]),
                fnv1a(&[1, 2, 3])
            );
        }
    }
}
