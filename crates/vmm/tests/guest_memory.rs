//! Guest-visible memory rules, each checked with a real guest (the holding
//! cell) touching real guest_memfd / memfd memory on real KVM.

use binding::{Access, Perms};
use gmem::PageState;
use test_guests::holding_cell::{Cell, CellError, fnv1a, protocol::*};
use test_guests::testing::*;
use vmm::{BindRequest, Exit, GuestAddress, ResumeAction};

const K4: u64 = 4096;

fn page_fault(e: CellError) -> (u64, i32) {
    match e {
        CellError::Exit(Exit::PageFault {
            phys_addr, attempt, ..
        }) => (phys_addr, attempt),
        other => panic!("expected a page fault exit, got {other:?}"),
    }
}

// SPEC B-AC-2, GM-MM-4, DESIGN D2 (TV host_provided_lend).
#[test]
fn host_provided_lend_is_read_by_guest_then_hidden_from_host() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Lend);
        // Lend-bound, untouched: the host may still load data (D2).
        mem.write_at(0, &0xf00du64.to_le_bytes()).unwrap();
        assert_eq!(u64_at(&mem, 0).unwrap(), 0xf00d);
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(cell.read(DATA, 8).unwrap(), 0xf00d, "{kind:?}");
        // The guest touched it: it is lent and the host is refused.
        assert_eq!(mem.page_state(0), PageState::Lent(g.vm.id()));
        assert!(matches!(u64_at(&mem, 0), Err(gmem::Error::Lent { .. })));
        assert!(g.vm.read_guest(DATA, &mut [0u8; 8]).is_err());
        assert!(mem.view(0, K4).is_err());
        assert_installed_within_bindings(&g.vm);
    }
}

// SPEC B-AC-1 (TV host_provided_share, guest_writes_share).
#[test]
fn share_is_visible_to_host_before_and_after_the_guest_uses_it() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Share);
        mem.write_at(8, &0xf00du64.to_le_bytes()).unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(cell.read(DATA + 8, 8).unwrap(), 0xf00d);
        assert_eq!(cell.write(DATA + 16, 0xdead_f00d, 8).unwrap(), 0);
        assert_eq!(u64_at(&mem, 8).unwrap(), 0xf00d);
        assert_eq!(u64_at(&mem, 16).unwrap(), 0xdead_f00d, "{kind:?}");
        assert_eq!(mem.page_state(0), PageState::Shared(g.vm.id()));
    }
}

// SPEC B-AC-2 (TV guest_writes_lend, lend_no_access_after).
#[test]
fn guest_write_to_lend_is_hidden_from_host_and_kept_for_guest() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Lend);
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(cell.write(DATA, 0xdead_f00d, 8).unwrap(), 0);
        let mut buf = [0u8; 8];
        assert!(matches!(
            mem.read_at(0, &mut buf),
            Err(gmem::Error::Lent { .. })
        ));
        assert_ne!(
            u64::from_le_bytes(buf),
            0xdead_f00d,
            "no partial data leaked"
        );
        assert_eq!(cell.read(DATA, 8).unwrap(), 0xdead_f00d, "{kind:?}");
    }
}

// SPEC B-AC-1 (TV guest_share_coherency): alternating writers.
#[test]
fn share_is_coherent_in_both_directions() {
    let Some(g) = guest() else { return };
    let mem = g.bound(FileKind::GuestMemfd, DATA, K4, Access::Share);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    for (i, magic) in [0xf00d_deadu64, 0xa5a5_a5a5, 0x1234_5678, 0]
        .into_iter()
        .enumerate()
    {
        if i % 2 == 0 {
            cell.write(DATA, magic, 8).unwrap();
        } else {
            mem.write_at(0, &magic.to_le_bytes()).unwrap();
        }
        assert_eq!(u64_at(&mem, 0).unwrap(), magic);
        assert_eq!(cell.read(DATA, 8).unwrap(), magic);
    }
}

