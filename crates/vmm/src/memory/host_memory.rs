//! The VM's memory as vm-memory's `GuestMemory`, for the host: every page
//! of the bindings the host may use now (share bindings, lend bindings the
//! guest has not touched yet; never lent pages nor private files), mapped
//! as host views. Boot paths hand it to linux-loader, which then writes a
//! kernel straight into guest memory. While it lives its pages cannot be
//! lent (SPEC GM-MM-6): drop it before START or [`crate::Vm::lend_now`].

use gmem::{PageState, ViewRegistration};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use super::MemState;
use crate::error::{Error, Result};

/// Host-accessible guest memory; see the module documentation.
pub struct HostMemory {
    // Field order is drop order: the mappings go before their
    // registrations.
    mem: GuestMemoryMmap,
    _registrations: Vec<ViewRegistration>,
}

impl std::ops::Deref for HostMemory {
    type Target = GuestMemoryMmap;
    fn deref(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl MemState {
    /// Map every host-accessible run of every binding (see [`HostMemory`]).
    pub(crate) fn host_memory(&self) -> Result<HostMemory> {
        let mut regions = Vec::new();
        let mut registrations = Vec::new();
        for (range, b) in self.bound.iter() {
            if b.file.kind().is_private() {
                continue;
            }
            let runs = b.file.page_states(b.info.offset, b.info.size)?;
            for (run, state) in runs {
                if matches!(state, PageState::Lent(_) | PageState::Reclaiming(_)) {
                    continue;
                }
                let view = b.file.view(run.start, run.end - run.start)?;
                // `page_states` answered for the binding's own file range.
                let gpa = b.info.guest_addr_of(run.start).unwrap_or(range.start);
                let (region, registration) = view.into_parts();
                let region = GuestRegionMmap::new(region, GuestAddress(gpa))
                    .ok_or(Error::HostRegion { gpa })?;
                regions.push(region);
                registrations.push(registration);
            }
        }
        let mem =
            GuestMemoryMmap::from_regions(regions).map_err(|source| Error::HostMap { source })?;
        Ok(HostMemory {
            mem,
            _registrations: registrations,
        })
    }
}
