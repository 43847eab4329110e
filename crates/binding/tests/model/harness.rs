//! Runs the engine and the reference model side by side on abstract
//! operations and panics on the first difference.
//!
//! Operations are abstract so that a generator that knows nothing about the
//! state (proptest, a fuzzer) still hits the interesting cases: an
//! [`Op::Unmap`] picks one of the bindings that exist *now* and removes a
//! whole / front / back / middle piece of it, optionally twisted into a near
//! miss; a [`Val::Units`] is measured in the unit of the file it applies to
//! (2 MiB for huge-page files), so huge-page bindings succeed often enough.

use std::collections::BTreeMap;

use binding::{BindingInfo, Bindings, Change, FileId, FileRules, Plan, RemoveCase, VmId};
use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_WRITE,
    GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND, GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP,
    gunyah_map_mem_args,
};

use super::{ALLOW_HUGEPAGE, CLOEXEC, Decision, HUGE, Model, Outcome, PAGE, Refusal, refusal_of};

/// Chooses a VM or file: below 200 one that is alive (open), below 250 any
/// ever created (possibly destroyed or closed), else an id never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sel(pub u8);

/// A number, resolved against the file it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// `k` times the file's binding unit.
    Units(u8),
    /// `k` units into the file, wrapped to the file's length.
    InFile(u8),
    /// `k` times 4 KiB (misaligned for huge-page files unless `k` is a
    /// multiple of 512).
    Pages(u16),
    /// A small raw number, usually misaligned.
    Bytes(u16),
    /// `2^64 - k` units: page-aligned values that wrap when added to.
    NearTop(u8),
    /// Anything.
    Raw(u64),
}

/// MAP_MEM flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSel {
    /// Access `access % 3` (DEFAULT, FORCE_LEND, FORCE_SHARE) and
    /// permission set `perms % 7 + 1` (never empty).
    Valid { access: u8, perms: u8 },
    /// A valid access value and no permission.
    NoPerm { access: u8 },
    /// A permission and an access value that is none of the three.
    BadAccess { value: u8, perms: u8 },
    /// A valid request plus one bit MAP_MEM does not know.
    UnknownBit { bit: u8, perms: u8 },
    /// Anything.
    Raw(u32),
}

/// How an operation reaches the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `map_mem` / `destroy_vm`.
    Direct,
    /// `plan_*`, check nothing changed, then `commit`.
    PlanCommit,
    /// `plan_*`, then another change, then `commit`, which must refuse.
    Stale,
}

/// Which piece of a binding an [`Op::Unmap`] removes, in file units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Whole,
    Front(u8),
    Back(u8),
    Middle(u8, u8),
    Any(u8, u8),
}

/// A near miss applied to an otherwise matching unmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    None,
    /// Move the guest address by that many units (0 counts as 1).
    ShiftGuest(i8),
    /// Move the guest address by one 4 KiB page.
    ShiftGuestPage,
    /// Move the file offset by that many units (0 counts as 1).
    ShiftOffset(i8),
    /// One or two units longer.
    Longer(u8),
    /// One permission bit or the access value changed.
    WrongFlags(u8),
    /// Another file (or possibly the same one).
    WrongFile(Sel),
    /// Sent to another VM (or possibly the same one).
    OtherVm(Sel),
    /// Up to the end of the next binding of the VM.
    SpanNext,
}

/// What makes a file creation invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileBad {
    ZeroSize,
    /// Size is some pages plus `1 + k % 4095` bytes.
    Unaligned(u16),
    /// Flag bit `2 + k % 62` set.
    Flag(u8),
}

/// Kind-specific file rules (DESIGN D3, D6, SPEC B-ADD-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulesSel {
    pub owner: Option<Sel>,
    pub share_allowed: bool,
    pub write_required: bool,
}

