//! MAP_MEM add, the four kinds of remove, and lookup with 100 000 bindings
//! in one VM spread over 100 files, for the engine and for a naive registry
//! that keeps every binding in one `Vec` and walks it for the overlap check,
//! removal and lookup (as the seed driver walks its binding list). Prints a
//! table of operations per second and the engine/naive ratio at the end.
//!
//! Run: `cargo bench -p lendvm-binding` (add `-- --test` for a quick check
//! that every benchmark runs).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use binding::{Bindings, FileId, PAGE_SIZE, VmId};
use criterion::{Criterion, Throughput, criterion_group};
use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_RWX, GUNYAH_MEM_FORCE_LEND, GUNYAH_MEM_UNMAP,
    gunyah_map_mem_args,
};

const P: u64 = PAGE_SIZE;
const BINDINGS: u64 = 100_000;
const FILES: u64 = 100;
/// Pages per binding.
const PAGES: u64 = 4;
/// Binding `i` takes pages `[i * STRIDE, i * STRIDE + PAGES)` of the guest
/// and the same layout in its file; the pages after it are a free gap, so
/// an add into a gap is adjacent to bindings on both sides.
const STRIDE: u64 = 2 * PAGES;
const FILE_SIZE: u64 = BINDINGS / FILES * STRIDE * P;
const FLAGS: u32 = GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_RWX;
/// Operations timed back to back before the untimed restore step.
const CHUNK: u64 = 1000;

/// The `i`-th binding (`gap` = the free range right after it), moved
/// `first` pages in and `pages` long.
fn args(i: u64, gap: bool, first: u64, pages: u64, unmap: bool) -> gunyah_map_mem_args {
    let page = if gap { PAGES } else { 0 } + first;
    gunyah_map_mem_args {
        guest_addr: (i * STRIDE + page) * P,
        flags: FLAGS | if unmap { GUNYAH_MEM_UNMAP } else { 0 },
        guest_mem_fd: (i % FILES) as u32,
        offset: (i / FILES * STRIDE + page) * P,
        size: pages * P,
    }
}

/// What both registries offer.
trait Registry {
    fn map(&mut self, a: &gunyah_map_mem_args) -> Result<(), i32>;
    /// The file offset of the binding holding `guest_addr`.
    fn lookup(&self, guest_addr: u64) -> Option<u64>;
}

struct Engine {
    reg: Bindings,
    vm: VmId,
}

impl Engine {
    fn new() -> Engine {
        let mut reg = Bindings::new();
        let vm = reg.create_vm();
        for f in 0..FILES {
            assert_eq!(reg.create_file(FILE_SIZE, 0), Ok(FileId(f as u32)));
        }
        Engine { reg, vm }
    }
}

impl Registry for Engine {
    fn map(&mut self, a: &gunyah_map_mem_args) -> Result<(), i32> {
        self.reg
            .map_mem(self.vm, a)
            .map(drop)
            .map_err(|e| e.errno())
    }

    fn lookup(&self, guest_addr: u64) -> Option<u64> {
        self.reg.lookup(self.vm, guest_addr).map(|b| b.offset)
    }
}

#[derive(Debug, Clone, Copy)]
struct NaiveBinding {
    guest_addr: u64,
    size: u64,
    file: u32,
    offset: u64,
    flags: u32,
}

/// Every binding in one list, walked for every operation.
#[derive(Default)]
struct Naive {
    list: Vec<NaiveBinding>,
}

impl Registry for Naive {
    fn map(&mut self, a: &gunyah_map_mem_args) -> Result<(), i32> {
        // The same argument checks the engine makes (files are all open,
        // page-sized and large enough here).
        let flags = a.flags & !GUNYAH_MEM_UNMAP;
        if flags & !(GUNYAH_MEM_ALLOW_RWX | GUNYAH_MEM_ACCESS_MASK) != 0
            || flags & GUNYAH_MEM_ALLOW_RWX == 0
            || !(a.guest_addr | a.offset | a.size).is_multiple_of(P)
            || a.size == 0
            || a.guest_addr.checked_add(a.size).is_none()
            || a.offset
                .checked_add(a.size)
                .is_none_or(|end| end > FILE_SIZE)
        {
            return Err(libc::EINVAL);
        }
        let (g, o, n) = (a.guest_addr, a.offset, a.size);
        if a.flags & GUNYAH_MEM_UNMAP == 0 {
            let clash = self.list.iter().any(|b| {
                (b.file == a.guest_mem_fd && o < b.offset + b.size && b.offset < o + n)
                    || (g < b.guest_addr + b.size && b.guest_addr < g + n)
            });
            if clash {
                return Err(libc::EEXIST);
            }
            self.list.push(NaiveBinding {
                guest_addr: g,
                size: n,
                file: a.guest_mem_fd,
                offset: o,
                flags,
            });
            return Ok(());
        }
        let i = self
            .list
            .iter()
            .position(|b| {
                b.file == a.guest_mem_fd
                    && b.flags == flags
                    && b.guest_addr <= g
                    && g + n <= b.guest_addr + b.size
                    && o.wrapping_sub(b.offset) == g - b.guest_addr
            })
            .ok_or(libc::ENOENT)?;
        let b = self.list[i];
        let head = g - b.guest_addr;
        let tail = b.guest_addr + b.size - (g + n);
        let tail_piece = NaiveBinding {
            guest_addr: g + n,
            size: tail,
            offset: o + n,
            ..b
        };
        match (head > 0, tail > 0) {
            (false, false) => {
                self.list.swap_remove(i);
            }
            (false, true) => self.list[i] = tail_piece,
            (true, false) => self.list[i].size = head,
            (true, true) => {
                self.list[i].size = head;
                self.list.push(tail_piece);
            }
        }
        Ok(())
    }

