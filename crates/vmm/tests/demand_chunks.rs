//! DESIGN D2 granularity: a guest's first touch of one page of a lend
//! binding lends its whole demand chunk (`vmm::demand_chunk` of the
//! binding's size, on a grid of guest addresses, clipped to the binding),
//! and nothing more. Untouched pages of that chunk are lent (the guest can
//! reach them without an exit), so the host is refused there and punch
//! hole is EBUSY (D10); other chunks stay lend-bound and host-usable. A
//! host view anywhere in a chunk refuses the whole chunk (SPEC GM-MM-6).

use std::ops::Range;

use gmem::PageState;
use test_guests::holding_cell::{Cell, CellError, protocol::*};
use test_guests::testing::*;
use vmm::{Access, Exit, ResumeAction, demand_chunk};

const K4: u64 = 4096;
const M: u64 = 1 << 20;

fn page_fault(e: CellError) -> (u64, i32) {
    match e {
        CellError::Exit(Exit::PageFault {
            phys_addr, attempt, ..
        }) => (phys_addr, attempt),
        other => panic!("expected a page fault exit, got {other:?}"),
    }
}

/// The file range of the demand chunk around `gpa` of a binding of `size`
/// bytes at guest address `base` (file offset 0): the chunk grid is
/// aligned in guest addresses, clipped to the binding.
fn chunk_of(base: u64, size: u64, gpa: u64) -> Range<u64> {
    let chunk = demand_chunk(size);
    let start = (gpa & !(chunk - 1)).max(base);
    let end = ((gpa & !(chunk - 1)) + chunk).min(base + size);
    start - base..end - base
}

/// Page states of the whole file, as maximal runs.
fn states(mem: &vmm::GuestMem) -> Vec<(Range<u64>, PageState)> {
    mem.page_states(0, mem.size()).unwrap()
}

// DESIGN D2, D10, D8; SPEC GM-FA-7.
#[test]
fn one_touch_lends_the_whole_demand_chunk_and_nothing_more() {
    const SIZE: u64 = 8 * M;
    for kind in [FileKind::Memfd, FileKind::GuestMemfd, FileKind::Private] {
        let Some(g) = guest() else { return };
        let vm = g.vm.id();
        let mem = g.bound(kind, DATA, SIZE, Access::Lend);
        let chunk = demand_chunk(SIZE);
        assert!(chunk < SIZE, "the binding has several chunks");
        let touched = DATA + chunk + 5 * K4;
        let lent = chunk_of(DATA, SIZE, touched);
        assert_eq!(lent, chunk..2 * chunk);
        // Before the touch the host may load data anywhere (D2).
        let untouched = lent.start + 3 * K4;
        let elsewhere = 2 * chunk;
        let private = kind == FileKind::Private;
        if !private {
            mem.write_at(untouched, &0x1111u64.to_le_bytes()).unwrap();
            mem.write_at(elsewhere, &0x2222u64.to_le_bytes()).unwrap();
        }
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        cell.ping().unwrap();
        let before = g.vm.metrics().memory;
        assert_eq!(cell.write(touched, 0x3333, 8).unwrap(), 0, "{kind:?}");
        let after = g.vm.metrics().memory;
        assert_eq!(after.demand_chunks - before.demand_chunks, 1, "{kind:?}");
        assert_eq!(after.demand_bytes - before.demand_bytes, chunk, "{kind:?}");
        assert_eq!(
            states(&mem),
            vec![
                (0..lent.start, PageState::LendBound(vm)),
                (lent.clone(), PageState::Lent(vm)),
                (lent.end..SIZE, PageState::LendBound(vm)),
            ],
            "{kind:?}: exactly the touched chunk is lent"
        );
        // Untouched pages of the lent chunk: refused to the host (D8),
        // punch is EBUSY and frees nothing (D10).
        if !private {
            for at in [untouched, lent.start, lent.end - 8] {
                assert!(
                    matches!(u64_at(&mem, at), Err(gmem::Error::Lent { .. })),
                    "{kind:?}: read at {at:#x}"
                );
            }
            assert!(matches!(
                mem.write_at(untouched, &[1]),
                Err(gmem::Error::Lent { .. })
            ));
            assert!(mem.view(untouched, K4).is_err());
        }
        assert!(g.vm.read_guest(DATA + untouched, &mut [0u8; 8]).is_err());
        let err = mem.punch_hole(untouched, K4).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{kind:?}: {err}");
        let err = mem
            .punch_hole(lent.start, lent.end - lent.start)
            .unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{kind:?}: {err}");
        if !private {
            assert_eq!(cell.read(DATA + untouched, 8).unwrap(), 0x1111, "{kind:?}");
        }
        assert_eq!(cell.read(touched, 8).unwrap(), 0x3333, "{kind:?}");
        // Other pages of the same chunk need no further first touch.
        cell.write(DATA + lent.end - 8, 0x4444, 8).unwrap();
        assert_eq!(g.vm.metrics().memory.demand_chunks, after.demand_chunks);
        // Other chunks stay lend-bound and usable by the host.
        assert_eq!(mem.page_state(elsewhere), PageState::LendBound(vm));
        if !private {
            assert_eq!(u64_at(&mem, elsewhere).unwrap(), 0x2222);
            mem.write_at(0, &[7u8; 16]).unwrap();
            drop(mem.view(lent.end, K4).unwrap());
            let mut buf = [0u8; 8];
            g.vm.read_guest(DATA + elsewhere, &mut buf).unwrap();
            assert_eq!(u64::from_le_bytes(buf), 0x2222);
        }
        mem.punch_hole(elsewhere, K4).unwrap();
        if !private {
            assert_eq!(u64_at(&mem, elsewhere).unwrap(), 0, "punched");
        }
        assert_eq!(mem.page_state(elsewhere), PageState::LendBound(vm));
        assert_installed_within_bindings(&g.vm);
    }
}

