//! Race stress (issue 8 items 1, 2): a host thread binds and unbinds a
//! binding R in a loop (MAP_MEM / UNMAP of the same range) and, while R is
//! lent, reclaims random parts of it, while two vCPUs on two threads write
//! patterns into their own parts of R and read them back (8-byte stores,
//! page- and chunk-crossing ones included, and fill + checksum over a
//! page-crossing range). A vCPU that gets a PAGE_FAULT exit (-ENOENT while
//! R is unbound) waits briefly and RETRYs until the access completes.
//!
//! Every completed write is verified:
//! * share bindings keep their content across UNMAP (DESIGN D5): every
//!   read-back equals what was written;
//! * lent content is zeroed when the host takes it back (UNMAP, reclaim:
//!   D5, D8), so the host bumps an epoch (odd while an unbind or reclaim is
//!   in progress) and a read-back must equal the write whenever the epoch
//!   did not change around the write and its read-back; otherwise each
//!   page's part of it is either what was written or zero.
//!
//! `Vcpu::run()` must never return `Err`: races become the SPEC's exits.
//! Duration: `LENDVM_STRESS_SECS` (default 10) seconds in all, shared by
//! the five configurations.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use test_guests::holding_cell::{Cell, CellError, fnv1a, protocol::*};
use test_guests::testing::*;
use vmm::{Access, BindRequest, Exit, GuestAddress, GuestMem, Perms, ResumeAction, Vm};

const P: u64 = 4096;
const M: u64 = 1 << 20;
/// R: 4 MiB at `DATA`, two 2 MiB demand chunks.
const SIZE: u64 = 4 * M;

/// The parts of R each vCPU owns: offsets of its 8-byte writes (aligned,
/// page-crossing, chunk-crossing, at R's end) and of its 32-byte fill,
/// which crosses a page boundary. vCPU 0 owns [0, 2 MiB + 64 KiB): a bit
/// of the second chunk too, so both vCPUs use that chunk.
const WRITES: [&[u64]; 2] = [
    &[0x0, 0xffc, 0x1ffd, 0x5_0000, 0x1f_fffc, 0x20_4ffa],
    &[0x21_0000, 0x21_0ffc, 0x30_0ff9, 0x3f_effe, 0x3f_fff8],
];
const FILLS: [u64; 2] = [0x8_0ff0, 0x38_0ff0];
const FILL_LEN: u64 = 32;

/// What the host and the vCPUs share.
struct Shared {
    /// Bumped before and after every UNMAP and reclaim: odd while one is
    /// in progress.
    epoch: AtomicU64,
    /// Bumped before every UNMAP and after every MAP_MEM: even while R is
    /// bound.
    bound: AtomicU64,
    stop: AtomicBool,
    lend: bool,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 20 {
            f.push(what);
        }
    }

    /// Whether content written after `e0` may have been zeroed by `e1`.
    fn may_be_zeroed(&self, e0: u64, e1: u64) -> bool {
        self.lend && (e0 != e1 || e0 % 2 == 1)
    }
}

/// Counters of one vCPU's run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    writes_verified: u64,
    fills_verified: u64,
    /// Verifications where the epoch changed (zero was allowed).
    relaxed: u64,
    /// Read-backs where the host had zeroed (part of) the write.
    zeroed: u64,
    faults_enoent: u64,
    faults_eperm: u64,
    retries: u64,
    lost: u64,
    run_errors: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.writes_verified += o.writes_verified;
        self.fills_verified += o.fills_verified;
        self.relaxed += o.relaxed;
        self.zeroed += o.zeroed;
        self.faults_enoent += o.faults_enoent;
        self.faults_eperm += o.faults_eperm;
        self.retries += o.retries;
        self.lost += o.lost;
        self.run_errors += o.run_errors;
    }
}

/// xorshift64*, seeded per thread (seeds are printed on failure).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Rng(RandomState::new().hash_one((std::thread::current().id(), now)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Why a command could not be completed.
enum Stop {
    /// `run()` returned Err, or the guest broke the protocol.
    Broken(String),
}