// SPEC GM-FA-6, GM-FA-7 for shares (TV share_punch_hole_10k_iters, scaled).
#[test]
fn punch_hole_on_share_gives_the_guest_a_fresh_zero_page() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, K4, Access::Share);
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        for i in 0..200u64 {
            cell.write(DATA, 0xdead_f00d + i, 8).unwrap();
            assert_eq!(u64_at(&mem, 0).unwrap(), 0xdead_f00d + i);
            mem.punch_hole(0, K4).unwrap();
            assert_eq!(cell.read(DATA, 8).unwrap(), 0, "{kind:?} iteration {i}");
        }
    }
}

// SPEC GM-FA-7, DESIGN D10 (TV lend_punch_hole_fails).
#[test]
fn punch_hole_on_touched_lend_is_busy_and_the_guest_keeps_its_data() {
    for kind in [FileKind::Memfd, FileKind::GuestMemfd, FileKind::Private] {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Lend);
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.write(DATA, 0xdead_f00d, 8).unwrap();
        let err = mem.punch_hole(0, K4).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{kind:?}");
        assert_eq!(cell.read(DATA, 8).unwrap(), 0xdead_f00d);
    }
}

// SPEC GM-MM-6, R-5 (TV lend_no_access_before), then RETRY.
#[test]
fn live_host_view_makes_the_guest_fault_eperm_until_it_is_dropped() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Lend);
        mem.write_at(0, &0x5a5au64.to_le_bytes()).unwrap();
        let view = mem.view(0, K4).unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.send(CMD_READ, &[DATA, 8]).unwrap();
        let (addr, attempt) = page_fault(cell.finish().unwrap_err());
        assert_eq!((addr, attempt), (DATA, -libc::EPERM), "{kind:?}");
        // SPEC R-5: the vCPU keeps the fault, resume pre-set to FAULT.
        assert!(matches!(
            cell.vcpu().last_exit(),
            Some(Exit::PageFault {
                phys_addr: DATA,
                attempt,
                ..
            }) if attempt == -libc::EPERM
        ));
        assert_eq!(cell.vcpu().resume_action(), ResumeAction::Fault);
        // While the view lives a retry faults again.
        cell.vcpu().set_resume(ResumeAction::Retry);
        assert_eq!(page_fault(cell.finish().unwrap_err()).1, -libc::EPERM);
        drop(view);
        cell.vcpu().set_resume(ResumeAction::Retry);
        assert_eq!(cell.finish().unwrap(), 0x5a5a);
        assert_eq!(mem.page_state(0), PageState::Lent(g.vm.id()));
    }
}

