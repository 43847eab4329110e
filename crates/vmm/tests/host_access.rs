//! The host's guest-address accessors, `Vm::read_guest` and
//! `Vm::write_guest`, over random ranges of a layout that mixes every kind
//! of memory: share bindings, lend bindings with some chunks lent (by
//! `Vm::lend_now`, no guest needed) and others not, a private file, and
//! unbound gaps. DESIGN D4 and §6 invariant 4: an access that fails leaves
//! the caller's buffer and the memory exactly as they were, and says why
//! (the first byte it may not touch); one that succeeds moves exactly the
//! bytes a model predicts.

use std::ops::Range;
use std::sync::OnceLock;

use gmem::PageState;
use proptest::prelude::*;
use test_guests::testing::{DATA, device};
use vmm::{Access, BindRequest, Device, GuestAddress, GuestMem, Mode, Perms, Vm, demand_chunk};

const P: u64 = 4096;
const M: u64 = 1 << 20;
/// Guest address of the layout's first byte.
const BASE: u64 = DATA;

/// What backs a binding of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    Memfd,
    HostMappable,
    Private,
}

/// One binding of the layout (guest addresses relative to `BASE`).
struct Spec {
    name: &'static str,
    at: u64,
    size: u64,
    /// File offset of the binding's first byte (the file is
    /// `offset + size` bytes).
    offset: u64,
    backing: Backing,
    access: Access,
    /// A guest range (relative) to hand over with `Vm::lend_now`.
    lend_now: Option<Range<u64>>,
}

/// The lend binding with several chunks: [5p, 4 MiB + 8 KiB), whose chunk
/// grid (2 MiB) cuts it into [5p, 2 MiB), [2 MiB, 4 MiB), [4 MiB, end).
const MULTI_AT: u64 = 5 * P;
const MULTI_END: u64 = 4 * M + 2 * P;

const LAYOUT: &[Spec] = &[
    Spec {
        name: "share memfd",
        at: 0,
        size: 4 * P,
        offset: P,
        backing: Backing::Memfd,
        access: Access::Share,
        lend_now: None,
    },
    // [4p, 5p) unbound.
    Spec {
        name: "lend guest_memfd, middle chunk lent",
        at: MULTI_AT,
        size: MULTI_END - MULTI_AT,
        offset: 0,
        backing: Backing::HostMappable,
        access: Access::Lend,
        lend_now: Some(2 * M + 3 * P..2 * M + 4 * P),
    },
    Spec {
        name: "share guest_memfd",
        at: MULTI_END,
        size: 2 * P,
        offset: 0,
        backing: Backing::HostMappable,
        access: Access::Share,
        lend_now: None,
    },
    Spec {
        name: "lend private guest_memfd",
        at: MULTI_END + 2 * P,
        size: 2 * P,
        offset: 0,
        backing: Backing::Private,
        access: Access::Lend,
        lend_now: None,
    },
    Spec {
        name: "lend memfd, lent",
        at: MULTI_END + 4 * P,
        size: 2 * P,
        offset: 2 * P,
        backing: Backing::Memfd,
        access: Access::Lend,
        lend_now: Some(MULTI_END + 5 * P..MULTI_END + 6 * P),
    },
    Spec {
        name: "lend memfd, not lent",
        at: MULTI_END + 6 * P,
        size: 2 * P,
        offset: 0,
        backing: Backing::Memfd,
        access: Access::Lend,
        lend_now: None,
    },
    // [MULTI_END + 8p, ...) unbound.
];

/// End of the modelled guest range (relative): one unbound page past the
/// last binding.
const END: u64 = MULTI_END + 9 * P;

/// Guest addresses (relative) where the kind of memory changes.
const EDGES: &[u64] = &[
    0,
    P,
    4 * P,
    5 * P,
    2 * M,
    4 * M,
    MULTI_END,
    MULTI_END + 2 * P,
    MULTI_END + 4 * P,
    MULTI_END + 5 * P,
    MULTI_END + 6 * P,
    MULTI_END + 8 * P,
];

/// What the host may do with one byte of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unbound,
    /// Bound and host-accessible: file index and file offset.
    Host(usize, u64),
    /// Lent to the guest: file index and file offset.
    Lent(usize, u64),
    Private,
}

/// The layout, built in a fresh VM, and a model of its bytes.
struct World {
    vm: Vm,
    files: Vec<GuestMem>,
    /// Lent guest ranges (relative), as the chunk grid makes them.
    lent: Vec<Range<u64>>,
    /// Expected content of `[BASE, BASE + END)` where host-accessible.
    model: Vec<u8>,
    states: Vec<Vec<(Range<u64>, PageState)>>,
    bindings: usize,
}

fn dev() -> Option<&'static Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(device).as_ref()
}

