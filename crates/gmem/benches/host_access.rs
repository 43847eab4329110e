//! Host access through lendvm vs the same operation done raw (issue 3).
//!
//! For a sealed memfd and a host-mappable KVM guest_memfd, on one 64 MiB
//! range of the same file, in the same run:
//!
//! * `first_touch`: touch one byte per 4 KiB page of never-touched memory
//!   (the range is punched before every iteration, outside the timed part)
//!   through a fresh [`HostView`] vs a raw `mmap(MAP_SHARED)` of the same
//!   descriptor range. `*_full` includes creating and dropping the view
//!   (mmap/munmap for raw); `*_touch_only` times the touches alone.
//!   Two control pairs separate the access code from the mapping:
//!   `lendvm_touch_ptr` touches the view's mapping with the raw side's plain
//!   stores, and `raw_touch_vslice` touches the raw mapping with the
//!   vm-memory `VolatileSlice` copy that `HostView::write` uses.
//! * `seq_write`: write 64 MiB of already-populated (and already-mapped)
//!   memory in 64 KiB chunks: `HostView::write` vs `copy_nonoverlapping`,
//!   `HostView::fill` vs `write_bytes`.
//! * `punch_hole`: free 64 MiB of populated memory as 16 calls of 4 MiB:
//!   `GuestMemFile::punch_hole` vs `fallocate(KEEP_SIZE | PUNCH_HOLE)` on
//!   the same descriptor. The range is repopulated with `allocate` before
//!   every iteration, outside the timed part.
//!
//! Criterion reports each pair side by side in one group. A second pass
//! then measures every pair in alternating order (lendvm first on even
//! rounds, raw first on odd ones) and prints `raw / lendvm` of the median
//! times: at least 0.95 meets the goal.
//!
//! Run: `cargo bench -p lendvm-gmem --bench host_access`.
//! Without a usable `/dev/kvm` the guest_memfd part is skipped (`SKIP`).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::hint::black_box;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use gmem::{GuestMemFile, HostView, Mode};
use vm_memory::VolatileSlice;

/// Size of the range every benchmark works on.
const LEN: u64 = 64 << 20;
/// `LEN` as a host length.
const ULEN: usize = LEN as usize;
const PAGE: usize = 4096;
/// Chunk of a sequential write.
const CHUNK: usize = 64 << 10;
/// Length of one punch-hole call.
const PUNCH: u64 = 4 << 20;
/// Alternating rounds per pair in the ratio pass.
const ROUNDS: usize = 101;
/// The same for the (slower) first-touch pairs.
const ROUNDS_FIRST_TOUCH: usize = 31;
/// The goal of issue 3.
const GOAL: f64 = 0.95;

// ----- a raw mapping ---------------------------------------------------------

/// A raw `mmap(PROT_READ | PROT_WRITE, MAP_SHARED)` of a descriptor range,
/// unmapped on drop: what a VMM without lendvm would do.
struct RawMap {
    ptr: *mut u8,
    len: usize,
}