// SPEC R-5 (-ENOENT), R-6 RETRY, B-ADD-13: memory bound after the fault.
#[test]
fn unbound_touch_faults_enoent_then_bind_and_retry_completes_it() {
    for kind in [FileKind::Memfd, FileKind::GuestMemfd, FileKind::Private] {
        for access in [Access::Lend, Access::Share] {
            if kind == FileKind::Private && access == Access::Share {
                continue;
            }
            let Some(g) = guest() else { return };
            let mut vcpu = g.vm.add_vcpu(0).unwrap();
            g.vm.start().unwrap();
            let mut cell = Cell::new(&mut vcpu);
            // A read of unbound memory outside the MMIO window.
            cell.send(CMD_READ, &[UNBOUND, 8]).unwrap();
            assert_eq!(
                page_fault(cell.finish().unwrap_err()),
                (UNBOUND, -libc::ENOENT)
            );
            let mem = g.file(kind, 2 << 20);
            if kind != FileKind::Private {
                mem.write_at(0, &0x1234_5678u64.to_le_bytes()).unwrap();
            }
            g.vm.bind(&BindRequest::new(
                &mem,
                GuestAddress(UNBOUND),
                0,
                2 << 20,
                access,
                Perms::RW,
            ))
            .unwrap();
            cell.vcpu().set_resume(ResumeAction::Retry);
            let want = if kind == FileKind::Private {
                0
            } else {
                0x1234_5678
            };
            assert_eq!(cell.finish().unwrap(), want, "{kind:?} {access:?} read");
            // A write to unbound memory, completed after binding.
            let far = UNBOUND + (4 << 20);
            cell.send(CMD_WRITE, &[far + 8, 0xabcd_ef01, 4]).unwrap();
            assert_eq!(
                page_fault(cell.finish().unwrap_err()),
                (far + 8, -libc::ENOENT)
            );
            let mem2 = g.file(kind, 2 << 20);
            g.vm.bind(&BindRequest::new(
                &mem2,
                GuestAddress(far),
                0,
                2 << 20,
                access,
                Perms::RW,
            ))
            .unwrap();
            cell.vcpu().set_resume(ResumeAction::Retry);
            assert_eq!(cell.finish().unwrap(), 0, "{kind:?} {access:?} write");
            assert_eq!(
                cell.read(far + 8, 8).unwrap(),
                0xabcd_ef01,
                "{kind:?} {access:?}"
            );
            if access == Access::Share {
                assert_eq!(u64_at(&mem2, 8).unwrap(), 0xabcd_ef01);
            }
            assert_installed_within_bindings(&g.vm);
        }
    }
}

// DESIGN D7 / SPEC R-6 FAULT: the guest receives #PF with the address.
#[test]
fn fault_resume_delivers_a_page_fault_to_the_guest() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    // A read: the guest's handler sees #PF, error code U (not present, read).
    cell.send(CMD_READ, &[UNBOUND, 8]).unwrap();
    page_fault(cell.finish().unwrap_err());
    cell.vcpu().set_resume(ResumeAction::Fault);
    assert_eq!(cell.finish().unwrap(), FAULTED | 14);
    assert_eq!(cell.command(CMD_LAST_FAULT, &[]).unwrap(), 14 | (0x4 << 8));
    let rip = cell.command(CMD_LAST_FAULT_RIP, &[]).unwrap();
    assert!(
        (IMAGE_BASE..IMAGE_BASE + IMAGE_SIZE).contains(&rip),
        "rip {rip:#x}"
    );
    // The run page's pre-set action is FAULT: just running again faults.
    cell.send(CMD_WRITE, &[UNBOUND, 1, 8]).unwrap();
    page_fault(cell.finish().unwrap_err());
    assert_eq!(cell.finish().unwrap(), FAULTED | 14);
    assert_eq!(cell.command(CMD_LAST_FAULT, &[]).unwrap(), 14 | (0x6 << 8));
    // An MMIO exit answered with FAULT also becomes #PF.
    cell.send(CMD_READ, &[DEVICE, 4]).unwrap();
    assert!(matches!(
        cell.finish(),
        Err(CellError::Exit(Exit::Mmio { .. }))
    ));
    cell.vcpu().set_resume(ResumeAction::Fault);
    assert_eq!(cell.finish().unwrap(), FAULTED | 14);
    assert_eq!(g.vm.metrics().injected_faults, 3);
    // The guest still serves commands.
    assert_eq!(cell.ping().unwrap(), PING_REPLY);
}