/// One abstract operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `units % 32 + 1` pages, or `units % 3 + 1` huge pages if `huge`
    /// (plus an odd page when `odd`).
    CreateFile {
        units: u8,
        huge: bool,
        odd: bool,
        cloexec: bool,
        bad: Option<FileBad>,
        rules: Option<RulesSel>,
    },
    CreateVm,
    /// A raw MAP_MEM.
    Map {
        vm: Sel,
        file: Sel,
        guest: Val,
        offset: Val,
        size: Val,
        flags: FlagSel,
        unmap: bool,
        via: Via,
    },
    /// An UNMAP of a piece of the `pick`-th existing binding.
    Unmap {
        pick: u16,
        shape: Shape,
        twist: Twist,
        via: Via,
    },
    DestroyVm {
        vm: Sel,
        via: Via,
    },
    CloseFile {
        file: Sel,
    },
    /// `lookup`, `bindings_in`, `file_bindings` near the `pick`-th binding,
    /// `delta` × 512 bytes away from its start.
    Query {
        vm: Sel,
        file: Sel,
        pick: u16,
        delta: i16,
        size: Val,
    },
}

/// What a run exercised, so tests can insist that it keeps exercising it.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Engine operations compared with the model.
    pub ops: u64,
    pub refusals: BTreeMap<&'static str, u64>,
    /// Successful removals: whole, front, back, middle.
    pub removes: [u64; 4],
    pub adds: u64,
    pub huge_files: u64,
    pub huge_adds: u64,
    pub huge_removes: u64,
    pub destroys_with_bindings: u64,
    pub dropped_files: u64,
    pub closed_while_bound: u64,
    pub plan_commits: u64,
    pub lookup_hits: u64,
    pub max_bindings: usize,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.ops += o.ops;
        for (k, v) in &o.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
        for i in 0..4 {
            self.removes[i] += o.removes[i];
        }
        self.adds += o.adds;
        self.huge_files += o.huge_files;
        self.huge_adds += o.huge_adds;
        self.huge_removes += o.huge_removes;
        self.destroys_with_bindings += o.destroys_with_bindings;
        self.dropped_files += o.dropped_files;
        self.closed_while_bound += o.closed_while_bound;
        self.plan_commits += o.plan_commits;
        self.lookup_hits += o.lookup_hits;
        self.max_bindings = self.max_bindings.max(o.max_bindings);
    }
}

/// The engine and the model, driven together.
pub struct Harness {
    pub engine: Bindings,
    pub model: Model,
    vms: Vec<VmId>,
    files: Vec<FileId>,
    pub stats: Stats,
}

const UNKNOWN_VM: VmId = VmId(u32::MAX);
const UNKNOWN_FILE: FileId = FileId(u32::MAX);
const RWX: u32 = GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE | GUNYAH_MEM_ALLOW_EXEC;
const ACCESSES: [u32; 3] = [
    GUNYAH_MEM_DEFAULT_ACCESS,
    GUNYAH_MEM_FORCE_LEND,
    GUNYAH_MEM_FORCE_SHARE,
];

fn pick<T: Copy>(sel: Sel, live: &[T], all: &[T], unknown: T) -> T {
    match sel.0 {
        s if s < 200 && !live.is_empty() => live[usize::from(s) % live.len()],
        s if s < 250 && !all.is_empty() => all[usize::from(s) % all.len()],
        _ => unknown,
    }
}

/// Access values inside the access field that are none of the three.
fn bad_access_values() -> Vec<u32> {
    (0..=GUNYAH_MEM_ACCESS_MASK)
        .filter(|v| v & !GUNYAH_MEM_ACCESS_MASK == 0 && !ACCESSES.contains(v))
        .collect()
}

/// Bits MAP_MEM does not know.
fn unknown_bits() -> Vec<u32> {
    (0..32)
        .map(|b| 1u32 << b)
        .filter(|b| b & (RWX | GUNYAH_MEM_ACCESS_MASK | GUNYAH_MEM_UNMAP) == 0)
        .collect()
}

impl FlagSel {
    fn resolve(self) -> u32 {
        let perms = |p: u8| u32::from(p) % RWX + 1;
        match self {
            FlagSel::Valid { access, perms: p } => ACCESSES[usize::from(access) % 3] | perms(p),
            FlagSel::NoPerm { access } => ACCESSES[usize::from(access) % 3],
            FlagSel::BadAccess { value, perms: p } => {
                let bad = bad_access_values();
                bad[usize::from(value) % bad.len()] | perms(p)
            }
            FlagSel::UnknownBit { bit, perms: p } => {
                let bits = unknown_bits();
                bits[usize::from(bit) % bits.len()] | GUNYAH_MEM_FORCE_LEND | perms(p)
            }
            FlagSel::Raw(f) => f,
        }
    }
}

