//! The engine against the reference model (`tests/model`) on random
//! operation sequences: same result (errno and reason) for every operation,
//! same plan for every success, same bindings of every VM and same record
//! of every file after every step.

mod model;

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use model::ALL_KINDS;
use model::harness::{FileBad, FlagSel, Harness, Op, RulesSel, Sel, Shape, Stats, Twist, Val, Via};

/// Sequences per run and operations per sequence of the main property test:
/// 250 × 400 = 100 000 generated operations.
const CASES: u32 = 250;
const OPS_PER_CASE: usize = 400;

fn sel() -> impl Strategy<Value = Sel> {
    any::<u8>().prop_map(Sel)
}

/// Mostly living VMs and open files, sometimes a destroyed / closed / never
/// created one.
fn mostly_live() -> impl Strategy<Value = Sel> {
    prop_oneof![20 => (0u8..200).prop_map(Sel), 1 => sel()]
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![16 => Just(Via::Direct), 2 => Just(Via::PlanCommit), 1 => Just(Via::Stale)]
}

/// Guest addresses: a small window shared by all VMs so ranges collide,
/// plus wild values.
fn guest_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        40 => (0u8..24).prop_map(Val::Units),
        2 => (0u16..4096).prop_map(Val::Pages),
        1 => any::<u16>().prop_map(Val::Bytes),
        2 => (1u8..4).prop_map(Val::NearTop),
        1 => any::<u64>().prop_map(Val::Raw),
    ]
}

fn offset_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        40 => any::<u8>().prop_map(Val::InFile),
        3 => (0u8..40).prop_map(Val::Units),
        2 => (0u16..4096).prop_map(Val::Pages),
        1 => any::<u16>().prop_map(Val::Bytes),
        2 => (1u8..4).prop_map(Val::NearTop),
        1 => any::<u64>().prop_map(Val::Raw),
    ]
}

fn size_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        30 => (1u8..4).prop_map(Val::Units),
        10 => (4u8..12).prop_map(Val::Units),
        1 => Just(Val::Units(0)),
        2 => (1u16..2048).prop_map(Val::Pages),
        1 => any::<u16>().prop_map(Val::Bytes),
        2 => (1u8..4).prop_map(Val::NearTop),
        1 => any::<u64>().prop_map(Val::Raw),
    ]
}

fn flags() -> impl Strategy<Value = FlagSel> {
    // Permission sets with WRITE most of the time, so write_required files
    // accept most adds.
    let perms = prop_oneof![3 => Just(6u8), 1 => any::<u8>()];
    prop_oneof![
        40 => (any::<u8>(), perms).prop_map(|(access, perms)| FlagSel::Valid { access, perms }),
        1 => any::<u8>().prop_map(|access| FlagSel::NoPerm { access }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(value, perms)| FlagSel::BadAccess { value, perms }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(bit, perms)| FlagSel::UnknownBit { bit, perms }),
        1 => any::<u32>().prop_map(FlagSel::Raw),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Whole),
        any::<u8>().prop_map(Shape::Front),
        any::<u8>().prop_map(Shape::Back),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Shape::Middle(a, b)),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Shape::Any(a, b)),
    ]
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        24 => Just(Twist::None),
        2 => any::<i8>().prop_map(Twist::ShiftGuest),
        1 => Just(Twist::ShiftGuestPage),
        2 => any::<i8>().prop_map(Twist::ShiftOffset),
        2 => any::<u8>().prop_map(Twist::Longer),
        3 => any::<u8>().prop_map(Twist::WrongFlags),
        1 => sel().prop_map(Twist::WrongFile),
        1 => sel().prop_map(Twist::OtherVm),
        2 => Just(Twist::SpanNext),
    ]
}

fn file_bad() -> impl Strategy<Value = Option<FileBad>> {
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(FileBad::ZeroSize)),
        1 => any::<u16>().prop_map(|k| Some(FileBad::Unaligned(k))),
        1 => any::<u8>().prop_map(|k| Some(FileBad::Flag(k))),
    ]
}