/// Run one holding-cell command to its result, RETRYing every page fault
/// after a short wait.
fn command(
    cell: &mut Cell<'_>,
    sh: &Shared,
    c: &mut Counts,
    rng: &mut Rng,
    cmd: u64,
    args: &[u64],
) -> Result<u64, Stop> {
    let broken = |c: &mut Counts, e: CellError| {
        if matches!(e, CellError::Vm(_)) {
            c.run_errors += 1;
        }
        Stop::Broken(format!("command {cmd} {args:x?}: {e}"))
    };
    cell.send(cmd, args).map_err(|e| broken(c, e))?;
    loop {
        let b0 = sh.bound.load(SeqCst);
        let exit = cell.finish();
        let b1 = sh.bound.load(SeqCst);
        match exit {
            Ok(v) => return Ok(v),
            Err(CellError::Exit(Exit::PageFault {
                phys_addr, attempt, ..
            })) => {
                if attempt == -libc::ENOENT && b0 == b1 && b0.is_multiple_of(2) {
                    // R was bound throughout the run (DESIGN D1).
                    sh.fail(format!(
                        "command {cmd} {args:x?}: -ENOENT at {phys_addr:#x} while R was bound"
                    ));
                }
                if !(DATA..DATA + SIZE).contains(&phys_addr) {
                    return Err(Stop::Broken(format!(
                        "command {cmd} {args:x?}: page fault at {phys_addr:#x}, outside R"
                    )));
                }
                match -attempt {
                    libc::ENOENT => c.faults_enoent += 1,
                    libc::EPERM => c.faults_eperm += 1,
                    _ => {
                        return Err(Stop::Broken(format!(
                            "command {cmd} {args:x?}: page fault with attempt {attempt}"
                        )));
                    }
                }
                std::thread::sleep(Duration::from_micros(20 + rng.below(180)));
                c.retries += 1;
                cell.vcpu().set_resume(ResumeAction::Retry);
            }
            Err(e) => return Err(broken(c, e)),
        }
    }
}

/// Split `[gpa, gpa + len)` at page boundaries: (start, end) indexes.
fn page_parts(gpa: u64, len: u64) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut at = gpa;
    while at < gpa + len {
        let end = ((at | (P - 1)) + 1).min(gpa + len);
        parts.push(((at - gpa) as usize, (end - gpa) as usize));
        at = end;
    }
    parts
}

/// With zeroing allowed: every page's part of `got` is all of `want`'s
/// bytes or all zero.
fn whole_or_zero_per_page(gpa: u64, want: &[u8], got: &[u8]) -> bool {
    page_parts(gpa, want.len() as u64)
        .into_iter()
        .all(|(a, b)| got[a..b] == want[a..b] || got[a..b].iter().all(|&x| x == 0))
}

/// Every checksum a fill of `byte` over `[gpa, gpa + len)` can read back
/// when pages may be zeroed meanwhile: the fill and the checksum each go
/// up in address order, so a page zeroed between them loses a prefix (if
/// zeroed during the fill), a suffix (during the checksum) or all of its
/// part: each page part reads 0^a byte^m 0^c.
fn fill_outcomes(gpa: u64, len: u64, byte: u8) -> HashSet<u64> {
    let mut states: Vec<Vec<u8>> = vec![Vec::new()];
    for (a, b) in page_parts(gpa, len) {
        let n = b - a;
        let mut next = Vec::new();
        for prefix in &states {
            for lead in 0..=n {
                for m in 0..=n - lead {
                    let mut v = prefix.clone();
                    v.extend(std::iter::repeat_n(0, lead));
                    v.extend(std::iter::repeat_n(byte, m));
                    v.extend(std::iter::repeat_n(0, n - lead - m));
                    next.push(v);
                }
            }
        }
        next.sort();
        next.dedup();
        states = next;
    }
    states.iter().map(|v| fnv1a(v)).collect()
}

