//! The device's registry: every guest memory file and VM of one
//! [`Device`](crate::Device) and the bindings between them. File ranges are
//! exclusive across the VMs of the device (SPEC B-ADD-9), so MAP_MEM is
//! decided here, under one lock; each VM then applies the decision to its
//! own memory under its own lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use binding::{BindingInfo, Bindings, Change, FileId, MapRequest, Plan, VmId};
use gmem::{GuestMemFile, ReclaimHook};

use crate::error::{Error, Result};
use crate::memory::{VmMemory, lock_all};
use crate::sync::lock;

/// The registry of one device.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
pub(crate) struct RegistryState {
    pub(crate) bindings: Bindings,
    /// Each VM's memory, for the reclaim hook.
    vms: BTreeMap<VmId, Weak<VmMemory>>,
}

impl Registry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RegistryState> {
        lock(&self.state)
    }
}

impl RegistryState {
    pub(crate) fn add_vm(&mut self, memory: &Arc<VmMemory>) {
        self.vms.insert(memory.vm, Arc::downgrade(memory));
    }

    /// MAP_MEM (add) of `req` into `vm`, whose memory is `mem`: decided
    /// here, applied to the VM's memory, then committed. All or nothing.
    pub(crate) fn map(
        &mut self,
        mem: &VmMemory,
        req: &MapRequest,
        file: &GuestMemFile,
    ) -> Result<()> {
        let plan = self.bindings.plan_map(mem.vm, req)?;
        let mut m = mem.lock();
        for b in &plan.added {
            m.add_binding(*b, file)?;
        }
        self.commit(plan)
    }

    /// MAP_MEM with UNMAP: the removed pages leave the guest and return to
    /// the host (lent ones zeroed) before the registry forgets them.
    pub(crate) fn unmap(&mut self, mem: &VmMemory, req: &MapRequest) -> Result<()> {
        let plan = self.bindings.plan_unmap(mem.vm, req)?;
        let (Some(old), Some(removed)) = (plan.removed.first(), plan.reclaim.first()) else {
            return Err(Error::NothingToUnmap);
        };
        mem.lock().remove_binding(old, removed, &plan.added)?;
        self.commit(plan)
    }

    fn commit(&mut self, plan: Plan) -> Result<()> {
        // Made and applied under this lock: never stale.
        self.bindings.commit(plan).map_err(Error::from)
    }

    /// Forget a VM and every binding it held (its memory already gave the
    /// pages back).
    pub(crate) fn destroy_vm(&mut self, vm: VmId) {
        let plan = self.bindings.plan_destroy_vm(vm);
        debug_assert_eq!(plan.change, Change::VmDestroyed);
        let _ = self.bindings.commit(plan);
        self.vms.remove(&vm);
    }
}

/// The VM manager's reclaim hook for one file: lock the memory of every VM
/// the range is bound into, then reclaim with those locks held, so no
/// guest access can be completed against the pages meanwhile (SPEC L-1).
pub(crate) struct Reclaimer {
    pub(crate) registry: Weak<Registry>,
    pub(crate) file: FileId,
}

impl ReclaimHook for Reclaimer {
    fn reclaim(&self, file: &GuestMemFile, offset: u64, len: u64) -> gmem::Result<u64> {
        let Some(registry) = self.registry.upgrade() else {
            // No device, so no VM can hold the pages any more.
            return file.reclaim_with(offset, len, |_| Ok(()));
        };
        // The registry stays locked throughout: no VM can gain a binding of
        // this range while its pages are being taken back.
        let reg = registry.lock();
        let pieces: Vec<(VmId, BindingInfo)> = reg
            .bindings
            .file_bindings(self.file, offset, len)
            .into_iter()
            .filter_map(|(vm, b)| Some((vm, b.clip_to_file_range(offset, len)?)))
            .collect();
        let mut mems: Vec<Arc<VmMemory>> = Vec::new();
        for (vm, _) in &pieces {
            if mems.iter().all(|m| m.vm != *vm)
                && let Some(m) = reg.vms.get(vm).and_then(Weak::upgrade)
            {
                mems.push(m);
            }
        }
        let mut guards = lock_all(&mut mems);
        let result = file.reclaim_with(offset, len, |ranges| {
            for r in ranges {
                let Some(i) = mems_index(&guards, r.vm) else {
                    continue;
                };
                let mine: Vec<BindingInfo> = pieces
                    .iter()
                    .filter(|(vm, _)| *vm == r.vm)
                    .filter_map(|(_, b)| b.clip_to_file_range(r.offset, r.len))
                    .collect();
                guards[i]
                    .take_back(&mine)
                    .map_err(|e| gmem::Error::ReclaimFailed {
                        offset: r.offset,
                        len: r.len,
                        errno: e.errno(),
                        reason: e.to_string(),
                    })?;
            }
            Ok(())
        });
        drop(guards);
        drop(reg);
        result
    }
}

fn mems_index(guards: &[MutexGuard<'_, crate::memory::MemState>], vm: VmId) -> Option<usize> {
    guards.iter().position(|g| g.vm() == vm)
}
