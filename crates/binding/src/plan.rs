//! A plan: what a binding operation changes, computed without changing
//! anything, so the VM manager can apply it to KVM (and roll back if KVM
//! refuses) before the registry commits it.

use crate::{BindingInfo, FileId, VmId};

/// Which part of a binding a removal takes away (SPEC B-RM-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoveCase {
    /// The whole binding goes.
    Whole,
    /// The front goes; the binding keeps its tail, whose file offset moves
    /// forward by the removed size.
    Front,
    /// The back goes; the binding keeps its head.
    Back,
    /// A middle part goes; the binding splits into a head and a tail, and
    /// the tail takes its own file reference.
    Middle,
}

/// What kind of operation a plan describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// A new binding.
    Added,
    /// (Part of) a binding removed.
    Removed(RemoveCase),
    /// A VM and all its bindings removed.
    VmDestroyed,
}

/// The effect of one binding operation, in the order it must be applied:
/// take `reclaim` away from the guest, drop the records in `removed`,
/// install the records in `added`.
///
/// Every range is whole pages. A plan from `Bindings::plan_*` changes
/// nothing until `Bindings::commit` applies it; a plan returned by
/// `Bindings::map_mem` or `Bindings::destroy_vm` is already committed and
/// reports what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The VM the operation applies to.
    pub vm: VmId,
    /// The kind of operation.
    pub change: Change,
    /// Guest ranges (with the file ranges behind them) the VM loses. Their
    /// pages must be taken back from the guest before the bookkeeping
    /// changes (SPEC B-RM-4, L-4: exactly these pages, no more).
    pub reclaim: Vec<BindingInfo>,
    /// Binding records that stop existing.
    pub removed: Vec<BindingInfo>,
    /// Binding records that start existing (a new binding, or the pieces a
    /// removal keeps).
    pub added: Vec<BindingInfo>,
    /// Files whose last reference goes away with this plan: closed files
    /// whose last binding is removed (SPEC GM-LT-1).
    pub dropped_files: Vec<FileId>,
    pub(crate) generation: u64,
}

impl Plan {
    /// Total bytes the plan takes away from the guest.
    pub fn reclaim_bytes(&self) -> u64 {
        self.reclaim.iter().map(|b| b.size).sum()
    }
}
