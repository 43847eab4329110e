//! The engine's errors translated into the model's refusals, so the two
//! can be compared result by result.

use super::{Arg, Refusal};

/// The engine's error in the model's vocabulary.
pub fn refusal_of(e: &binding::Error) -> Refusal {
    use binding::{Alignment, Error};
    let arg = |what: &str| match what {
        "guest address" => Arg::Guest,
        "file offset" => Arg::Offset,
        "size" => Arg::Size,
        other => panic!("engine names an unknown argument {other:?}"),
    };
    match *e {
        Error::UnknownVm(vm) => Refusal::UnknownVm(vm),
        Error::UnknownFile(f) => Refusal::UnknownFile(f),
        Error::BadFileSize(s) => Refusal::BadFileSize(s),
        Error::UnknownFileFlags(f) => Refusal::UnknownFileFlags(f),
        Error::OutOfFileIds => Refusal::OutOfFileIds,
        Error::ForeignFile { file, owner, vm } => Refusal::ForeignFile { file, owner, vm },
        Error::UnknownMapFlags(f) => Refusal::UnknownMapFlags(f),
        Error::NoPermission => Refusal::NoPermission,
        Error::BadAccess(a) => Refusal::BadAccess(a),
        Error::Misaligned { what, value, unit } => Refusal::Misaligned {
            what: arg(what),
            value,
            huge: unit == Alignment::HugePage,
        },
        Error::EmptyRange => Refusal::EmptyRange,
        Error::RangeWraps { what, start, size } => Refusal::RangeWraps {
            file_range: match what {
                "guest range" => false,
                "file range" => true,
                other => panic!("engine names an unknown range {other:?}"),
            },
            start,
            size,
        },
        Error::BeyondEndOfFile {
            offset,
            size,
            file_size,
        } => Refusal::BeyondEndOfFile {
            offset,
            size,
            file_size,
        },
        Error::ShareNotAllowed(f) => Refusal::ShareNotAllowed(f),
        Error::WriteRequired(f) => Refusal::WriteRequired(f),
        Error::FileRangeBound { .. } => Refusal::FileRangeBound,
        Error::GuestRangeBound { .. } => Refusal::GuestRangeBound,
        Error::NoMatchingBinding {
            guest_addr,
            size,
            file,
            offset,
            flags,
        } => Refusal::NoMatchingBinding {
            guest_addr,
            size,
            file,
            offset,
            flags,
        },
        Error::StalePlan => Refusal::StalePlan,
        // Resizing (the Gunyah compat profile) is outside the model's
        // operations, so the engine cannot report it here.
        Error::ShrinkBelowBinding { .. } => {
            panic!("the model harness never resizes a file, yet the engine refused a resize")
        }
    }
}
