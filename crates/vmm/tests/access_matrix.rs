//! Every guest access lands exactly as on bare memory (issue 8): widths 1,
//! 2, 4, 8 and 16 (SSE), string forms and a locked read-modify-write, at
//! aligned, unaligned, page-, chunk- and binding-crossing addresses, on
//! memfd, host-mappable and private guest_memfd files, on first touch and
//! installed; and an access that is half unbound faults without storing a
//! byte, then completes on RETRY once the rest is bound.
//!
//! The guest checks its own memory (read-back and checksums of the bytes
//! around every access, against a model of what the memory must hold);
//! share bindings are also checked by the host.

use test_guests::holding_cell::{Cell, CellError, fnv1a, protocol::*};
use test_guests::testing::*;
use vmm::{
    Access, BindRequest, Exit, GuestAddress, GuestMem, Mode, Perms, ResumeAction, demand_chunk,
};

const M: u64 = 1 << 20;
/// Two lend bindings of `HALF` bytes each, back to back at `DATA`.
const HALF: u64 = 8 * M;
/// Where copies for `rep movsb` come from (inside the first binding).
const SOURCE: u64 = DATA + 3 * M + 0x800;

/// A region of guest memory and what it must hold.
struct Region {
    files: Vec<GuestMem>,
    model: Vec<u8>,
}