fn rules() -> impl Strategy<Value = Option<RulesSel>> {
    let owner = prop_oneof![2 => Just(None), 1 => sel().prop_map(Some)];
    prop_oneof![
        4 => Just(None),
        1 => (owner, any::<bool>(), any::<bool>()).prop_map(|(owner, share_allowed, write_required)| {
            Some(RulesSel { owner, share_allowed, write_required })
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let create_file = (
        any::<u8>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        any::<bool>(),
        file_bad(),
        rules(),
    )
        .prop_map(|(units, huge, odd, cloexec, bad, rules)| Op::CreateFile {
            units,
            huge,
            odd,
            cloexec,
            bad,
            rules,
        });
    let map = (
        mostly_live(),
        mostly_live(),
        guest_val(),
        offset_val(),
        size_val(),
        flags(),
        prop::bool::weighted(0.15),
        via(),
    )
        .prop_map(
            |(vm, file, guest, offset, size, flags, unmap, via)| Op::Map {
                vm,
                file,
                guest,
                offset,
                size,
                flags,
                unmap,
                via,
            },
        );
    let unmap =
        (any::<u16>(), shape(), twist(), via()).prop_map(|(pick, shape, twist, via)| Op::Unmap {
            pick,
            shape,
            twist,
            via,
        });
    let query = (sel(), sel(), any::<u16>(), -24i16..24, size_val()).prop_map(
        |(vm, file, pick, delta, size)| Op::Query {
            vm,
            file,
            pick,
            delta,
            size,
        },
    );
    prop_oneof![
        4 => create_file,
        2 => Just(Op::CreateVm),
        36 => map,
        30 => unmap,
        1 => (mostly_live(), via()).prop_map(|(vm, via)| Op::DestroyVm { vm, via }),
        1 => sel().prop_map(|file| Op::CloseFile { file }),
        5 => query,
    ]
}

fn run(ops: &[Op]) -> Stats {
    let mut h = Harness::new();
    for op in ops {
        h.step(op);
    }
    h.stats
}

#[test]
fn engine_agrees_with_model_on_random_operation_sequences() {
    let config = Config {
        cases: CASES,
        // Persisted failures need a source file name, which a hand-driven
        // runner does not have; a failure prints its minimal sequence.
        failure_persistence: None,
        max_shrink_iters: 4096,
        max_shrink_time: 120_000,
        // ChaCha costs a tenth of the debug-build run time; quality does
        // not matter here.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let total = RefCell::new(Stats::default());
    let generated = RefCell::new(0usize);
    TestRunner::new(config)
        .run(
            &prop::collection::vec(op(), OPS_PER_CASE),
            |ops: Vec<Op>| {
                *generated.borrow_mut() += ops.len();
                total.borrow_mut().merge(&run(&ops));
                Ok(())
            },
        )
        .unwrap();
    let total = total.into_inner();
    eprintln!(
        "{CASES} sequences, {} engine operations compared with the model",
        total.ops
    );
    assert!(
        generated.into_inner() >= 100_000,
        "fewer than 100 000 operations generated"
    );
    assert!(
        total.ops >= 100_000,
        "only {} engine operations compared",
        total.ops
    );
}

/// A fixed-seed run that must keep reaching every case the model knows, so
/// a change to the generators cannot silently stop covering one.
#[test]
fn random_operations_cover_every_case() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::XorShift),
    );
    let ops = prop::collection::vec(op(), OPS_PER_CASE);
    let mut total = Stats::default();
    for _ in 0..40 {
        let seq = ops.new_tree(&mut runner).unwrap().current();
        total.merge(&run(&seq));
    }
    let [whole, front, back, middle] = total.removes;
    for (case, n) in [
        ("whole", whole),
        ("front", front),
        ("back", back),
        ("middle", middle),
    ] {
        assert!(n >= 50, "remove case {case} exercised only {n} times");
    }
    for kind in ALL_KINDS {
        let n = total.refusals.get(kind).copied().unwrap_or(0);
        assert!(n >= 3, "refusal {kind} exercised only {n} times");
    }
    assert!(total.huge_files >= 20, "{total:?}");
    assert!(total.huge_adds >= 50, "{total:?}");
    assert!(total.huge_removes >= 50, "{total:?}");
    assert!(total.adds >= 1000, "{total:?}");
    assert!(total.destroys_with_bindings >= 10, "{total:?}");
    assert!(total.dropped_files >= 1, "{total:?}");
    assert!(total.closed_while_bound >= 5, "{total:?}");
    assert!(total.plan_commits >= 50, "{total:?}");
    assert!(total.lookup_hits >= 100, "{total:?}");
    assert!(total.max_bindings >= 20, "{total:?}");
}
