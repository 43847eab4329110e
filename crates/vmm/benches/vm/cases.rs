//! The five comparisons.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kvm_bindings::CpuId;
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch};
use vmm::{Access, BindRequest, Device, GuestAddress, Mode, Perms};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::*;

// ----- 1. first touch ---------------------------------------------------------------------

/// The ways first-touch memory is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touched {
    Raw,
    Lend,
    Share,
    /// LEND with demand paging off: installed at bind, like SHARE.
    LendEager,
}

/// One first-touch run: set up (untimed), run the guest touching one byte
/// every `stride` bytes of `size` bytes, time the run only. Returns the
/// time and, for LEND, the number of demand-paging chunks.
pub(crate) fn touch_run(
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    how: Touched,
    size: u64,
    stride: u64,
) -> (Duration, u64) {
    let entry = Entry {
        rip: TOUCH,
        rax: 1,
        rcx: size / stride,
        rsi: DATA_GPA,
        rdi: stride,
        ..Default::default()
    };
    if how == Touched::Raw {
        let mut raw = RawVm::new(kvm, cpuid, &entry, size);
        let t0 = Instant::now();
        raw.run_to_exit();
        let t = t0.elapsed();
        let last = raw.gmem[0].map.read((size - stride) as usize);
        assert_eq!(last, 1, "raw: the guest did not touch the last page");
        return (t, 0);
    }
    let access = if how == Touched::Share {
        Access::Share
    } else {
        Access::Lend
    };
    let mut lv = LendVm::new(dev, &entry, Access::Share);
    if how == Touched::LendEager {
        lv.vm.set_demand_paging(false).expect("demand paging off");
    }
    let data = lv
        .vm
        .create_guest_memfd(size, Mode::HostMappable)
        .expect("guest_memfd");
    lv.vm
        .bind(&BindRequest::new(
            &data,
            GuestAddress(DATA_GPA),
            0,
            size,
            access,
            Perms::RWX,
        ))
        .expect("bind data");
    lv.start();
    let t0 = Instant::now();
    lv.run_to_exit();
    let t = t0.elapsed();
    let mem = lv.vm.metrics().memory;
    match how {
        Touched::Lend => assert_eq!(mem.demand_bytes, size, "lend: not all memory paged in"),
        Touched::Share => {
            let mut b = [0u8];
            lv.vm
                .read_guest(DATA_GPA + size - stride, &mut b)
                .expect("read");
            assert_eq!(b[0], 1, "share: the guest did not touch the last page");
        }
        _ => {}
    }
    drop(lv);
    drop(data);
    (t, mem.demand_chunks)
}

pub(crate) fn first_touch(
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    s: Settings,
    rows: &mut Vec<Row>,
) {
    let size: u64 = s.pick(1 << 30, 16 << 20);
    let pages = size / PAGE;
    let iters = s.pick(9, 1);
    let kinds = [
        (Touched::Raw, "raw"),
        (Touched::Lend, "lendvm lend"),
        (Touched::Share, "lendvm share"),
        (Touched::LendEager, "lendvm lend, demand paging off"),
    ];
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut chunks = 0;
    for i in 0..iters {
        // Rotate the order every run.
        for k in 0..kinds.len() {
            let which = (i + k) % kinds.len();
            let (t, c) = touch_run(dev, kvm, cpuid, kinds[which].0, size, PAGE);
            chunks = chunks.max(c);
            times[which].push(t.as_secs_f64());
        }
    }
    println!(
        "\nfirst_touch: {} MiB = {pages} pages, one byte per 4 KiB page, {iters} runs each",
        size >> 20
    );
    let mut med = [0.0; 4];
    for (k, (_, name)) in kinds.iter().enumerate() {
        let each: Vec<String> = times[k].iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "first_touch {name:<31} runs (s, in order): {}",
            each.join(" ")
        );
    }
    for (k, (_, name)) in kinds.iter().enumerate() {
        let m = median(&mut times[k]);
        med[k] = m;
        println!(
            "first_touch {name:<31} min {:.3} s  median {:.3} s  ({:.0} pages/s, {:.2} µs/page at the median)",
            min(&times[k]),
            m,
            pages as f64 / m,
            m / pages as f64 * 1e6
        );
    }
    println!("first_touch lend: {chunks} demand-paging chunks (one memslot each)");
    for (k, name, goal) in [
        (1, "lend", Goal::AtLeast(0.9)),
        (2, "share", Goal::AtLeast(0.9)),
        (3, "lend, no demand paging", Goal::InfoRate),
    ] {
        rows.push(Row {
            name: format!("first_touch: {name}"),
            lendvm: format!("{:.3} s ({:.0}k pg/s)", med[k], pages as f64 / med[k] / 1e3),
            raw: format!("{:.3} s ({:.0}k pg/s)", med[0], pages as f64 / med[0] / 1e3),
            ratio: goal.ratio(med[k], med[0]),
            goal,
        });
    }
}