impl Region {
    fn put(&mut self, gpa: u64, bytes: &[u8]) {
        let at = (gpa - DATA) as usize;
        self.model[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn get(&self, gpa: u64, len: u64) -> &[u8] {
        let at = (gpa - DATA) as usize;
        &self.model[at..at + len as usize]
    }

    /// Take every lent page back (zeroed, DESIGN D5): the next access to
    /// any chunk is a first touch again.
    fn reset(&mut self) {
        for f in &self.files {
            f.reclaim(0, f.size()).unwrap();
        }
        self.model.fill(0);
    }
}

/// The addresses each access is tried at: aligned, unaligned, and just
/// before a page, a demand chunk and a binding boundary.
fn addresses(width: u64) -> Vec<u64> {
    let chunk = demand_chunk(HALF);
    let mut v = vec![DATA + 0x100, DATA + 0x1003];
    for boundary in [DATA + 0x1000, DATA + chunk, DATA + HALF] {
        for back in [1, width / 2, width - 1] {
            if back > 0 && back < width {
                v.push(boundary - back);
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Check through the guest that the bytes around `[gpa, gpa + len)` are
/// what the model says.
fn check_window(cell: &mut Cell<'_>, r: &Region, gpa: u64, len: u64, what: &str) {
    let lo = gpa.saturating_sub(32).max(DATA);
    let hi = (gpa + len + 32).min(DATA + 2 * HALF);
    let got = cell.checksum(lo, hi - lo).unwrap();
    assert_eq!(
        got,
        fnv1a(r.get(lo, hi - lo)),
        "{what}: bytes around {gpa:#x}"
    );
}

fn value(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_0F0F_F0F0
}

/// Every access kind at every address, twice: first touch, then installed.
fn run_matrix(cell: &mut Cell<'_>, r: &mut Region, kind: FileKind) {
    let mut seed = 1u64;
    for width in [1u64, 2, 4, 8] {
        for gpa in addresses(width) {
            r.reset();
            for round in ["first touch", "installed"] {
                seed += 1;
                let v = value(seed);
                let what = format!("{kind:?} {round} {width}-byte store at {gpa:#x}");
                assert_eq!(cell.write(gpa, v, width).unwrap(), 0, "{what}");
                r.put(gpa, &v.to_le_bytes()[..width as usize]);
                let mask = if width == 8 {
                    u64::MAX
                } else {
                    (1 << (8 * width)) - 1
                };
                assert_eq!(cell.read(gpa, width).unwrap(), v & mask, "{what}");
                check_window(cell, r, gpa, width, &what);
            }
            // A load as the first touch of its chunk(s).
            r.reset();
            let what = format!("{kind:?} first-touch {width}-byte load at {gpa:#x}");
            assert_eq!(cell.read(gpa, width).unwrap(), 0, "{what}");
        }
    }
    for gpa in addresses(16) {
        r.reset();
        for round in ["first touch", "installed"] {
            seed += 1;
            let (lo, hi) = (value(seed), !value(seed));
            let what = format!("{kind:?} {round} 16-byte SSE store at {gpa:#x}");
            assert_eq!(cell.store16(gpa, lo, hi).unwrap(), 0, "{what}");
            r.put(gpa, &lo.to_le_bytes());
            r.put(gpa + 8, &hi.to_le_bytes());
            assert_eq!(cell.load16(gpa).unwrap(), (lo, hi), "{what}");
            check_window(cell, r, gpa, 16, &what);
        }
        r.reset();
        let what = format!("{kind:?} first-touch 16-byte SSE load at {gpa:#x}");
        assert_eq!(cell.load16(gpa).unwrap(), (0, 0), "{what}");
    }
    for gpa in addresses(40) {
        r.reset();
        seed += 1;
        let byte = (seed as u8) | 1;
        let what = format!("{kind:?} first-touch rep stosb at {gpa:#x}");
        assert_eq!(cell.rep_stosb(gpa, 40, byte).unwrap(), 0, "{what}");
        r.put(gpa, &[byte; 40]);
        check_window(cell, r, gpa, 40, &what);
        // A copy across the boundary from bytes the guest wrote first.
        let src: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(7) ^ byte).collect();
        for (i, b) in src.iter().enumerate() {
            cell.write(SOURCE + i as u64, u64::from(*b), 1).unwrap();
        }
        r.put(SOURCE, &src);
        let what = format!("{kind:?} rep movsb to {gpa:#x}");
        assert_eq!(cell.rep_movsb(gpa, SOURCE, 40).unwrap(), 0, "{what}");
        r.put(gpa, &src);
        check_window(cell, r, gpa, 40, &what);
    }
    for gpa in addresses(8) {
        r.reset();
        seed += 1;
        let add = value(seed);
        let what = format!("{kind:?} first-touch lock xadd at {gpa:#x}");
        assert_eq!(cell.xadd(gpa, add).unwrap(), 0, "{what}");
        assert_eq!(cell.xadd(gpa, 1).unwrap(), add, "{what}");
        r.put(gpa, &add.wrapping_add(1).to_le_bytes());
        check_window(cell, r, gpa, 8, &what);
    }
}

fn page_fault(e: CellError) -> (u64, i32) {
    match e {
        CellError::Exit(Exit::PageFault {
            phys_addr, attempt, ..
        }) => (phys_addr, attempt),
        other => panic!("expected a page fault, got {other:?}"),
    }
}

/// An access that runs off the end of the bound memory: it faults with
/// -ENOENT at the unbound page, stores nothing (FAULT proves it), and
/// completes on RETRY once the page is bound.
fn half_bound(g: &Guest, cell: &mut Cell<'_>, r: &mut Region, kind: FileKind) {
    let end = DATA + 2 * HALF;
    let extra = g.dev.create_guest_mem(4096, 0).unwrap();
    for (width, gpa) in [(8u64, end - 4), (2, end - 1), (16, end - 8)] {
        r.reset();
        let what = format!("{kind:?} {width}-byte store at {gpa:#x} across the end");
        let v = value(gpa);
        let send = |cell: &mut Cell<'_>| match width {
            16 => cell.send(CMD_STORE16, &[gpa, v, !v]),
            w => cell.send(CMD_WRITE, &[gpa, v, w]),
        };
        // FAULT: the guest gets #PF and not one byte was stored.
        send(cell).unwrap();
        assert_eq!(
            page_fault(cell.finish().unwrap_err()),
            (end, -libc::ENOENT),
            "{what}"
        );
        cell.vcpu().set_resume(ResumeAction::Fault);
        assert_eq!(cell.finish().unwrap(), FAULTED | 14, "{what}");
        check_window(cell, r, gpa, end - gpa, &what);
        // RETRY after binding the page: the whole store lands.
        send(cell).unwrap();
        assert_eq!(page_fault(cell.finish().unwrap_err()).0, end, "{what}");
        g.vm.bind(&BindRequest::new(
            &extra,
            GuestAddress(end),
            0,
            4096,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        cell.vcpu().set_resume(ResumeAction::Retry);
        assert_eq!(cell.finish().unwrap(), 0, "{what}");
        let bytes: Vec<u8> = v
            .to_le_bytes()
            .into_iter()
            .chain((!v).to_le_bytes())
            .take(width as usize)
            .collect();
        let inside = (end - gpa) as usize;
        r.put(gpa, &bytes[..inside]);
        check_window(cell, r, gpa, end - gpa, &what);
        let mut tail = vec![0u8; width as usize - inside];
        extra.read_at(0, &mut tail).unwrap();
        assert_eq!(tail, &bytes[inside..], "{what}: the part past the end");
        // A load across the same edge reads both parts.
        if width == 8 {
            assert_eq!(cell.read(gpa, 8).unwrap(), v, "{what}: read back");
        }
        g.vm.unbind(&BindRequest::new(
            &extra,
            GuestAddress(end),
            0,
            4096,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        extra.punch_hole(0, 4096).unwrap();
    }
}

fn region(g: &Guest, kind: FileKind) -> Region {
    let files: Vec<GuestMem> = (0..2)
        .map(|i| {
            let f = match kind {
                FileKind::Memfd => g.dev.create_guest_mem(HALF, 0).unwrap(),
                FileKind::GuestMemfd => g.vm.create_guest_memfd(HALF, Mode::HostMappable).unwrap(),
                FileKind::Private => g.vm.create_guest_memfd(HALF, Mode::Private).unwrap(),
            };
            let gpa = DATA + i * HALF;
            g.vm.bind(&BindRequest::new(
                &f,
                GuestAddress(gpa),
                0,
                HALF,
                Access::Lend,
                Perms::RW,
            ))
            .unwrap();
            f
        })
        .collect();
    Region {
        files,
        model: vec![0; 2 * HALF as usize],
    }
}

fn matrix_for(kind: FileKind) {
    let Some(g) = guest() else { return };
    let mut r = region(&g, kind);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    run_matrix(&mut cell, &mut r, kind);
    half_bound(&g, &mut cell, &mut r, kind);
    assert_installed_within_bindings(&g.vm);
}

#[test]
fn every_access_lands_exactly_on_memfd() {
    matrix_for(FileKind::Memfd);
}

#[test]
fn every_access_lands_exactly_on_host_mappable_guest_memfd() {
    matrix_for(FileKind::GuestMemfd);
}

#[test]
fn every_access_lands_exactly_on_private_guest_memfd() {
    matrix_for(FileKind::Private);
}

// Share bindings: the host sees every store exactly, byte for byte.
#[test]
fn every_store_to_shared_memory_is_seen_exactly_by_the_host() {
    for kind in MAPPABLE {
        let Some(g) = guest() else { return };
        let f = g.file(kind, HALF);
        g.vm.bind(&BindRequest::new(
            &f,
            GuestAddress(DATA),
            0,
            HALF,
            Access::Share,
            Perms::RW,
        ))
        .unwrap();
        let mut vcpu = g.vm.add_vcpu(0).unwrap();
        g.vm.start().unwrap();
        let mut cell = Cell::new(&mut vcpu);
        for (width, gpa) in [(8u64, DATA + 0xffc), (4, DATA + 0x2ffe), (2, DATA + 0x3fff)] {
            let v = value(gpa);
            cell.write(gpa, v, width).unwrap();
            let mut got = vec![0u8; width as usize + 2];
            f.read_at(gpa - DATA - 1, &mut got).unwrap();
            let mut want = vec![0u8];
            want.extend_from_slice(&v.to_le_bytes()[..width as usize]);
            want.push(0);
            assert_eq!(got, want, "{kind:?} {width}-byte store at {gpa:#x}");
        }
        cell.store16(DATA + 0x4ff8, 1, 2).unwrap();
        assert_eq!(u64_at(&f, 0x4ff8).unwrap(), 1);
        assert_eq!(u64_at(&f, 0x5000).unwrap(), 2);
    }
}

// DESIGN D11: the access vCPU's tables and stubs are read-only to the
// guest. A hostile guest that writes `jmp $` over the stubs and zeroes the
// access page tables gets its stores as MMIO exits (nothing changes), and
// private accesses completed through the access vCPU afterwards still
// land exactly.
#[test]
fn a_guest_cannot_change_what_the_access_vcpu_runs() {
    let Some(g) = guest() else { return };
    let mut r = region(&g, FileKind::Private);
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    let base = vmm::x86::ACCESS_REGION_BASE;
    let end = base + vmm::x86::ACCESS_REGION_SIZE;
    let stubs = end - 4096;
    let targets = [stubs, stubs + 8, base, base + 0x3000, base + 0x5000];
    let before: Vec<u64> = targets.iter().map(|&a| cell.read(a, 8).unwrap()).collect();
    assert_ne!(before[0], 0, "the stubs are readable");
    for &at in &targets {
        cell.send(CMD_WRITE, &[at, 0xfeeb_feeb_feeb_feeb, 8])
            .unwrap();
        match cell.finish() {
            Err(CellError::Exit(Exit::Mmio {
                phys_addr,
                is_write: true,
                ..
            })) => assert_eq!(phys_addr, at),
            other => panic!("a store to the access region at {at:#x} gave {other:?}"),
        }
        cell.vcpu().set_resume(ResumeAction::Handled);
        assert_eq!(cell.finish().unwrap(), 0);
    }
    let after: Vec<u64> = targets.iter().map(|&a| cell.read(a, 8).unwrap()).collect();
    assert_eq!(after, before, "the access region changed");
    let completed = g.vm.metrics().memory.completed_accesses;
    half_bound(&g, &mut cell, &mut r, FileKind::Private);
    assert!(
        g.vm.metrics().memory.completed_accesses > completed,
        "the private stores were not completed through the access vCPU"
    );
}