// DESIGN D1, SPEC R-7/R-8 (TV read_io / holding_cell_reads).
#[test]
fn mmio_exits_carry_writes_and_deliver_handled_reads() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    for len in [1u64, 2, 4, 8] {
        cell.send(CMD_READ, &[DEVICE + 0x10, len]).unwrap();
        match cell.finish() {
            Err(CellError::Exit(Exit::Mmio {
                phys_addr,
                len: l,
                is_write: false,
                ..
            })) => assert_eq!((phys_addr, u64::from(l)), (DEVICE + 0x10, len)),
            other => panic!("expected an MMIO read, got {other:?}"),
        }
        cell.vcpu()
            .set_mmio_data(&0x1122_3344_5566_7788u64.to_le_bytes());
        cell.vcpu().set_resume(ResumeAction::Handled);
        let mask = if len == 8 {
            u64::MAX
        } else {
            (1 << (8 * len)) - 1
        };
        assert_eq!(cell.finish().unwrap(), 0x1122_3344_5566_7788 & mask);
    }
    cell.send(CMD_WRITE, &[DEVICE, 0xdead_beef, 4]).unwrap();
    match cell.finish() {
        Err(CellError::Exit(Exit::Mmio {
            phys_addr: DEVICE,
            data,
            len: 4,
            is_write: true,
        })) => assert_eq!(
            u32::from_le_bytes(data[..4].try_into().unwrap()),
            0xdead_beef
        ),
        other => panic!("expected an MMIO write, got {other:?}"),
    }
    cell.vcpu().set_resume(ResumeAction::Handled);
    assert_eq!(cell.finish().unwrap(), 0);
}

// SPEC R-5 / B-AC-4: a write to a binding without ALLOW_WRITE (enforced on
// memfd bindings with read-only slots, DESIGN D3).
#[test]
fn write_to_a_read_only_memfd_binding_faults_eperm() {
    for access in [Access::Share, Access::Lend] {
        let Some(g) = guest() else { return };
        let mem = g.file(FileKind::Memfd, 64 << 10);
        mem.write_at(0, &7u64.to_le_bytes()).unwrap();
        g.vm.bind(&BindRequest::new(
            &mem,
            GuestAddress(DATA),
            0,
            64 << 10,
            access,
            Perms::R,
        ))
        .unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        assert_eq!(cell.read(DATA, 8).unwrap(), 7);
        cell.send(CMD_WRITE, &[DATA, 9, 8]).unwrap();
        assert_eq!(
            page_fault(cell.finish().unwrap_err()),
            (DATA, -libc::EPERM),
            "{access:?}"
        );
        cell.vcpu().set_resume(ResumeAction::Fault);
        assert_eq!(cell.finish().unwrap(), FAULTED | 14);
        // P set: the page was there but the write was not allowed.
        assert_eq!(cell.command(CMD_LAST_FAULT, &[]).unwrap(), 14 | (0x7 << 8));
        assert_eq!(cell.read(DATA, 8).unwrap(), 7);
    }
}