impl RawMap {
    fn new(fd: RawFd, offset: u64, len: usize) -> RawMap {
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so
        // no existing memory is affected; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "raw mmap: {}",
            std::io::Error::last_os_error()
        );
        RawMap {
            ptr: ptr.cast(),
            len,
        }
    }

    /// Write one byte in every page.
    fn touch(&self) {
        for at in (0..self.len).step_by(PAGE) {
            // SAFETY: `at < len`, inside the live mapping; the file is
            // sealed against shrinking (memfd) or fixed-size (guest_memfd),
            // so the page cannot lie past its end.
            unsafe { self.ptr.add(at).write_volatile(1) };
        }
    }

    /// Copy `buf` to `at`.
    fn copy(&self, at: usize, buf: &[u8]) {
        assert!(at + buf.len() <= self.len);
        // SAFETY: the destination was checked to lie inside the live
        // mapping; `buf` is host memory outside it, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr.add(at), buf.len()) };
    }

    /// Set `len` bytes at `at` to `byte`.
    fn fill(&self, at: usize, len: usize, byte: u8) {
        assert!(at + len <= self.len);
        // SAFETY: the range was checked to lie inside the live mapping.
        unsafe { std::ptr::write_bytes(self.ptr.add(at), byte, len) };
    }

    /// Write one byte in every page with the code `HostView::write` runs:
    /// a bounds-checked vm-memory `VolatileSlice` copy.
    fn touch_volatile(&self) {
        // SAFETY: `ptr..ptr + len` is our live mapping, and the slice does
        // not outlive `self`.
        let vs = unsafe { VolatileSlice::new(self.ptr, self.len) };
        for at in (0..self.len).step_by(PAGE) {
            vs.subslice(at, 1).expect("in bounds").copy_from(&[1u8]);
        }
    }

    /// Pages of the mapping resident in the file's page cache (`mincore`).
    fn resident_pages(&self) -> usize {
        let mut vec = vec![0u8; self.len.div_ceil(PAGE)];
        // SAFETY: `ptr..ptr + len` is our page-aligned mapping and `vec`
        // holds one byte per page of it, as mincore requires.
        let r = unsafe { libc::mincore(self.ptr.cast(), self.len, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range in `new` and nothing
        // borrows it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Touch one byte in every page of `view`, through its bulk API.
fn touch_view(view: &HostView) {
    for at in (0..view.len()).step_by(PAGE) {
        view.write(at, &[1]).expect("touch through a host view");
    }
}

fn raw_punch(fd: RawFd, offset: u64, len: u64) {
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
}

// ----- one iteration of each operation (setup excluded from the result) --------

/// Make the range unpopulated again (untimed).
fn unpopulate(file: &GuestMemFile) {
    file.punch_hole(0, LEN).expect("punch hole");
}

/// First touch through a new view, creating and dropping it included.
fn ft_view_full(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let t = Instant::now();
    let view = file.view(0, LEN).expect("view");
    touch_view(&view);
    drop(view);
    t.elapsed()
}

/// First touch through a raw mapping, mmap and munmap included.
fn ft_raw_full(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let t = Instant::now();
    let map = RawMap::new(file.as_raw_fd(), 0, ULEN);
    map.touch();
    drop(map);
    t.elapsed()
}

/// First touch through a view created (and dropped) outside the timing.
fn ft_view_touch(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let view = file.view(0, LEN).expect("view");
    let t = Instant::now();
    touch_view(&view);
    let d = t.elapsed();
    drop(view);
    d
}

/// First touch through a view created (and dropped) outside the timing,
/// with plain stores through its vm-memory pointer instead of
/// `HostView::write`: the view's mapping with the raw side's access code.
fn ft_view_touch_ptr(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let view = file.view(0, LEN).expect("view");
    let d = {
        let vs = view.as_volatile_slice();
        let guard = vs.ptr_guard_mut();
        let ptr = guard.as_ptr();
        let t = Instant::now();
        for at in (0..ULEN).step_by(PAGE) {
            // SAFETY: `at < LEN`, inside the view's mapping, which lives
            // until `view` is dropped after this block.
            unsafe { ptr.add(at).write_volatile(1) };
        }
        t.elapsed()
    };
    drop(view);
    d
}

/// First touch through a raw mapping made (and unmapped) outside the timing.
fn ft_raw_touch(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let map = RawMap::new(file.as_raw_fd(), 0, ULEN);
    let t = Instant::now();
    map.touch();
    let d = t.elapsed();
    drop(map);
    d
}

/// Control: first touch through a raw mapping, with the access code of
/// `HostView::write` (a `VolatileSlice` copy) instead of a plain store.
fn ft_raw_touch_volatile(file: &GuestMemFile) -> Duration {
    unpopulate(file);
    let map = RawMap::new(file.as_raw_fd(), 0, ULEN);
    let t = Instant::now();
    map.touch_volatile();
    let d = t.elapsed();
    drop(map);
    d
}

/// A view and a raw mapping of the whole range, populated and mapped.
struct Populated {
    view: HostView,
    raw: RawMap,
    buf: Vec<u8>,
}

impl Populated {
    fn new(file: &GuestMemFile) -> Populated {
        let view = file.view(0, LEN).expect("view");
        let raw = RawMap::new(file.as_raw_fd(), 0, ULEN);
        // Populate the pages and both mappings' page tables.
        view.fill(0, ULEN, 0x5a).expect("fill");
        raw.fill(0, ULEN, 0x5a);
        let buf = (0..CHUNK).map(|i| i as u8).collect();
        Populated { view, raw, buf }
    }
}

fn sw_view_write(p: &Populated) -> Duration {
    let t = Instant::now();
    for at in (0..ULEN).step_by(CHUNK) {
        p.view.write(at, black_box(&p.buf)).expect("view write");
    }
    t.elapsed()
}

fn sw_raw_copy(p: &Populated) -> Duration {
    let t = Instant::now();
    for at in (0..ULEN).step_by(CHUNK) {
        p.raw.copy(at, black_box(&p.buf));
    }
    t.elapsed()
}

fn sw_view_fill(p: &Populated) -> Duration {
    let t = Instant::now();
    for at in (0..ULEN).step_by(CHUNK) {
        p.view
            .fill(at, CHUNK, black_box(at as u8))
            .expect("view fill");
    }
    t.elapsed()
}

fn sw_raw_fill(p: &Populated) -> Duration {
    let t = Instant::now();
    for at in (0..ULEN).step_by(CHUNK) {
        p.raw.fill(at, CHUNK, black_box(at as u8));
    }
    t.elapsed()
}

/// Make the whole range populated again (untimed).
fn repopulate(file: &GuestMemFile) {
    file.allocate(0, LEN).expect("allocate");
}

fn ph_lendvm(file: &GuestMemFile) -> Duration {
    repopulate(file);
    let t = Instant::now();
    for off in (0..LEN).step_by(PUNCH as usize) {
        file.punch_hole(off, PUNCH).expect("punch_hole");
    }
    t.elapsed()
}

fn ph_raw(file: &GuestMemFile) -> Duration {
    repopulate(file);
    let fd = file.as_raw_fd();
    let t = Instant::now();
    for off in (0..LEN).step_by(PUNCH as usize) {
        raw_punch(fd, off, PUNCH);
    }
    t.elapsed()
}

// ----- criterion ---------------------------------------------------------------

type Op<'a> = Box<dyn Fn() -> Duration + 'a>;

/// One lendvm operation and its raw counterpart.
struct Pair<'a> {
    group: &'static str,
    lendvm: (&'static str, Op<'a>),
    raw: (&'static str, Op<'a>),
}

/// Benchmark `pairs` (all of one group) side by side in one criterion group.
fn criterion_pairs(c: &mut Criterion, kind: &str, pairs: &[Pair<'_>]) {
    let mut g = c.benchmark_group(format!("{kind}/{}", pairs[0].group));
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(LEN));
    let mut done = Vec::new();
    for p in pairs {
        assert_eq!(p.group, pairs[0].group);
        for (name, op) in [&p.lendvm, &p.raw] {
            // A side shared by two pairs is benchmarked once.
            if done.contains(name) {
                continue;
            }
            done.push(*name);
            g.bench_function(*name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| op()).sum())
            });
        }
    }
    g.finish();
}