/// One vCPU's loop: write, read back, verify; fill, checksum, verify.
/// Returns its counts and the last value written at each offset.
fn vcpu_loop(id: usize, cell: &mut Cell<'_>, sh: &Shared) -> (Counts, Vec<(u64, u64)>) {
    let mut c = Counts::default();
    let mut rng = Rng::new();
    let seed = rng.0;
    let offsets = WRITES[id];
    // The last value written at each offset, and the epoch before it.
    let mut last: Vec<Option<(u64, u64)>> = vec![None; offsets.len()];
    let mut round = 0usize;
    let result = (|| -> Result<(), Stop> {
        while !sh.stop.load(SeqCst) {
            round += 1;
            let k = round % offsets.len();
            let gpa = DATA + offsets[k];
            // No zero byte: a zero read back can only be the host's.
            let v = rng.next() | 0x0101_0101_0101_0101;
            let e0 = sh.epoch.load(SeqCst);
            command(cell, sh, &mut c, &mut rng, CMD_WRITE, &[gpa, v, 8])?;
            let got = command(cell, sh, &mut c, &mut rng, CMD_READ, &[gpa, 8])?;
            let e1 = sh.epoch.load(SeqCst);
            last[k] = Some((v, e0));
            verify_word(sh, &mut c, id, gpa, v, got, e0, e1, "read-back");
            if round.is_multiple_of(8) {
                let gpa = DATA + FILLS[id];
                let byte = (rng.next() as u8) | 1;
                let e0 = sh.epoch.load(SeqCst);
                command(
                    cell,
                    sh,
                    &mut c,
                    &mut rng,
                    CMD_FILL,
                    &[gpa, FILL_LEN, byte as u64],
                )?;
                let sum = command(cell, sh, &mut c, &mut rng, CMD_CHECKSUM, &[gpa, FILL_LEN])?;
                let e1 = sh.epoch.load(SeqCst);
                c.fills_verified += 1;
                if sum != fnv1a(&[byte; FILL_LEN as usize]) {
                    if !sh.may_be_zeroed(e0, e1) {
                        c.lost += 1;
                        sh.fail(format!(
                            "vCPU {id}: fill of {byte:#x} at {gpa:#x} read back changed (epoch {e0} -> {e1})"
                        ));
                    } else if fill_outcomes(gpa, FILL_LEN, byte).contains(&sum) {
                        c.zeroed += 1;
                    } else {
                        c.lost += 1;
                        sh.fail(format!(
                            "vCPU {id}: fill of {byte:#x} at {gpa:#x} read back neither it nor zeroed pages"
                        ));
                    }
                }
                if sh.may_be_zeroed(e0, e1) {
                    c.relaxed += 1;
                }
            }
        }
        // The host stopped with R bound: every offset still holds its last
        // value (share), or it or zero if the host took it back since.
        for (k, l) in last.iter().enumerate() {
            let Some((v, e0)) = *l else { continue };
            let gpa = DATA + offsets[k];
            let got = command(cell, sh, &mut c, &mut rng, CMD_READ, &[gpa, 8])?;
            let e1 = sh.epoch.load(SeqCst);
            verify_word(sh, &mut c, id, gpa, v, got, e0, e1, "final read");
        }
        Ok(())
    })();
    if let Err(Stop::Broken(why)) = result {
        sh.fail(format!("vCPU {id} (seed {seed:#x}) stopped: {why}"));
    }
    let written = offsets
        .iter()
        .zip(&last)
        .filter_map(|(&off, l)| l.map(|(v, _)| (off, v)))
        .collect();
    (c, written)
}