impl World {
    fn new(dev: &Device, seed: u8) -> World {
        let vm = dev.create_vm().unwrap();
        let mut files = Vec::new();
        let mut lent = Vec::new();
        for s in LAYOUT {
            let size = s.offset + s.size;
            let f = match s.backing {
                Backing::Memfd => dev.create_guest_mem(size, 0).unwrap(),
                Backing::HostMappable => vm.create_guest_memfd(size, Mode::HostMappable).unwrap(),
                Backing::Private => vm.create_guest_memfd(size, Mode::Private).unwrap(),
            };
            vm.bind(&BindRequest::new(
                &f,
                GuestAddress(BASE + s.at),
                s.offset,
                s.size,
                s.access,
                Perms::RW,
            ))
            .unwrap();
            // DESIGN D2: lending a page lends its chunk, clipped.
            let chunk = demand_chunk(s.size);
            for r in s.lend_now.iter() {
                let (start, end) = (BASE + r.start, BASE + r.end);
                let lo = (start & !(chunk - 1)).max(BASE + s.at);
                let hi = ((end - 1) & !(chunk - 1)) + chunk;
                lent.push(lo - BASE..hi.min(BASE + s.at + s.size) - BASE);
            }
            files.push(f);
        }
        let mut w = World {
            vm,
            files,
            lent,
            model: vec![0; END as usize],
            states: Vec::new(),
            bindings: 0,
        };
        // Distinct bytes around every edge, written while the host may.
        for &edge in EDGES {
            let lo = edge.saturating_sub(3 * P);
            let hi = (edge + 3 * P).min(END);
            for page in (lo..hi).step_by(P as usize) {
                if let Class::Host(i, off) = w.class(page) {
                    let bytes: Vec<u8> = (0..P)
                        .map(|k| (page + k).wrapping_mul(131) as u8 ^ seed)
                        .collect();
                    w.files[i].write_at(off, &bytes).unwrap();
                    w.model[page as usize..(page + P) as usize].copy_from_slice(&bytes);
                }
            }
        }
        for s in LAYOUT {
            for r in s.lend_now.iter() {
                w.vm.lend_now(GuestAddress(BASE + r.start), r.end - r.start)
                    .unwrap();
            }
        }
        w.states = w.snapshot();
        w.bindings = w.vm.bindings().len();
        w
    }

    /// The class of relative guest address `at`.
    fn class(&self, at: u64) -> Class {
        for (i, s) in LAYOUT.iter().enumerate() {
            if (s.at..s.at + s.size).contains(&at) {
                let off = s.offset + (at - s.at);
                return if s.backing == Backing::Private {
                    Class::Private
                } else if self.lent.iter().any(|r| r.contains(&at)) {
                    Class::Lent(i, off)
                } else {
                    Class::Host(i, off)
                };
            }
        }
        Class::Unbound
    }

    fn snapshot(&self) -> Vec<Vec<(Range<u64>, PageState)>> {
        self.files
            .iter()
            .map(|f| f.page_states(0, f.size()).unwrap())
            .collect()
    }

    /// The error an access to `[gpa, gpa + len)` must give: the first
    /// byte it may not touch decides (errno, and the address or file
    /// offset the message names); None if it must succeed.
    fn expected_error(&self, gpa: u64, len: u64) -> Option<(i32, String)> {
        let Some(end) = gpa.checked_add(len) else {
            return Some((libc::EOVERFLOW, "wraps".into()));
        };
        let mut at = gpa;
        while at < end {
            let rel = at.wrapping_sub(BASE);
            let class = if at < BASE || rel >= END {
                Class::Unbound
            } else {
                self.class(rel)
            };
            match class {
                Class::Unbound => {
                    return Some((libc::ENOENT, format!("guest address {at:#x} is not bound")));
                }
                Class::Private => return Some((libc::EACCES, "private".into())),
                Class::Lent(_, off) => {
                    return Some((
                        libc::EACCES,
                        format!("offset {:#x} is lent", off & !(P - 1)),
                    ));
                }
                Class::Host(..) => at = (at | (P - 1)) + 1,
            }
        }
        None
    }