// ----- the ratio pass ----------------------------------------------------------

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gib_s(d: Duration) -> f64 {
    LEN as f64 / (1u64 << 30) as f64 / d.as_secs_f64()
}

/// Rounds of the ratio pass for a group: fewer for the slow first touch.
fn rounds(group: &str) -> usize {
    if group == "first_touch" {
        ROUNDS_FIRST_TOUCH
    } else {
        ROUNDS
    }
}

/// Measure each pair in alternating order (lendvm first on even rounds,
/// raw first on odd ones); one line each, with the ratio of the medians and
/// the median and quartiles of the per-round (paired) ratios.
fn ratios(kind: &str, pairs: &[Pair<'_>], out: &mut Vec<String>) {
    for p in pairs {
        let (mut l, mut r, mut paired) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds(p.group) {
            let (dl, dr) = if round % 2 == 0 {
                let dl = (p.lendvm.1)();
                (dl, (p.raw.1)())
            } else {
                let dr = (p.raw.1)();
                ((p.lendvm.1)(), dr)
            };
            l.push(dl);
            r.push(dr);
            paired.push(dr.as_secs_f64() / dl.as_secs_f64());
        }
        let (ml, mr) = (median(&mut l), median(&mut r));
        let ratio = mr.as_secs_f64() / ml.as_secs_f64();
        paired.sort_by(f64::total_cmp);
        let q = |f: f64| paired[((paired.len() - 1) as f64 * f).round() as usize];
        let calls = if p.group == "punch_hole" {
            format!(
                "  ({:.0} vs {:.0} calls/s)",
                (LEN / PUNCH) as f64 / ml.as_secs_f64(),
                (LEN / PUNCH) as f64 / mr.as_secs_f64()
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{kind:<12} {:<11} {:<17} {:>7.3} ms {:>6.2} GiB/s | {:<16} {:>7.3} ms {:>6.2} GiB/s \
             | ratio {ratio:.3} (paired {:.3} [{:.3}, {:.3}], n={}) {}{calls}",
            p.group,
            p.lendvm.0,
            ml.as_secs_f64() * 1e3,
            gib_s(ml),
            p.raw.0,
            mr.as_secs_f64() * 1e3,
            gib_s(mr),
            q(0.5),
            q(0.25),
            q(0.75),
            paired.len(),
            if ratio >= GOAL { "ok" } else { "BELOW 0.95" },
        ));
    }
}

// ----- main ----------------------------------------------------------------------

/// Check once that punching really empties the range and touching fills it,
/// so first-touch iterations start from unpopulated memory.
fn sanity(kind: &str, file: &GuestMemFile) {
    let probe = RawMap::new(file.as_raw_fd(), 0, ULEN);
    unpopulate(file);
    let after_punch = probe.resident_pages();
    let view = file.view(0, LEN).expect("view");
    touch_view(&view);
    drop(view);
    let after_touch = probe.resident_pages();
    println!(
        "sanity {kind}: resident pages after punch {after_punch}/{}, after touch {after_touch}/{}",
        ULEN / PAGE,
        ULEN / PAGE
    );
    assert_eq!(after_punch, 0, "punch hole left pages resident");
    assert_eq!(
        after_touch,
        ULEN / PAGE,
        "touch did not populate every page"
    );
}

fn bench_kind(c: &mut Criterion, kind: &'static str, file: &GuestMemFile, out: &mut Vec<String>) {
    sanity(kind, file);

    let fresh = [
        Pair {
            group: "first_touch",
            lendvm: ("lendvm_view_full", Box::new(|| ft_view_full(file))),
            raw: ("raw_mmap_full", Box::new(|| ft_raw_full(file))),
        },
        Pair {
            group: "first_touch",
            lendvm: ("lendvm_touch_only", Box::new(|| ft_view_touch(file))),
            raw: ("raw_touch_only", Box::new(|| ft_raw_touch(file))),
        },
        // Control pairs: the same touch code on both sides, so any gap left
        // is the view's mapping or bookkeeping, not the access code.
        Pair {
            group: "first_touch",
            lendvm: ("lendvm_touch_ptr", Box::new(|| ft_view_touch_ptr(file))),
            raw: ("raw_touch_only", Box::new(|| ft_raw_touch(file))),
        },
        Pair {
            group: "first_touch",
            lendvm: ("lendvm_touch_only", Box::new(|| ft_view_touch(file))),
            raw: ("raw_touch_vslice", Box::new(|| ft_raw_touch_volatile(file))),
        },
    ];
    criterion_pairs(c, kind, &fresh);
    ratios(kind, &fresh, out);

    // The mappings of the write benchmarks exist only while they run, so
    // they do not add work to the others' punches and faults.
    let populated = Populated::new(file);
    let p = &populated;
    let writes = [
        Pair {
            group: "seq_write",
            lendvm: ("lendvm_write", Box::new(|| sw_view_write(p))),
            raw: ("raw_copy", Box::new(|| sw_raw_copy(p))),
        },
        Pair {
            group: "seq_write",
            lendvm: ("lendvm_fill", Box::new(|| sw_view_fill(p))),
            raw: ("raw_write_bytes", Box::new(|| sw_raw_fill(p))),
        },
    ];
    criterion_pairs(c, kind, &writes);
    ratios(kind, &writes, out);
    drop(writes);
    drop(populated);

    let punch = [Pair {
        group: "punch_hole",
        lendvm: ("lendvm_punch_hole", Box::new(|| ph_lendvm(file))),
        raw: ("raw_fallocate", Box::new(|| ph_raw(file))),
    }];
    criterion_pairs(c, kind, &punch);
    ratios(kind, &punch, out);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut out = Vec::new();

    let memfd = GuestMemFile::memfd(LEN, 0).expect("memfd");
    bench_kind(&mut c, "memfd", &memfd, &mut out);
    drop(memfd);

    let vm = testkit::kvm().map(|kvm| kvm.create_vm().expect("create VM"));
    match vm.map(|vm| {
        let file = GuestMemFile::guest_memfd(&vm, LEN, Mode::HostMappable);
        (vm, file)
    }) {
        None => {}
        Some((_vm, Err(e))) => println!("SKIP: guest_memfd (host-mappable) unavailable: {e}"),
        Some((_vm, Ok(file))) => bench_kind(&mut c, "guest_memfd", &file, &mut out),
    }

    c.final_summary();
    println!(
        "\nratio = raw median / lendvm median over {ROUNDS_FIRST_TOUCH} (first_touch) or \
         {ROUNDS} (others) alternating rounds of 64 MiB each (goal >= {GOAL}); \
         paired = median [quartiles] of the per-round raw/lendvm ratios"
    );
    for line in &out {
        println!("{line}");
    }
}
