//! Timing, pairing and the summary rows.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use vmm::Access;

// ----- measurement -------------------------------------------------------------------

/// Run settings: full benchmark or the quick pass of `cargo test --benches`.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) full: bool,
}

impl Settings {
    pub(crate) fn pick<T>(&self, full: T, quick: T) -> T {
        if self.full { full } else { quick }
    }
}

/// Whether section `name` runs (`LENDVM_BENCH`, default all).
pub(crate) fn selected(name: &str) -> bool {
    match std::env::var("LENDVM_BENCH") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// How a ratio is formed and what it must reach.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    /// raw time / lendvm time >= x (throughput-like).
    AtLeast(f64),
    /// lendvm time / raw time <= x (latency-like).
    AtMost(f64),
    /// No goal, throughput-like: raw time / lendvm time, for information.
    InfoRate,
    /// No goal, latency-like: lendvm time / raw time, for information.
    Info,
}

impl Goal {
    pub(crate) fn ratio(self, lendvm: f64, raw: f64) -> f64 {
        match self {
            Goal::AtLeast(_) | Goal::InfoRate => raw / lendvm,
            Goal::AtMost(_) | Goal::Info => lendvm / raw,
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Goal::AtLeast(x) => format!(">= {x} (raw/lendvm)"),
            Goal::AtMost(x) => format!("<= {x} (lendvm/raw)"),
            Goal::InfoRate => "info (raw/lendvm)".into(),
            Goal::Info => "info (lendvm/raw)".into(),
        }
    }

    pub(crate) fn verdict(self, ratio: f64) -> &'static str {
        match self {
            Goal::AtLeast(x) if ratio >= x => "met",
            Goal::AtMost(x) if ratio <= x => "met",
            Goal::Info | Goal::InfoRate => "-",
            _ => "NOT MET",
        }
    }
}

/// One line of the final summary.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) lendvm: String,
    pub(crate) raw: String,
    pub(crate) ratio: f64,
    pub(crate) goal: Goal,
}

/// A unit for per-operation times.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Us,
    Ns,
}

impl Unit {
    pub(crate) fn fmt(self, secs: f64) -> String {
        match self {
            Unit::Us => format!("{:.2} µs", secs * 1e6),
            Unit::Ns => format!("{:.0} ns", secs * 1e9),
        }
    }
}

/// One side of a pair: runs `iters` operations and returns the time.
pub(crate) type Side<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// A side that times `n` back-to-back runs of `op`.
pub(crate) fn repeat<'a>(mut op: impl FnMut() + 'a) -> Side<'a> {
    Box::new(move |n| {
        let t0 = Instant::now();
        for _ in 0..n {
            op();
        }
        t0.elapsed()
    })
}

/// A lendvm measurement and the raw reference it is compared with.
pub(crate) struct Pair<'a> {
    /// Row name in the summary.
    pub(crate) name: &'static str,
    pub(crate) lendvm: (&'static str, Side<'a>),
    pub(crate) raw: (&'static str, Side<'a>),
    /// Operations per call in the ratio pass.
    pub(crate) ops_per_round: u64,
    /// What one criterion iteration is (per-op time = time / per_iter).
    pub(crate) per_iter: u64,
    pub(crate) unit: Unit,
    pub(crate) goal: Goal,
}

/// The share binding (held to `goal`) and the lend binding (reported) of
/// one operation, each against the same raw reference.
pub(crate) fn share_and_lend<'a>(
    names: [&'static str; 2],
    raw_name: &'static str,
    mut lendvm_side: impl FnMut(Access) -> Side<'a>,
    mut raw_side: impl FnMut() -> Side<'a>,
    ops_per_round: u64,
    goal: Goal,
) -> [Pair<'a>; 2] {
    [
        (names[0], Access::Share, "lendvm_share", goal),
        (names[1], Access::Lend, "lendvm_lend", Goal::Info),
    ]
    .map(|(name, access, side_name, goal)| Pair {
        name,
        lendvm: (side_name, lendvm_side(access)),
        raw: (raw_name, raw_side()),
        ops_per_round,
        per_iter: 1,
        unit: Unit::Us,
        goal,
    })
}

/// Criterion over both sides of every pair, then the alternating pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_pairs(
    c: &mut Criterion,
    s: Settings,
    group: &str,
    pairs: &mut [Pair<'_>],
    sample_size: usize,
    measure: Duration,
    rounds: usize,
    rows: &mut Vec<Row>,
) {
    {
        let mut g = c.benchmark_group(group);
        g.sample_size(sample_size)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(measure)
            .sampling_mode(SamplingMode::Flat);
        let mut done = Vec::new();
        for p in pairs.iter_mut() {
            g.throughput(Throughput::Elements(p.per_iter));
            for (name, side) in [&mut p.raw, &mut p.lendvm] {
                // Raw references shared by several pairs run once.
                if done.contains(name) {
                    continue;
                }
                done.push(*name);
                g.bench_function(*name, |b| b.iter_custom(&mut *side));
            }
        }
        g.finish();
    }
    let rounds = s.pick(rounds, 2);
    for p in pairs.iter_mut() {
        let ops = s.pick(p.ops_per_round, 1);
        let per_op = |d: Duration| d.as_secs_f64() / (ops * p.per_iter) as f64;
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                l.push(per_op((p.lendvm.1)(ops)));
                r.push(per_op((p.raw.1)(ops)));
            } else {
                r.push(per_op((p.raw.1)(ops)));
                l.push(per_op((p.lendvm.1)(ops)));
            }
        }
        let (ml, mr) = (median(&mut l), median(&mut r));
        println!(
            "{group}/{:<18} lendvm {:>10}  (min {:>10}) | raw {:>10}  (min {:>10})",
            p.name,
            p.unit.fmt(ml),
            p.unit.fmt(min(&l)),
            p.unit.fmt(mr),
            p.unit.fmt(min(&r)),
        );
        rows.push(Row {
            name: format!("{group}: {}", p.name),
            lendvm: p.unit.fmt(ml),
            raw: p.unit.fmt(mr),
            ratio: p.goal.ratio(ml, mr),
            goal: p.goal,
        });
    }
}