// DESIGN D2: the chunk grid is aligned in guest addresses and clipped to
// the binding at both ends; a binding smaller than a chunk is one chunk.
#[test]
fn the_demand_chunk_is_clipped_to_the_binding() {
    // Starts 1 MiB past a chunk boundary and ends 1 MiB before one.
    const BASE: u64 = DATA + M;
    const SIZE: u64 = 4 * M;
    const SMALL: u64 = DATA + 64 * M;
    let Some(g) = guest() else { return };
    let vm = g.vm.id();
    let mem = g.bound(FileKind::GuestMemfd, BASE, SIZE, Access::Lend);
    let small = g.bound(FileKind::Memfd, SMALL, 64 << 10, Access::Lend);
    let chunk = demand_chunk(SIZE);
    assert_eq!(BASE % chunk, M, "the binding starts inside a chunk");
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    // First chunk: clipped at the binding's start.
    let first = BASE + 2 * K4;
    cell.write(first, 1, 8).unwrap();
    let front = chunk_of(BASE, SIZE, first);
    assert_eq!(front, 0..chunk - M);
    // Last chunk: clipped at the binding's end.
    let last = BASE + SIZE - K4;
    cell.write(last, 2, 8).unwrap();
    let back = chunk_of(BASE, SIZE, last);
    assert_eq!(back.end, SIZE);
    assert_eq!(
        states(&mem),
        vec![
            (front.clone(), PageState::Lent(vm)),
            (front.end..back.start, PageState::LendBound(vm)),
            (back, PageState::Lent(vm)),
        ]
    );
    // A binding smaller than a chunk is lent whole by one touch.
    cell.read(SMALL + 5 * K4, 1).unwrap();
    assert_eq!(
        states(&small),
        vec![(0..64 << 10, PageState::Lent(vm))],
        "the small binding is one chunk"
    );
    assert_installed_within_bindings(&g.vm);
}

// DESIGN D2, SPEC GM-MM-6, R-5: a host view of one page refuses the guest
// every page of that page's chunk (-EPERM, nothing lent), not other
// chunks; RETRY completes once the view is gone.
#[test]
fn a_host_view_anywhere_in_a_chunk_makes_a_touch_of_any_page_of_it_fault_eperm() {
    const SIZE: u64 = 8 * M;
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let vm = g.vm.id();
        let mem = g.bound(kind, DATA, SIZE, Access::Lend);
        let chunk = demand_chunk(SIZE);
        mem.write_at(chunk + 100 * K4, &0x5a5au64.to_le_bytes())
            .unwrap();
        // A view over page 7 of chunk 1, and one across the boundary of
        // chunks 2 and 3.
        let view = mem.view(chunk + 7 * K4, K4).unwrap();
        let across = mem.view(3 * chunk - K4, 2 * K4).unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        for (cmd, gpa) in [
            (CMD_READ, DATA + chunk + 100 * K4),
            (CMD_WRITE, DATA + chunk),
            (CMD_WRITE, DATA + 2 * chunk - 8),
            (CMD_READ, DATA + 2 * chunk),
            (CMD_WRITE, DATA + 4 * chunk - 8),
        ] {
            let args = if cmd == CMD_READ {
                vec![gpa, 8]
            } else {
                vec![gpa, 0xbad, 8]
            };
            cell.send(cmd, &args).unwrap();
            let what = format!("{kind:?} {cmd} at {gpa:#x}");
            assert_eq!(
                page_fault(cell.finish().unwrap_err()),
                (gpa, -libc::EPERM),
                "{what}"
            );
            // Not lending the chunk means not lending any page of it.
            let c = chunk_of(DATA, SIZE, gpa);
            assert_eq!(
                mem.page_states(c.start, c.end - c.start).unwrap(),
                vec![(c, PageState::LendBound(vm))],
                "{what}"
            );
            cell.vcpu().set_resume(ResumeAction::Fault);
            assert_eq!(cell.finish().unwrap(), FAULTED | 14, "{what}");
        }
        // Chunk 0 has no view: the guest gets it.
        cell.write(DATA + 8, 0x77, 8).unwrap();
        assert_eq!(mem.page_state(0), PageState::Lent(vm));
        // The view goes: the retried read completes with the host's data.
        cell.send(CMD_READ, &[DATA + chunk + 100 * K4, 8]).unwrap();
        assert_eq!(page_fault(cell.finish().unwrap_err()).1, -libc::EPERM);
        drop(view);
        cell.vcpu().set_resume(ResumeAction::Retry);
        assert_eq!(cell.finish().unwrap(), 0x5a5a, "{kind:?}");
        assert_eq!(mem.page_state(chunk + 7 * K4), PageState::Lent(vm));
        assert_eq!(mem.page_state(2 * chunk), PageState::LendBound(vm));
        drop(across);
        cell.write(DATA + 2 * chunk, 0x88, 8).unwrap();
        cell.write(DATA + 4 * chunk - 8, 0x99, 8).unwrap();
        assert_eq!(mem.page_state(3 * chunk - K4), PageState::Lent(vm));
        assert_eq!(mem.page_state(3 * chunk), PageState::Lent(vm));
        assert_installed_within_bindings(&g.vm);
    }
}