    /// Check through the files (`read_at`) that every host-accessible
    /// byte of `[lo, hi)` (relative, clipped to the layout) is as modelled,
    /// and that no page changed state and no binding changed.
    fn check_memory(&self, lo: u64, hi: u64, what: &str) {
        let mut page = lo.min(END) & !(P - 1);
        let hi = hi.min(END);
        while page < hi {
            if let Class::Host(i, off) = self.class(page) {
                let mut got = vec![0u8; P as usize];
                self.files[i].read_at(off, &mut got).unwrap();
                let want = &self.model[page as usize..(page + P) as usize];
                if got != want {
                    let k = (0..P as usize).find(|&k| got[k] != want[k]).unwrap_or(0);
                    panic!(
                        "{what}: byte at guest {:#x} ({}) is {:#x}, expected {:#x}",
                        BASE + page + k as u64,
                        LAYOUT[i].name,
                        got[k],
                        want[k]
                    );
                }
            }
            page += P;
        }
        assert_eq!(self.snapshot(), self.states, "{what}: page states changed");
        assert_eq!(self.vm.bindings().len(), self.bindings, "{what}: bindings");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Read { gpa: u64, len: u64 },
    Write { gpa: u64, len: u64, seed: u8 },
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    let near = 3 * P as i64 + 64;
    let len = prop_oneof![
        4 => 0u64..=16,
        4 => 0u64..=3 * P + 7,
        1 => 0u64..=END + P,
    ];
    prop_oneof![
        12 => (prop::sample::select(EDGES), -near..near, len)
            .prop_map(|(edge, d, len)| ((BASE + edge).wrapping_add_signed(d), len)),
        1 => (0u64..64, 0u64..128).prop_map(|(back, len)| (u64::MAX - back, len)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        range().prop_map(|(gpa, len)| Op::Read { gpa, len }),
        (range(), any::<u8>()).prop_map(|((gpa, len), seed)| Op::Write { gpa, len, seed }),
    ]
}

/// Check an error against what the model says it must be.
fn check_error(e: &vmm::Error, want: Option<(i32, String)>, what: &str) {
    let Some((errno, says)) = want else {
        panic!("{what}: failed ({e}) but every byte is host-accessible");
    };
    assert_eq!(e.errno(), errno, "{what}: {e}");
    assert!(
        e.to_string().contains(&says),
        "{what}: the error names the first byte it may not touch ({says}): {e}"
    );
}

fn apply(w: &mut World, op: &Op) {
    match *op {
        Op::Read { gpa, len } => {
            let what = format!("read_guest({gpa:#x}, {len:#x})");
            let want = w.expected_error(gpa, len);
            let sentinel: Vec<u8> = (0..len).map(|k| (k as u8) ^ 0xA5).collect();
            let mut buf = sentinel.clone();
            match w.vm.read_guest(gpa, &mut buf) {
                Ok(()) => {
                    assert!(want.is_none(), "{what}: succeeded, expected {want:?}");
                    if len > 0 {
                        let at = (gpa - BASE) as usize;
                        assert!(
                            buf == w.model[at..at + len as usize],
                            "{what}: bytes differ from the model"
                        );
                    }
                }
                Err(e) => {
                    check_error(&e, want, &what);
                    assert!(buf == sentinel, "{what}: failed but changed the buffer");
                }
            }
            let rel = gpa.wrapping_sub(BASE);
            if gpa >= BASE && rel < END {
                w.check_memory(rel.saturating_sub(P), rel.saturating_add(len + P), &what);
            }
        }
        Op::Write { gpa, len, seed } => {
            let what = format!("write_guest({gpa:#x}, {len:#x})");
            let want = w.expected_error(gpa, len);
            let data: Vec<u8> = (0..len)
                .map(|k| (k as u8).wrapping_mul(29).wrapping_add(seed) | 1)
                .collect();
            let copy = data.clone();
            match w.vm.write_guest(gpa, &data) {
                Ok(()) => {
                    assert!(want.is_none(), "{what}: succeeded, expected {want:?}");
                    if len > 0 {
                        let at = (gpa - BASE) as usize;
                        w.model[at..at + len as usize].copy_from_slice(&data);
                    }
                }
                Err(e) => check_error(&e, want, &what),
            }
            assert_eq!(data, copy, "{what}: the caller's data changed");
            let rel = gpa.wrapping_sub(BASE);
            if gpa >= BASE && rel < END {
                w.check_memory(rel.saturating_sub(P), rel.saturating_add(len + P), &what);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    // DESIGN D4, D2, D8, §6 invariant 4; SPEC B-AC-1/2.
    #[test]
    fn a_host_access_moves_exactly_the_model_bytes_or_fails_changing_nothing(
        seed in any::<u8>(),
        ops in prop::collection::vec(op(), 1..10),
    ) {
        let Some(dev) = dev() else { return Ok(()) };
        let mut w = World::new(dev, seed);
        for op in &ops {
            apply(&mut w, op);
        }
        w.check_memory(0, END, "after all operations");
    }
}

// The layout is what the property test assumes: a lent middle chunk
// between two lend-bound ones, a lent small binding, share pages.
#[test]
fn the_layout_has_every_kind_of_memory() {
    let Some(dev) = dev() else { return };
    let w = World::new(dev, 1);
    let vm = w.vm.id();
    let multi = &w.files[1];
    assert_eq!(demand_chunk(MULTI_END - MULTI_AT), 2 * M);
    assert_eq!(
        multi.page_states(0, multi.size()).unwrap(),
        vec![
            (0..2 * M - MULTI_AT, PageState::LendBound(vm)),
            (2 * M - MULTI_AT..4 * M - MULTI_AT, PageState::Lent(vm)),
            (4 * M - MULTI_AT..multi.size(), PageState::LendBound(vm)),
        ]
    );
    assert_eq!(w.files[0].page_state(P), PageState::Shared(vm));
    assert_eq!(w.files[4].page_state(2 * P), PageState::Lent(vm));
    assert_eq!(w.files[5].page_state(0), PageState::LendBound(vm));
    for (at, class) in [
        (0, Class::Host(0, P)),
        (4 * P, Class::Unbound),
        (2 * M, Class::Lent(1, 2 * M - MULTI_AT)),
        (MULTI_END + 2 * P, Class::Private),
        (MULTI_END + 8 * P, Class::Unbound),
    ] {
        assert_eq!(w.class(at), class, "{at:#x}");
    }
    w.check_memory(0, END, "fresh layout");
}