    fn lookup(&self, guest_addr: u64) -> Option<u64> {
        self.list
            .iter()
            .find(|b| b.guest_addr <= guest_addr && guest_addr < b.guest_addr + b.size)
            .map(|b| b.offset)
    }
}

fn populated<R: Registry>(mut r: R) -> R {
    for i in 0..BINDINGS {
        r.map(&args(i, false, 0, PAGES, false)).unwrap();
    }
    r
}

/// (operation, implementation) → total time and operation count of every
/// measured run.
type Totals = BTreeMap<(&'static str, &'static str), (Duration, u64)>;
static TOTALS: Mutex<Totals> = Mutex::new(BTreeMap::new());

fn record(op: &'static str, imp: &'static str, elapsed: Duration, iters: u64) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry((op, imp)).or_default();
    e.0 += elapsed;
    e.1 += iters;
}

/// Walks all bindings in a scattered order (7919 is prime, so coprime with
/// 100 000): consecutive operations touch distant parts of the registry.
struct Cursor(u64);

impl Cursor {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0 * 7919 % BINDINGS
    }
}

/// One kind of operation: `op` on binding `i` (timed), then `restore`
/// (untimed) puts the registry back as it was.
struct Kind {
    name: &'static str,
    op: fn(u64) -> Vec<gunyah_map_mem_args>,
    restore: fn(u64) -> Vec<gunyah_map_mem_args>,
}

const KINDS: [Kind; 5] = [
    Kind {
        name: "map",
        op: |i| vec![args(i, true, 0, PAGES, false)],
        restore: |i| vec![args(i, true, 0, PAGES, true)],
    },
    Kind {
        name: "remove_whole",
        op: |i| vec![args(i, false, 0, PAGES, true)],
        restore: |i| vec![args(i, false, 0, PAGES, false)],
    },
    Kind {
        name: "remove_front",
        op: |i| vec![args(i, false, 0, 1, true)],
        restore: |i| {
            vec![
                args(i, false, 1, PAGES - 1, true),
                args(i, false, 0, PAGES, false),
            ]
        },
    },
    Kind {
        name: "remove_back",
        op: |i| vec![args(i, false, PAGES - 1, 1, true)],
        restore: |i| {
            vec![
                args(i, false, 0, PAGES - 1, true),
                args(i, false, 0, PAGES, false),
            ]
        },
    },
    Kind {
        name: "remove_middle",
        op: |i| vec![args(i, false, 1, PAGES - 2, true)],
        restore: |i| {
            vec![
                args(i, false, 0, 1, true),
                args(i, false, PAGES - 1, 1, true),
                args(i, false, 0, PAGES, false),
            ]
        },
    },
];

fn timed_chunks<R: Registry>(r: &mut R, kind: &Kind, cursor: &mut Cursor, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let ops: Vec<(u64, Vec<gunyah_map_mem_args>)> = (0..n)
            .map(|_| {
                let i = cursor.next();
                (i, (kind.op)(i))
            })
            .collect();
        let start = Instant::now();
        for (_, op) in &ops {
            for a in op {
                black_box(r.map(black_box(a))).unwrap();
            }
        }
        total += start.elapsed();
        for (i, _) in &ops {
            for a in (kind.restore)(*i) {
                r.map(&a).unwrap();
            }
        }
        left -= n;
    }
    total
}

fn bench<R: Registry>(c: &mut Criterion, imp: &'static str, mut r: R) {
    for kind in &KINDS {
        let mut group = c.benchmark_group(kind.name);
        group.throughput(Throughput::Elements(1));
        let mut cursor = Cursor(0);
        group.bench_function(imp, |b| {
            b.iter_custom(|iters| {
                let d = timed_chunks(&mut r, kind, &mut cursor, iters);
                record(kind.name, imp, d, iters);
                d
            })
        });
        group.finish();
    }
    // Half the probes hit a binding, half fall into a gap.
    let probes: Vec<u64> = (0..4096u64)
        .map(|k| (k * 7919 % BINDINGS * STRIDE + k % STRIDE) * P + k % P)
        .collect();
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function(imp, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for k in 0..iters {
                black_box(r.lookup(black_box(probes[(k % 4096) as usize])));
            }
            let d = start.elapsed();
            record("lookup", imp, d, iters);
            d
        })
    });
    group.finish();
}

fn bindings(c: &mut Criterion) {
    let engine = populated(Engine::new());
    let naive = populated(Naive::default());
    // Both registries agree before they are measured.
    assert_eq!(engine.reg.binding_count(engine.vm), BINDINGS as usize);
    for k in 0..1000u64 {
        let at = (k * 7919 % BINDINGS * STRIDE + k % STRIDE) * P;
        assert_eq!(engine.lookup(at), naive.lookup(at));
    }
    bench(c, "lendvm", engine);
    bench(c, "naive_vec", naive);
}

fn print_ratios() {
    let t = TOTALS.lock().unwrap();
    let rate = |op, imp| {
        t.get(&(op, imp))
            .map(|(d, n)| *n as f64 / d.as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    println!();
    println!("{BINDINGS} bindings in one VM over {FILES} files (mean over all measured runs)");
    println!(
        "{:<14} {:>16} {:>16} {:>10}",
        "operation", "lendvm ops/s", "naive_vec ops/s", "ratio"
    );
    for op in KINDS.iter().map(|k| k.name).chain(["lookup"]) {
        let (e, n) = (rate(op, "lendvm"), rate(op, "naive_vec"));
        println!("{op:<14} {e:>16.0} {n:>16.0} {:>9.0}x", e / n);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bindings
}

fn main() {
    benches();
    print_ratios();
    Criterion::default().configure_from_args().final_summary();
}