// SPEC B-RM-3/4/5 (TV partial_unmap_memory1/2): removed pages are unbound
// for the guest; kept pieces keep their data and translation.
#[test]
fn unmapping_part_of_a_binding_unbinds_exactly_those_pages() {
    let Some(g) = guest() else { return };
    for base in [DATA, DEVICE] {
        let mem = g.file(FileKind::GuestMemfd, 5 * K4);
        g.vm.bind(&BindRequest::new(
            &mem,
            GuestAddress(base),
            0,
            5 * K4,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        for i in 0..5u64 {
            mem.write_at(i * K4, &(i + 1).to_le_bytes()).unwrap();
        }
        // Remove the middle page: the binding splits.
        g.vm.unbind(&BindRequest::new(
            &mem,
            GuestAddress(base + 2 * K4),
            2 * K4,
            K4,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        assert_eq!(
            g.vm.bindings()
                .iter()
                .filter(|b| b.file == mem.id())
                .count(),
            2
        );
    }
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    for base in [DATA, DEVICE] {
        for i in [0u64, 1, 3, 4] {
            assert_eq!(cell.read(base + i * K4, 8).unwrap(), i + 1);
        }
    }
    // The removed page outside the MMIO window: PAGE_FAULT -ENOENT (D1).
    cell.send(CMD_READ, &[DATA + 2 * K4, 8]).unwrap();
    assert_eq!(
        page_fault(cell.finish().unwrap_err()),
        (DATA + 2 * K4, -libc::ENOENT)
    );
    cell.vcpu().set_resume(ResumeAction::Fault);
    assert_eq!(cell.finish().unwrap(), FAULTED | 14);
    // Inside the MMIO window: an MMIO exit.
    cell.send(CMD_READ, &[DEVICE + 2 * K4, 8]).unwrap();
    assert!(matches!(
        cell.finish(),
        Err(CellError::Exit(Exit::Mmio { phys_addr, .. })) if phys_addr == DEVICE + 2 * K4
    ));
    cell.vcpu().set_mmio_data(&0xf00du64.to_le_bytes());
    cell.vcpu().set_resume(ResumeAction::Handled);
    assert_eq!(cell.finish().unwrap(), 0xf00d);
    assert_installed_within_bindings(&g.vm);
}

// SPEC B-RM-4 / DESIGN D5: unbinding a touched lend returns zeroed pages;
// the file range can be bound again (B-RM-5).
#[test]
fn unbinding_a_touched_lend_zeroes_it_for_the_host() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 2 * K4, Access::Lend);
        mem.write_at(K4, b"host data").unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.write(DATA, 0x5ec2e7, 8).unwrap();
        g.vm.unbind(&BindRequest::new(
            &mem,
            GuestAddress(DATA),
            0,
            2 * K4,
            Access::Lend,
            Perms::RW,
        ))
        .unwrap();
        // The guest's secret is gone; the page's demand chunk covered the
        // whole binding, so both pages were lent and both are zero.
        assert_eq!(u64_at(&mem, 0).unwrap(), 0, "{kind:?}");
        let mut b = [0u8; 9];
        mem.read_at(K4, &mut b).unwrap();
        assert_eq!(&b, &[0; 9]);
        assert_eq!(mem.page_state(0), PageState::Host);
        cell.send(CMD_READ, &[DATA, 8]).unwrap();
        assert_eq!(
            page_fault(cell.finish().unwrap_err()),
            (DATA, -libc::ENOENT)
        );
        g.vm.bind(&BindRequest::new(
            &mem,
            GuestAddress(DATA),
            0,
            2 * K4,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        cell.vcpu().set_resume(ResumeAction::Retry);
        assert_eq!(cell.finish().unwrap(), 0);
    }
}

// DESIGN D8, D5; SPEC L-1..L-5: explicit reclaim.
#[test]
fn explicit_reclaim_takes_lent_pages_back_zeroed_and_the_guest_can_retake_them() {
    for kind in [FileKind::Memfd, FileKind::GuestMemfd, FileKind::Private] {
        let Some(g) = guest() else { return };
        let mem = g.bound(kind, DATA, 64 << 10, Access::Lend);
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.fill(DATA, 64 << 10, 0x77).unwrap();
        assert_eq!(mem.reclaim(0, 64 << 10).unwrap(), 64 << 10, "{kind:?}");
        assert_eq!(mem.page_state(0), PageState::LendBound(g.vm.id()));
        if kind != FileKind::Private {
            assert_eq!(u64_at(&mem, 0).unwrap(), 0);
        }
        // The guest touches it again: demand paging lends it back, zeroed.
        assert_eq!(
            cell.checksum(DATA, 64 << 10).unwrap(),
            fnv1a(&[0; 64 << 10])
        );
        assert_eq!(mem.page_state(0), PageState::Lent(g.vm.id()));
        // A write as first touch after reclaim works for every kind.
        mem.reclaim(0, 64 << 10).unwrap();
        cell.write(DATA + 8, 0x42, 8).unwrap();
        assert_eq!(cell.read(DATA + 8, 8).unwrap(), 0x42, "{kind:?}");
        assert_installed_within_bindings(&g.vm);
    }
}

// Demand paging: a lend binding is given in chunks on first touch.
#[test]
fn lend_binding_is_given_in_chunks_on_first_touch() {
    let Some(g) = guest() else { return };
    let mem = g.bound(FileKind::GuestMemfd, DATA, 8 << 20, Access::Lend);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    // The guest's own first touches (code, stack) are not this test's.
    cell.ping().unwrap();
    let before = g.vm.metrics().memory;
    assert_eq!(
        cell.command(CMD_TOUCH_WRITE, &[DATA, K4, 2048]).unwrap(),
        2048
    );
    let after = g.vm.metrics().memory;
    // 8 MiB in 2 MiB chunks: four first-touch exits, not 2048.
    assert_eq!(after.demand_chunks - before.demand_chunks, 4);
    assert_eq!(after.demand_bytes - before.demand_bytes, 8 << 20);
    assert_eq!(
        mem.page_states(0, 8 << 20).unwrap(),
        vec![(0..8 << 20, PageState::Lent(g.vm.id()))]
    );
    assert_installed_within_bindings(&g.vm);
}

// Two vCPUs on two threads write lent memory at the same time.
#[test]
fn two_vcpus_write_lent_memory_concurrently() {
    for kind in [FileKind::GuestMemfd, FileKind::Private] {
        let Some(g) = guest() else { return };
        const HALF: u64 = 4 << 20;
        let _mem = g.bound(kind, DATA, 2 * HALF, Access::Lend);
        let mut v0 = g.vm.add_vcpu(0).unwrap();
        let mut v1 = g.vm.add_vcpu(1).unwrap();
        g.vm.start().unwrap();
        let t = std::thread::spawn(move || {
            let mut cell = Cell::new(&mut v1);
            for round in 0..20u8 {
                cell.fill(DATA + HALF, HALF, round).unwrap();
            }
            cell.checksum(DATA + HALF, HALF).unwrap()
        });
        let mut cell = Cell::new(&mut v0);
        for round in 0..20u8 {
            cell.fill(DATA, HALF, 0x80 | round).unwrap();
        }
        assert_eq!(t.join().unwrap(), fnv1a(&vec![19; HALF as usize]));
        assert_eq!(
            cell.checksum(DATA, HALF).unwrap(),
            fnv1a(&vec![0x93; HALF as usize])
        );
        assert_eq!(
            cell.checksum(DATA + HALF, HALF).unwrap(),
            fnv1a(&vec![19; HALF as usize]),
            "{kind:?}"
        );
    }
}

// SPEC F-6 (TV basic_trigger, datamatch, multiple_addresses/datamatch).
#[test]
fn ioeventfds_absorb_matching_guest_writes() {
    use vmm::Ioevent;
    use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
    let Some(g) = guest() else { return };
    let any = EventFd::new(EFD_NONBLOCK).unwrap();
    let matches: Vec<EventFd> = (0..3)
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    let io = |addr, datamatch| Ioevent {
        addr,
        len: 8,
        datamatch,
    };
    g.vm.add_ioeventfd(&any, &io(DEVICE, None)).unwrap();
    for (i, e) in matches.iter().enumerate() {
        g.vm.add_ioeventfd(e, &io(DEVICE + 0x100, Some(0x60 + i as u64)))
            .unwrap();
    }
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    // No exit: the write completes in the kernel and signals the eventfd.
    for len in [8u64, 4, 1] {
        assert_eq!(cell.write(DEVICE, 0xdead, len).unwrap(), 0);
    }
    assert_eq!(any.read().unwrap(), 3);
    for (i, e) in matches.iter().enumerate() {
        assert_eq!(cell.write(DEVICE + 0x100, 0x60 + i as u64, 8).unwrap(), 0);
        assert_eq!(e.read().unwrap(), 1);
    }
    // A value nobody matches is an ordinary MMIO exit carrying the data.
    cell.send(CMD_WRITE, &[DEVICE + 0x100, 0xf00d, 8]).unwrap();
    match cell.finish() {
        Err(CellError::Exit(Exit::Mmio {
            data,
            is_write: true,
            ..
        })) => {
            assert_eq!(u64::from_le_bytes(data), 0xf00d)
        }
        other => panic!("expected an MMIO write, got {other:?}"),
    }
    cell.vcpu().set_resume(ResumeAction::Handled);
    assert_eq!(cell.finish().unwrap(), 0);
    assert!(
        matches.iter().all(|e| e.read().is_err()),
        "no eventfd fired"
    );
}

// DESIGN §6.3 / regression: a chunk that already holds lent, installed
// pages (the DTB handed over at START, or pages left after a partial
// reclaim) is completed around them, never installed twice, and the host
// never regains access to pages the guest holds.
#[test]
fn demand_paging_fills_gaps_around_pages_already_given() {
    for kind in [FileKind::GuestMemfd, FileKind::Private] {
        let Some(dev) = device() else { return };
        let vm = dev.create_vm().unwrap();
        vm.set_console(vmm::Console::Off);
        // Image, DTB and data in one lend binding, one 2 MiB chunk apart at most.
        let ram = match kind {
            FileKind::Private => vm.create_guest_memfd(4 << 20, gmem::Mode::Private).unwrap(),
            _ => vm
                .create_guest_memfd(4 << 20, gmem::Mode::HostMappable)
                .unwrap(),
        };
        let image = dev.create_guest_mem(2 << 20, 0).unwrap();
        vm.bind(&BindRequest::new(
            &image,
            GuestAddress(IMAGE_BASE),
            0,
            2 << 20,
            Access::Lend,
            Perms::RWX,
        ))
        .unwrap();
        vm.bind(&BindRequest::new(
            &ram,
            GuestAddress(0x40_0000),
            0,
            4 << 20,
            Access::Lend,
            Perms::RWX,
        ))
        .unwrap();
        vmm::loader::ElfImage::parse(test_guests::images::HOLDING_CELL)
            .unwrap()
            .load(&vm)
            .unwrap();
        // The DTB sits in the middle of the first 2 MiB chunk of `ram`.
        vm.set_dtb_config(GuestAddress(0x48_0000), 4096).unwrap();
        let mut vcpu = vm.add_vcpu(0).unwrap();
        vm.start().unwrap();
        assert_eq!(ram.page_state(0x8_0000), PageState::Lent(vm.id()));
        let mut cell = Cell::new(&mut vcpu);
        // Touch pages on both sides of the DTB page, in the same chunk.
        cell.write(0x40_0000, 1, 8).unwrap();
        cell.write(0x5f_f000, 2, 8).unwrap();
        assert_eq!(cell.read(0x40_0000, 8).unwrap(), 1, "{kind:?}");
        assert_installed_within_bindings(&vm);
        let slots = vm.installed();
        for (i, (a, _)) in slots.iter().enumerate() {
            for (b, _) in &slots[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "slots overlap: {a:x?} {b:x?}"
                );
            }
        }
        // Reclaim one page in the middle of a lent chunk; the guest takes it
        // back on its next touch; its neighbours stayed with the guest.
        assert_eq!(ram.reclaim(0x1000, 4096).unwrap(), 4096);
        assert_eq!(ram.page_state(0x1000), PageState::LendBound(vm.id()));
        assert_eq!(ram.page_state(0), PageState::Lent(vm.id()));
        if kind != FileKind::Private {
            assert!(
                ram.read_at(0, &mut [0u8; 8]).is_err(),
                "the host must not see the guest's page"
            );
            assert!(ram.read_at(0x1000, &mut [0u8; 8]).is_ok());
        }
        cell.write(0x40_1000, 3, 8).unwrap();
        assert_eq!(cell.read(0x40_1000, 8).unwrap(), 3);
        assert_eq!(cell.read(0x40_0000, 8).unwrap(), 1);
        assert_eq!(ram.page_state(0x1000), PageState::Lent(vm.id()));
        assert_installed_within_bindings(&vm);
    }
}