// ----- 2. MMIO exits -----------------------------------------------------------------------

/// Every store exits: R9 = 1, both store addresses unbound.
pub(crate) fn mmio_entry() -> Entry {
    Entry {
        rip: STORE_LOOP,
        rbx: 0x1234_5678,
        rsi: MMIO_ADDR,
        rdx: MMIO_ADDR,
        r9: 1,
        ..Default::default()
    }
}

pub(crate) fn mmio_exits(
    c: &mut Criterion,
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    s: Settings,
    rows: &mut Vec<Row>,
) {
    let entry = mmio_entry();
    let mut lv = LendVm::new(dev, &entry, Access::Share);
    lv.start();
    let mut raw = RawVm::new(kvm, cpuid, &entry, 0);
    let mut pairs = [Pair {
        name: "round trip",
        lendvm: ("lendvm", repeat(|| lv.run_to_mmio(MMIO_ADDR))),
        raw: ("raw", repeat(|| raw.run_to_mmio(MMIO_ADDR))),
        ops_per_round: 400,
        per_iter: 1,
        unit: Unit::Us,
        goal: Goal::AtLeast(0.9),
    }];
    run_pairs(
        c,
        s,
        "mmio_exit",
        &mut pairs,
        20,
        Duration::from_secs(3),
        21,
        rows,
    );
}

// ----- 3. ioeventfd ------------------------------------------------------------------------

pub(crate) fn ioeventfd(
    c: &mut Criterion,
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    s: Settings,
    rows: &mut Vec<Row>,
) {
    let batch: u64 = s.pick(8192, 64);
    let entry = Entry {
        rip: STORE_LOOP,
        rbx: 0x1234_5678,
        rsi: IOEVENT_ADDR,
        rdx: MMIO_ADDR,
        r9: batch,
        ..Default::default()
    };
    let lendvm_event = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let mut lv = LendVm::new(dev, &entry, Access::Share);
    lv.vm
        .add_ioeventfd(
            &lendvm_event,
            &vmm::Ioevent {
                addr: IOEVENT_ADDR,
                len: 4,
                datamatch: None,
            },
        )
        .expect("add_ioeventfd");
    lv.start();
    let raw_event = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let mut raw = RawVm::new(kvm, cpuid, &entry, 0);
    raw.vm
        .register_ioevent(&raw_event, &IoEventAddress::Mmio(IOEVENT_ADDR), NoDatamatch)
        .expect("KVM_IOEVENTFD");
    // Check once that every store signalled the eventfd (none exited).
    lv.run_to_mmio(MMIO_ADDR);
    raw.run_to_mmio(MMIO_ADDR);
    assert_eq!(lendvm_event.read().expect("lendvm eventfd"), batch);
    assert_eq!(raw_event.read().expect("raw eventfd"), batch);
    let mut pairs = [Pair {
        name: "write",
        lendvm: ("lendvm", repeat(|| lv.run_to_mmio(MMIO_ADDR))),
        raw: ("raw", repeat(|| raw.run_to_mmio(MMIO_ADDR))),
        ops_per_round: 2,
        per_iter: batch,
        unit: Unit::Ns,
        goal: Goal::AtLeast(0.95),
    }];
    run_pairs(
        c,
        s,
        "ioeventfd",
        &mut pairs,
        10,
        Duration::from_secs(4),
        11,
        rows,
    );
}

