//! Memslot reservation (issue 8 item 8): a lend binding reserves at MAP_MEM
//! every KVM memslot its demand chunks can need, so the host's memslot
//! limit is met at MAP_MEM (ENOSPC, nothing changed) and never at a
//! guest's first touch, which would otherwise have to fail `run()`.

use gmem::PageState;
use test_guests::holding_cell::{Cell, CellError};
use test_guests::testing::*;
use vmm::{Access, BindRequest, Exit, GuestAddress, Perms};

const K4: u64 = 4096;
/// One page of the file every two pages of guest space: no two bindings
/// touch, so each is its own binding with its own chunk.
const STRIDE: u64 = 2 * K4;

fn gpa_of(i: u64) -> u64 {
    DATA + i * STRIDE
}

// DESIGN §1 (32764 memslots), issue 8 item 8: 4 KiB lend bindings are
// accepted until the VM's memslots are all reserved, then MAP_MEM says
// ENOSPC; what was accepted plus lendvm's own reservations is exactly the
// host's memslot count; the guest touching the last bindings gets no Err.
#[test]
fn lend_bindings_are_accepted_until_memslots_run_out_then_map_mem_is_enospc() {
    let Some(g) = guest() else { return };
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let memslots = g.dev.capabilities().memslots as u64;
    let before = g.vm.metrics().memory;
    assert_eq!(before.slots_limit, memslots, "the VM may use every memslot");
    assert!(before.slots_reserved > 0, "lendvm reserves its own slots");
    let own = before.slots_reserved;
    let file = g.dev.create_guest_mem(memslots * K4, 0).unwrap();
    let req = |i: u64, access| {
        BindRequest::new(
            &file,
            GuestAddress(gpa_of(i)),
            i * K4,
            K4,
            access,
            Perms::RW,
        )
    };
    let bindings_before = g.vm.bindings().len();
    let started = std::time::Instant::now();
    let mut accepted = 0u64;
    let err = loop {
        match g.vm.bind(&req(accepted, Access::Lend)) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= memslots, "more bindings than memslots accepted");
    };
    println!(
        "{accepted} lend bindings accepted in {:?}; lendvm reserved {own} slots itself; host memslots {memslots}",
        started.elapsed()
    );
    assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("needs 1 more KVM memslots but only 0 are left"),
        "the message says what ran out: {msg}"
    );
    assert_eq!(accepted + own, memslots);
    let after = g.vm.metrics().memory;
    assert_eq!(after.slots_reserved, memslots);
    assert_eq!(after.slots_limit, memslots);
    // The refused MAP_MEM changed nothing (DESIGN §6 invariant 4).
    assert_eq!(g.vm.bindings().len(), bindings_before + accepted as usize);
    assert_eq!(file.page_state(accepted * K4), PageState::Host);
    // A share binding needs a slot too.
    let share = g.vm.bind(&req(accepted, Access::Share)).unwrap_err();
    assert_eq!(share.errno(), libc::ENOSPC, "{share}");

    // The guest touches the last bindings (and the first): every first
    // touch finds its reserved slot.
    let mut cell = Cell::new(&mut vcpu);
    for i in [accepted - 1, accepted - 2, accepted - 3, 0] {
        let gpa = gpa_of(i);
        let v = 0x5107_0000 + i;
        assert_eq!(cell.write(gpa + 8, v, 8).unwrap(), 0, "binding {i}");
        assert_eq!(cell.read(gpa + 8, 8).unwrap(), v, "binding {i}");
        assert_eq!(file.page_state(i * K4), PageState::Lent(g.vm.id()));
    }
    // Where MAP_MEM was refused nothing is bound (DESIGN D1: -ENOENT).
    let refused = gpa_of(accepted);
    match cell.read(refused, 8) {
        Err(CellError::Exit(Exit::PageFault {
            phys_addr, attempt, ..
        })) => assert_eq!((phys_addr, attempt), (refused, -libc::ENOENT)),
        other => panic!("expected a page fault at {refused:#x}, got {other:?}"),
    }
    assert!(g.vm.installed().len() as u64 <= memslots);

    // Removing a binding gives its reservation back.
    g.vm.unbind(&req(1, Access::Lend)).unwrap();
    assert_eq!(g.vm.metrics().memory.slots_reserved, memslots - 1);
    g.vm.bind(&req(accepted, Access::Lend)).unwrap();
    assert_eq!(g.vm.metrics().memory.slots_reserved, memslots);
}