#[allow(clippy::too_many_arguments)]
fn verify_word(
    sh: &Shared,
    c: &mut Counts,
    id: usize,
    gpa: u64,
    v: u64,
    got: u64,
    e0: u64,
    e1: u64,
    what: &str,
) {
    c.writes_verified += 1;
    let zero_ok = sh.may_be_zeroed(e0, e1);
    if zero_ok {
        c.relaxed += 1;
    }
    if got == v {
        return;
    }
    let (want, seen) = (v.to_le_bytes(), got.to_le_bytes());
    if zero_ok && whole_or_zero_per_page(gpa, &want, &seen) {
        c.zeroed += 1;
        return;
    }
    c.lost += 1;
    sh.fail(format!(
        "vCPU {id}: {what} at {gpa:#x}: wrote {v:#018x}, read {got:#018x} (epoch {e0} -> {e1})"
    ));
}

/// What the host thread did.
#[derive(Debug, Default)]
struct HostCounts {
    binds: u64,
    reclaims: u64,
    reclaimed_bytes: u64,
}

/// The host: bind, (lend: reclaim random parts,) unbind, until `until`;
/// then bind once more and stop the vCPUs.
fn host_loop(vm: &Vm, r: &GuestMem, access: Access, sh: &Shared, until: Instant) -> HostCounts {
    let mut h = HostCounts::default();
    let mut rng = Rng::new();
    let req = BindRequest::new(r, GuestAddress(DATA), 0, SIZE, access, Perms::RW);
    let bump = || sh.epoch.fetch_add(1, SeqCst);
    let bound = || sh.bound.fetch_add(1, SeqCst);
    let host = |what: &str, res: vmm::Result<()>| {
        if let Err(e) = res {
            sh.fail(format!("host {what}: {e}"));
        }
    };
    while Instant::now() < until && sh.failures.lock().map_or(0, |f| f.len()) == 0 {
        host("MAP_MEM", vm.bind(&req));
        bound();
        h.binds += 1;
        if sh.lend {
            for _ in 0..1 + rng.below(3) {
                std::thread::sleep(Duration::from_micros(rng.below(1500)));
                let (start, pages) = if rng.below(8) == 0 {
                    (0, SIZE / P)
                } else {
                    (rng.below(SIZE / P), 1 + rng.below(64))
                };
                let len = pages.min(SIZE / P - start) * P;
                bump();
                match r.reclaim(start * P, len) {
                    Ok(n) => h.reclaimed_bytes += n,
                    Err(e) => sh.fail(format!("host reclaim [{:#x}, +{len:#x}): {e}", start * P)),
                }
                bump();
                h.reclaims += 1;
            }
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(2500)));
        }
        bump();
        bound();
        host("UNMAP", vm.unbind(&req));
        bump();
        std::thread::sleep(Duration::from_micros(rng.below(800)));
    }
    host("final MAP_MEM", vm.bind(&req));
    bound();
    sh.stop.store(true, SeqCst);
    h
}