impl Val {
    fn resolve(self, unit: u64, file_size: u64) -> u64 {
        match self {
            Val::Units(k) => u64::from(k) * unit,
            Val::InFile(k) => match file_size / unit {
                0 => 0,
                n => (u64::from(k) % n) * unit,
            },
            Val::Pages(k) => u64::from(k) * PAGE,
            Val::Bytes(k) => u64::from(k),
            Val::NearTop(k) => 0u64.wrapping_sub(u64::from(k) * unit),
            Val::Raw(v) => v,
        }
    }
}

impl Shape {
    /// (first unit, number of units) of a piece of an `n`-unit binding.
    fn resolve(self, n: u64) -> (u64, u64) {
        match self {
            Shape::Front(a) if n >= 2 => (0, 1 + u64::from(a) % (n - 1)),
            Shape::Back(a) if n >= 2 => {
                let len = 1 + u64::from(a) % (n - 1);
                (n - len, len)
            }
            Shape::Middle(a, b) if n >= 3 => {
                let start = 1 + u64::from(a) % (n - 2);
                (start, 1 + u64::from(b) % (n - 1 - start))
            }
            Shape::Any(a, b) => {
                let start = u64::from(a) % n;
                (start, 1 + u64::from(b) % (n - start))
            }
            _ => (0, n),
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// Two VMs and three files (one of them huge-page) to start from.
    pub fn new() -> Harness {
        let mut h = Harness {
            engine: Bindings::new(),
            model: Model::new(),
            vms: Vec::new(),
            files: Vec::new(),
            stats: Stats::default(),
        };
        for op in [
            Op::CreateVm,
            Op::CreateVm,
            Op::CreateFile {
                units: 31,
                huge: false,
                odd: false,
                cloexec: false,
                bad: None,
                rules: None,
            },
            Op::CreateFile {
                units: 2,
                huge: true,
                odd: false,
                cloexec: false,
                bad: None,
                rules: None,
            },
            Op::CreateFile {
                units: 15,
                huge: false,
                odd: false,
                cloexec: true,
                bad: None,
                rules: None,
            },
        ] {
            h.step(&op);
        }
        h
    }

    fn live_vms(&self) -> Vec<VmId> {
        let m = &self.model;
        self.vms
            .iter()
            .copied()
            .filter(|&v| m.vm_exists(v))
            .collect()
    }

    fn open_files(&self) -> Vec<FileId> {
        let m = &self.model;
        self.files
            .iter()
            .copied()
            .filter(|&f| m.file_is_open(f))
            .collect()
    }

    fn vm(&self, sel: Sel) -> VmId {
        pick(sel, &self.live_vms(), &self.vms, UNKNOWN_VM)
    }

    fn file(&self, sel: Sel) -> FileId {
        pick(sel, &self.open_files(), &self.files, UNKNOWN_FILE)
    }

    fn unit(&self, file: FileId) -> u64 {
        if self.model.is_huge(file) { HUGE } else { PAGE }
    }

    /// Run one operation on both sides, compare results and the whole
    /// visible state afterwards.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::CreateFile {
                units,
                huge,
                odd,
                cloexec,
                bad,
                rules,
            } => self.create_file(units, huge, odd, cloexec, bad, rules),
            Op::CreateVm => self.create_vm(),
            Op::Map {
                vm,
                file,
                guest,
                offset,
                size,
                flags,
                unmap,
                via,
            } => {
                let vm = self.vm(vm);
                let file = self.file(file);
                let unit = self.unit(file);
                let file_size = self.model.file_size(file).unwrap_or(0);
                let args = gunyah_map_mem_args {
                    guest_addr: guest.resolve(unit, file_size),
                    flags: flags.resolve() | if unmap { GUNYAH_MEM_UNMAP } else { 0 },
                    guest_mem_fd: file.0,
                    offset: offset.resolve(unit, file_size),
                    size: size.resolve(unit, file_size),
                };
                self.map_mem(vm, args, via);
            }
            Op::Unmap {
                pick,
                shape,
                twist,
                via,
            } => {
                let (vm, args) = self.unmap_args(pick, shape, twist);
                self.map_mem(vm, args, via);
            }
            Op::DestroyVm { vm, via } => {
                let vm = self.vm(vm);
                self.destroy_vm(vm, via);
            }
            Op::CloseFile { file } => {
                let file = self.file(file);
                let bound = self.model.file_info(file).is_some_and(|i| i.refs > 1);
                let got = self.engine.close_file(file);
                let want = self.model.close_file(file);
                self.compare("close_file", &got, &want, |a, b| a == b);
                if bound && got.is_ok() {
                    self.stats.closed_while_bound += 1;
                }
            }
            Op::Query {
                vm,
                file,
                pick,
                delta,
                size,
            } => {
                let all = self.model.all_bindings();
                let base = (!all.is_empty()).then(|| all[usize::from(pick) % all.len()]);
                let delta = i64::from(delta) * 512;
                let size = size.resolve(PAGE, 0);
                let mut targets = vec![(self.vm(vm), self.file(file), 0, 0)];
                if let Some((bvm, b)) = base {
                    targets.push((bvm, b.file, b.guest_addr, b.offset));
                }
                for (vm, file, guest, offset) in targets {
                    let g = guest.wrapping_add_signed(delta);
                    let o = offset.wrapping_add_signed(delta);
                    let hit = self.engine.lookup(vm, g);
                    assert_eq!(hit, self.model.lookup(vm, g), "lookup({vm}, {g:#x})");
                    self.stats.lookup_hits += u64::from(hit.is_some());
                    assert_eq!(
                        self.engine.bindings_in(vm, g, size),
                        self.model.bindings_in(vm, g, size),
                        "bindings_in({vm}, {g:#x}, {size:#x})"
                    );
                    assert_eq!(
                        self.engine.file_bindings(file, o, size),
                        self.model.file_bindings(file, o, size),
                        "file_bindings({file}, {o:#x}, {size:#x})"
                    );
                    self.stats.ops += 3;
                }
            }
        }
        self.check_state();
    }

    fn create_file(
        &mut self,
        units: u8,
        huge: bool,
        odd: bool,
        cloexec: bool,
        bad: Option<FileBad>,
        rules: Option<RulesSel>,
    ) {
        let mut size = if huge {
            (u64::from(units) % 3 + 1) * HUGE
        } else {
            (u64::from(units) % 32 + 1) * PAGE
        };
        if odd {
            size += PAGE;
        }
        let mut flags = if huge { ALLOW_HUGEPAGE } else { 0 } | if cloexec { CLOEXEC } else { 0 };
        match bad {
            None => {}
            Some(FileBad::ZeroSize) => size = 0,
            Some(FileBad::Unaligned(k)) => size += 1 + u64::from(k) % (PAGE - 1),
            Some(FileBad::Flag(k)) => flags |= 1 << (2 + u32::from(k) % 62),
        }
        let rules = rules.map(|r| FileRules {
            owner: r.owner.map(|s| self.vm(s)),
            share_allowed: r.share_allowed,
            write_required: r.write_required,
        });
        let got = match rules {
            Some(r) => self.engine.create_file_with(size, flags, r),
            None => self.engine.create_file(size, flags),
        };
        let want = self
            .model
            .create_file(size, flags, rules.unwrap_or_default());
        self.compare("create_file", &got, &want, |a, b| a == b);
        if let Ok(id) = got {
            self.files.push(id);
            self.stats.huge_files += u64::from(huge);
        }
    }

    fn create_vm(&mut self) {
        let got = self.engine.create_vm();
        let want = self.model.create_vm();
        assert_eq!(got, want, "create_vm");
        self.vms.push(got);
        self.stats.ops += 1;
    }

    fn unmap_args(&self, pick: u16, shape: Shape, twist: Twist) -> (VmId, gunyah_map_mem_args) {
        let all = self.model.all_bindings();
        let Some(&(vm, b)) = all.get(usize::from(pick) % all.len().max(1)) else {
            // Nothing is bound: an unmap that cannot match anything.
            let vm = self.vm(Sel(0));
            let file = self.file(Sel(0));
            let args = gunyah_map_mem_args {
                guest_addr: 0,
                flags: GUNYAH_MEM_FORCE_LEND | RWX | GUNYAH_MEM_UNMAP,
                guest_mem_fd: file.0,
                offset: 0,
                size: self.unit(file),
            };
            return (vm, args);
        };
        let unit = self.unit(b.file);
        let (first, len) = shape.resolve(b.size / unit);
        let mut vm = vm;
        let mut args = gunyah_map_mem_args {
            guest_addr: b.guest_addr + first * unit,
            flags: b.flags | GUNYAH_MEM_UNMAP,
            guest_mem_fd: b.file.0,
            offset: b.offset + first * unit,
            size: len * unit,
        };
        let units = |d: i8| i64::from(if d == 0 { 1 } else { d }) * unit as i64;
        match twist {
            Twist::None => {}
            Twist::ShiftGuest(d) => args.guest_addr = args.guest_addr.wrapping_add_signed(units(d)),
            Twist::ShiftGuestPage => args.guest_addr = args.guest_addr.wrapping_add(PAGE),
            Twist::ShiftOffset(d) => args.offset = args.offset.wrapping_add_signed(units(d)),
            Twist::Longer(k) => args.size = args.size.wrapping_add((1 + u64::from(k) % 2) * unit),
            Twist::WrongFlags(k) => {
                let access = args.flags & GUNYAH_MEM_ACCESS_MASK;
                let rest = args.flags & !GUNYAH_MEM_ACCESS_MASK;
                args.flags = match k % 5 {
                    0 => args.flags ^ GUNYAH_MEM_ALLOW_READ,
                    1 => args.flags ^ GUNYAH_MEM_ALLOW_WRITE,
                    2 => args.flags ^ GUNYAH_MEM_ALLOW_EXEC,
                    // B-RM-2: DEFAULT and FORCE_LEND are different values.
                    3 if access == GUNYAH_MEM_DEFAULT_ACCESS => rest | GUNYAH_MEM_FORCE_LEND,
                    3 => rest | GUNYAH_MEM_DEFAULT_ACCESS,
                    _ if access == GUNYAH_MEM_FORCE_SHARE => rest | GUNYAH_MEM_FORCE_LEND,
                    _ => rest | GUNYAH_MEM_FORCE_SHARE,
                };
            }
            Twist::WrongFile(s) => args.guest_mem_fd = self.file(s).0,
            Twist::OtherVm(s) => vm = self.vm(s),
            Twist::SpanNext => {
                let next = all
                    .iter()
                    .find(|(v, n)| *v == vm && n.guest_addr >= b.guest_addr + b.size);
                let end = next.map_or((b.guest_addr + b.size).wrapping_add(unit), |(_, n)| {
                    n.guest_addr + n.size
                });
                args.size = end.wrapping_sub(args.guest_addr);
            }
        }
        (vm, args)
    }

    fn map_mem(&mut self, vm: VmId, args: gunyah_map_mem_args, via: Via) {
        let what = format!("map_mem({vm}, {args:x?}) via {via:?}");
        let want = self.model.decide(vm, &args);
        let got = match via {
            Via::Direct => self.engine.map_mem(vm, &args),
            Via::PlanCommit | Via::Stale => self.engine.plan_map_mem(vm, &args),
        };
        self.compare_map(&what, vm, &args, &got, &want);
        let (Ok(plan), Ok(decision)) = (got, want) else {
            return;
        };
        match via {
            Via::Direct => {}
            Via::PlanCommit => {
                // A plan changes nothing until it is committed.
                self.check_state();
                assert_eq!(self.engine.commit(plan), Ok(()), "{what}: commit");
                self.stats.plan_commits += 1;
            }
            Via::Stale => {
                self.stale_commit(plan, &what);
                return;
            }
        }
        self.model.apply(decision);
    }

    /// Change the registry after `plan` was made; committing must then be
    /// refused with EAGAIN and change nothing.
    fn stale_commit(&mut self, plan: Plan, what: &str) {
        self.create_vm();
        self.check_state();
        let got = self.engine.commit(plan);
        self.compare(
            &format!("{what}: stale commit"),
            &got,
            &Err::<(), _>(Refusal::StalePlan),
            |_, _| false,
        );
    }

    fn destroy_vm(&mut self, vm: VmId, via: Via) {
        let what = format!("destroy_vm({vm}) via {via:?}");
        let got = match via {
            Via::Direct => self.engine.destroy_vm(vm),
            Via::PlanCommit | Via::Stale => self.engine.plan_destroy_vm(vm),
        };
        self.stats.ops += 1;
        match via {
            Via::Direct => {}
            Via::PlanCommit => {
                self.check_state();
                assert_eq!(self.engine.commit(got.clone()), Ok(()), "{what}: commit");
                self.stats.plan_commits += 1;
            }
            Via::Stale => {
                self.check_state();
                self.stale_commit(got, &what);
                return;
            }
        }
        let want = self.model.destroy_vm(vm);
        assert_plan(&what, &got, &want);
        self.stats.destroys_with_bindings += u64::from(!want.removed.is_empty());
        self.stats.dropped_files += want.dropped_files.len() as u64;
    }

    fn compare<T: std::fmt::Debug, U: std::fmt::Debug>(
        &mut self,
        what: &str,
        got: &Result<T, binding::Error>,
        want: &Result<U, Refusal>,
        same: impl Fn(&T, &U) -> bool,
    ) {
        self.stats.ops += 1;
        match (got, want) {
            (Ok(g), Ok(w)) if same(g, w) => {}
            (Err(e), Err(r)) if refusal_of(e) == *r && e.errno() == r.errno() => {
                *self.stats.refusals.entry(r.kind()).or_default() += 1;
            }
            _ => panic!("{what}: engine gave {got:?}, model says {want:?}"),
        }
    }

    fn compare_map(
        &mut self,
        what: &str,
        vm: VmId,
        args: &gunyah_map_mem_args,
        got: &Result<Plan, binding::Error>,
        want: &Result<Decision, Refusal>,
    ) {
        self.compare(what, got, want, |_, _| true);
        match (got, want) {
            (Ok(plan), Ok(d)) => {
                assert_plan(what, plan, &d.outcome);
                let huge = self.model.is_huge(FileId(args.guest_mem_fd));
                match plan.change {
                    Change::Added => {
                        self.stats.adds += 1;
                        self.stats.huge_adds += u64::from(huge);
                    }
                    Change::Removed(case) => {
                        let i = match case {
                            RemoveCase::Whole => 0,
                            RemoveCase::Front => 1,
                            RemoveCase::Back => 2,
                            RemoveCase::Middle => 3,
                        };
                        self.stats.removes[i] += 1;
                        self.stats.huge_removes += u64::from(huge);
                    }
                    Change::VmDestroyed => panic!("{what}: MAP_MEM planned a VM teardown"),
                }
            }
            // Any binding the request overlaps is a right answer, but it
            // must be a real one that really overlaps.
            (
                Err(binding::Error::FileRangeBound {
                    vm: holder,
                    existing,
                    ..
                }),
                _,
            ) => {
                assert!(
                    self.model.bindings(*holder).contains(existing)
                        && existing.file.0 == args.guest_mem_fd
                        && existing.offset < args.offset + args.size
                        && args.offset < existing.offset + existing.size,
                    "{what}: engine names {existing:x?} in {holder} as the overlapping binding"
                );
            }
            (Err(binding::Error::GuestRangeBound { existing, .. }), _) => {
                assert!(
                    self.model.bindings(vm).contains(existing)
                        && existing.guest_addr < args.guest_addr + args.size
                        && args.guest_addr < existing.guest_addr + existing.size,
                    "{what}: engine names {existing:x?} as the overlapping binding"
                );
            }
            _ => {}
        }
    }

    /// Every VM's bindings and every file's record, engine against model.
    pub fn check_state(&mut self) {
        let mut total = 0;
        for &vm in self.vms.iter().chain([&UNKNOWN_VM]) {
            assert_eq!(
                self.engine.vm_exists(vm),
                self.model.vm_exists(vm),
                "vm_exists({vm})"
            );
            let got = self.engine.bindings(vm);
            assert_eq!(got, self.model.bindings(vm), "bindings({vm})");
            assert_eq!(self.engine.binding_count(vm), got.len());
            total += got.len();
        }
        for &file in self.files.iter().chain([&UNKNOWN_FILE]) {
            assert_eq!(
                self.engine.file_info(file),
                self.model.file_info(file),
                "file_info({file})"
            );
        }
        self.stats.max_bindings = self.stats.max_bindings.max(total);
    }
}

fn assert_plan(what: &str, plan: &Plan, want: &Outcome) {
    let got = Outcome {
        vm: plan.vm,
        change: plan.change,
        reclaim: plan.reclaim.clone(),
        removed: plan.removed.clone(),
        added: plan.added.clone(),
        dropped_files: plan.dropped_files.clone(),
    };
    assert_eq!(&got, want, "{what}: plan");
    let bytes: u64 = want.reclaim.iter().map(|b: &BindingInfo| b.size).sum();
    assert_eq!(plan.reclaim_bytes(), bytes, "{what}: reclaim_bytes");
}