// ----- 4. bind + unbind ---------------------------------------------------------------------

pub(crate) fn bind_unbind(
    c: &mut Criterion,
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    s: Settings,
    rows: &mut Vec<Row>,
) {
    // Started VMs whose vCPU has entered the guest (parked at an MMIO exit).
    let entry = mmio_entry();
    let mut lv = LendVm::new(dev, &entry, Access::Share);
    lv.start();
    lv.run_to_mmio(MMIO_ADDR);
    let mem = lv
        .vm
        .create_guest_memfd(BIND_SIZE, Mode::HostMappable)
        .expect("guest_memfd");
    let mut raw = RawVm::new(kvm, cpuid, &entry, 0);
    raw.run_to_mmio(MMIO_ADDR);
    let g = RawGmem::new(&raw.vm, BIND_SIZE);
    let (gaddr, gfd) = (g.map.addr(), g.fd.as_raw_fd());
    let vm = &lv.vm;
    let raw_vm = &raw.vm;
    let lendvm_side = |access: Access| -> Side<'_> {
        let mem = &mem;
        repeat(move || {
            vm.bind(&BindRequest::new(
                mem,
                GuestAddress(BIND_GPA),
                0,
                BIND_SIZE,
                access,
                Perms::RWX,
            ))
            .expect("bind");
            vm.unbind(&BindRequest::new(
                mem,
                GuestAddress(BIND_GPA),
                0,
                BIND_SIZE,
                access,
                Perms::RWX,
            ))
            .expect("unbind");
        })
    };
    let raw_side = || -> Side<'_> {
        repeat(move || {
            raw_slot(raw_vm, SLOT_DATA, BIND_GPA, BIND_SIZE, gaddr, Some(gfd));
            raw_slot(raw_vm, SLOT_DATA, BIND_GPA, 0, 0, None);
        })
    };
    let mut pairs = share_and_lend(
        ["share", "lend (no slot)"],
        "raw_slot",
        lendvm_side,
        raw_side,
        10,
        Goal::AtMost(1.5),
    );
    run_pairs(
        c,
        s,
        "bind_2m",
        &mut pairs,
        20,
        Duration::from_secs(3),
        // Fine-grained alternation: slot operations on this host switch
        // between a ~35 µs and a ~150 µs mode for stretches of time
        // (kernel-side, the same for both sides; see `diag_bind`).
        301,
        rows,
    );
    drop(pairs);
    let m = lv.vm.metrics().memory;
    println!(
        "bind_2m: lendvm created {} and deleted {} memslots in all",
        m.slots_created, m.slots_deleted
    );
    drop(g);
}

// ----- 5. VM lifecycle ----------------------------------------------------------------------

pub(crate) fn vm_lifecycle(
    c: &mut Criterion,
    dev: &Device,
    kvm: &Kvm,
    cpuid: &CpuId,
    s: Settings,
    rows: &mut Vec<Row>,
) {
    let entry = Entry {
        rip: EXIT,
        ..Default::default()
    };
    let lendvm_side = |access: Access| -> Side<'_> {
        repeat(move || {
            let mut lv = LendVm::new(dev, &entry, access);
            lv.start();
            lv.run_to_exit();
        })
    };
    let raw_side =
        || -> Side<'_> { repeat(move || RawVm::new(kvm, cpuid, &entry, 0).run_to_exit()) };
    let mut pairs = share_and_lend(
        ["share binding", "lend binding"],
        "raw",
        lendvm_side,
        raw_side,
        20,
        Goal::AtMost(1.5),
    );
    run_pairs(
        c,
        s,
        "vm_lifecycle",
        &mut pairs,
        20,
        Duration::from_secs(4),
        21,
        rows,
    );
}
