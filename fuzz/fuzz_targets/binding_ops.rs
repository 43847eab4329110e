//! Decodes the fuzz input into a sequence of binding operations and runs
//! them on the engine and on the reference model of the binding crate's
//! tests, which panic on the first difference (result, errno, plan,
//! bindings of any VM, record of any file).

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/binding/tests/model/mod.rs"]
mod model;

use model::harness::{FileBad, FlagSel, Harness, Op, RulesSel, Sel, Shape, Twist, Val, Via};

/// Long enough for state to build up, short enough to keep executions fast.
const MAX_OPS: usize = 512;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        match op(&mut u) {
            Ok(op) => h.step(&op),
            Err(_) => break,
        }
    }
});

fn sel(u: &mut Unstructured) -> Result<Sel> {
    // Mostly a living VM / open file (see `Sel`).
    Ok(Sel(if u.ratio(1, 16)? {
        u.arbitrary()?
    } else {
        u.int_in_range(0..=199)?
    }))
}

fn via(u: &mut Unstructured) -> Result<Via> {
    Ok(match u.int_in_range(0..=15)? {
        0 => Via::Stale,
        1 | 2 => Via::PlanCommit,
        _ => Via::Direct,
    })
}

/// A number: mostly a few units, sometimes anything.
fn val(u: &mut Unstructured, units: u8, in_file: bool) -> Result<Val> {
    Ok(match u.int_in_range(0..=19)? {
        0..=13 if in_file => Val::InFile(u.arbitrary()?),
        0..=13 => Val::Units(u.int_in_range(0..=units)?),
        14 => Val::Units(u.arbitrary()?),
        15 => Val::Pages(u.arbitrary()?),
        16 => Val::Bytes(u.arbitrary()?),
        17 => Val::NearTop(u.int_in_range(0..=4)?),
        _ => Val::Raw(u.arbitrary()?),
    })
}

fn flags(u: &mut Unstructured) -> Result<FlagSel> {
    Ok(match u.int_in_range(0..=23)? {
        0 => FlagSel::NoPerm {
            access: u.arbitrary()?,
        },
        1 => FlagSel::BadAccess {
            value: u.arbitrary()?,
            perms: u.arbitrary()?,
        },
        2 => FlagSel::UnknownBit {
            bit: u.arbitrary()?,
            perms: u.arbitrary()?,
        },
        3 => FlagSel::Raw(u.arbitrary()?),
        _ => FlagSel::Valid {
            access: u.arbitrary()?,
            perms: u.arbitrary()?,
        },
    })
}

fn shape(u: &mut Unstructured) -> Result<Shape> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Shape::Whole,
        1 => Shape::Front(u.arbitrary()?),
        2 => Shape::Back(u.arbitrary()?),
        3 => Shape::Middle(u.arbitrary()?, u.arbitrary()?),
        _ => Shape::Any(u.arbitrary()?, u.arbitrary()?),
    })
}

fn twist(u: &mut Unstructured) -> Result<Twist> {
    Ok(match u.int_in_range(0..=23)? {
        0 => Twist::ShiftGuest(u.arbitrary()?),
        1 => Twist::ShiftGuestPage,
        2 => Twist::ShiftOffset(u.arbitrary()?),
        3 => Twist::Longer(u.arbitrary()?),
        4 | 5 => Twist::WrongFlags(u.arbitrary()?),
        6 => Twist::WrongFile(Sel(u.arbitrary()?)),
        7 => Twist::OtherVm(Sel(u.arbitrary()?)),
        8 => Twist::SpanNext,
        _ => Twist::None,
    })
}

fn op(u: &mut Unstructured) -> Result<Op> {
    Ok(match u.int_in_range(0..=79)? {
        0..=3 => Op::CreateFile {
            units: u.arbitrary()?,
            huge: u.ratio(1, 5)?,
            odd: u.ratio(1, 5)?,
            cloexec: u.arbitrary()?,
            bad: match u.int_in_range(0..=15)? {
                0 => Some(FileBad::ZeroSize),
                1 => Some(FileBad::Unaligned(u.arbitrary()?)),
                2 => Some(FileBad::Flag(u.arbitrary()?)),
                _ => None,
            },
            rules: if u.ratio(1, 5)? {
                Some(RulesSel {
                    owner: if u.arbitrary()? {
                        Some(Sel(u.arbitrary()?))
                    } else {
                        None
                    },
                    share_allowed: u.arbitrary()?,
                    write_required: u.arbitrary()?,
                })
            } else {
                None
            },
        },
        4 | 5 => Op::CreateVm,
        6..=40 => Op::Map {
            vm: sel(u)?,
            file: sel(u)?,
            guest: val(u, 24, false)?,
            offset: val(u, 32, true)?,
            size: val(u, 8, false)?,
            flags: flags(u)?,
            unmap: u.ratio(1, 7)?,
            via: via(u)?,
        },
        41..=70 => Op::Unmap {
            pick: u.arbitrary()?,
            shape: shape(u)?,
            twist: twist(u)?,
            via: via(u)?,
        },
        71 => Op::DestroyVm {
            vm: sel(u)?,
            via: via(u)?,
        },
        72 => Op::CloseFile { file: sel(u)? },
        _ => Op::Query {
            vm: Sel(u.arbitrary()?),
            file: Sel(u.arbitrary()?),
            pick: u.arbitrary()?,
            delta: u.int_in_range(-24..=24)?,
            size: val(u, 16, false)?,
        },
    })
}