fn stress(kind: FileKind, access: Access) {
    const CONFIGS: u64 = 5;
    let total: f64 = std::env::var("LENDVM_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let secs = Duration::from_secs_f64(total / CONFIGS as f64);
    let Some(g) = guest() else { return };
    let r = g.file(kind, SIZE);
    let mut v0 = g.vm.add_vcpu(0).unwrap();
    let mut v1 = g.vm.add_vcpu(1).unwrap();
    g.vm.start().unwrap();
    let sh = Shared {
        epoch: AtomicU64::new(0),
        bound: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        lend: access == Access::Lend,
        failures: Mutex::new(Vec::new()),
    };
    let started = Instant::now();
    let (host, counts, written) = std::thread::scope(|s| {
        let a = s.spawn(|| vcpu_loop(0, &mut Cell::new(&mut v0), &sh));
        let b = s.spawn(|| vcpu_loop(1, &mut Cell::new(&mut v1), &sh));
        let host = host_loop(&g.vm, &r, access, &sh, started + secs);
        let (mut c, mut written) = a.join().unwrap();
        let (c1, w1) = b.join().unwrap();
        c += c1;
        written.extend(w1);
        (host, c, written)
    });
    let what = format!("{kind:?} {access:?}");
    let m = g.vm.metrics();
    println!(
        "races {what}: {:.1} s, {} bind/unbind cycles, {} reclaims ({} KiB), {} writes and {} fills verified \
         ({} with the epoch changed, {} found zeroed by the host), {} -ENOENT and {} -EPERM faults, \
         {} retries, {} lost writes, {} run() errors; {} demand chunks",
        started.elapsed().as_secs_f64(),
        host.binds,
        host.reclaims,
        host.reclaimed_bytes >> 10,
        counts.writes_verified,
        counts.fills_verified,
        counts.relaxed,
        counts.zeroed,
        counts.faults_enoent,
        counts.faults_eperm,
        counts.retries,
        counts.lost,
        counts.run_errors,
        m.memory.demand_chunks,
    );
    let failures = sh.failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
    // The host's view: shared bytes are the last ones written; after the
    // last UNMAP nothing the guest wrote into lent memory is visible to
    // the host (DESIGN D5).
    if kind != FileKind::Private {
        if access == Access::Lend {
            let req = BindRequest::new(&r, GuestAddress(DATA), 0, SIZE, access, Perms::RW);
            g.vm.unbind(&req).unwrap();
            let mut all = vec![0u8; SIZE as usize];
            r.read_at(0, &mut all).unwrap();
            let leaked = all.iter().position(|&b| b != 0);
            assert_eq!(
                leaked, None,
                "{what}: lent bytes reached the host after UNMAP"
            );
        } else {
            for &(off, v) in &written {
                assert_eq!(
                    u64_at(&r, off).unwrap(),
                    v,
                    "{what}: shared bytes at {off:#x}"
                );
            }
        }
    }
    assert_eq!(counts.lost, 0, "{what}: lost writes");
    assert_eq!(counts.run_errors, 0, "{what}: run() errors");
    assert!(
        host.binds > 1 && counts.writes_verified > 20,
        "{what}: it ran"
    );
    assert!(
        counts.faults_enoent > 0,
        "{what}: the vCPUs met an unbound R"
    );
    if access == Access::Lend {
        assert!(host.reclaimed_bytes > 0, "{what}: reclaims took pages back");
    }
    assert_installed_within_bindings(&g.vm);
}

#[test]
fn no_write_is_lost_while_the_host_rebinds_a_shared_memfd() {
    stress(FileKind::Memfd, Access::Share);
}

#[test]
fn no_write_is_lost_while_the_host_rebinds_and_reclaims_a_lent_memfd() {
    stress(FileKind::Memfd, Access::Lend);
}

#[test]
fn no_write_is_lost_while_the_host_rebinds_a_shared_host_mappable_guest_memfd() {
    stress(FileKind::GuestMemfd, Access::Share);
}

#[test]
fn no_write_is_lost_while_the_host_rebinds_and_reclaims_a_lent_host_mappable_guest_memfd() {
    stress(FileKind::GuestMemfd, Access::Lend);
}

#[test]
fn no_write_is_lost_while_the_host_rebinds_and_reclaims_a_lent_private_guest_memfd() {
    stress(FileKind::Private, Access::Lend);
}

// The verifier itself: what zeroing can and cannot explain.
#[test]
fn the_verifier_accepts_exactly_whole_pages_or_zero() {
    let v = 0x1111_2222_3333_4444u64.to_le_bytes();
    let gpa = DATA + 0xffc;
    let mut half = v;
    half[..4].fill(0);
    assert!(whole_or_zero_per_page(gpa, &v, &half));
    let mut torn = v;
    torn[..2].fill(0);
    assert!(!whole_or_zero_per_page(gpa, &v, &torn));
    assert!(!whole_or_zero_per_page(DATA, &v, &half));
    let outcomes = fill_outcomes(DATA + 0xff0, 32, 7);
    let mut s = [7u8; 32];
    assert!(outcomes.contains(&fnv1a(&s)));
    s[..3].fill(0);
    s[14..20].fill(0);
    assert!(outcomes.contains(&fnv1a(&s)));
    s[10] = 0;
    assert!(!outcomes.contains(&fnv1a(&s)));
    assert_eq!(outcomes.len(), 137 * 137);
}
