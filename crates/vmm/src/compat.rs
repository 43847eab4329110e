//! What the Gunyah compat profile (DESIGN D13) needs beyond lendvm's own
//! API: guest memory files that grow and shrink, and a START that also
//! applies rules of the caller's.

use gmem::GuestMemFile;

use crate::device::{Device, GuestMem};
use crate::error::Result;
use crate::sync::lock;
use crate::vm::Lifecycle;
use crate::vm::Vm;

impl Vm {
    /// START with one more precondition, for callers that impose rules of
    /// their own (the Gunyah compat profile's resource-manager rules,
    /// DESIGN D13). `check` runs only while the VM has not started; its
    /// error fails the start exactly as lendvm's own checks do (the VM can
    /// never run: later STARTs give ENODEV, vCPUs report LOAD_FAILED). A
    /// running VM answers 0 without asking `check` (SPEC B-VM-3.1).
    pub fn start_with(&self, check: impl FnOnce(&Vm) -> Result<()>) -> Result<()> {
        if self.inner.lifecycle() == Lifecycle::NotStarted
            && let Err(e) = check(self)
        {
            let mut cfg = lock(&self.inner.config);
            if cfg.lifecycle == Lifecycle::NotStarted {
                cfg.lifecycle = Lifecycle::LoadFailed(e.to_string());
                return Err(e);
            }
            // Another thread started (or failed) it meanwhile: answer as
            // START answers now.
        }
        self.start()
    }
}

impl Device {
    /// Create a free-standing guest memory file whose size may change
    /// later ([`GuestMem::resize`]): the Gunyah compat profile's guest
    /// memory (DESIGN D13). `size` and `flags` follow SPEC GM-1/GM-2 as in
    /// [`Device::create_guest_mem`]; `capacity` bounds growth (lendvm maps
    /// that much address space for KVM up front, but allocates nothing).
    /// The descriptor is not sealed, so a program holding it can also
    /// resize it with `ftruncate(2)` behind lendvm's back; only the
    /// preload library, which interposes that call, hands it out.
    pub fn create_resizable_guest_mem(
        &self,
        size: u64,
        capacity: u64,
        flags: u64,
    ) -> Result<GuestMem> {
        let mut reg = self.inner.registry.lock();
        let id = reg.bindings.create_file(size, flags)?;
        match GuestMemFile::memfd_resizable(size, capacity.max(size), flags) {
            Ok(file) => Ok(GuestMem::register(&self.inner, file, id)),
            Err(e) => {
                let _ = reg.bindings.close_file(id);
                Err(e.into())
            }
        }
    }
}

impl GuestMem {
    /// The file's current size: what MAP_MEM checks ranges against
    /// (SPEC B-ADD-8). For a resizable file this can be less than
    /// [`GuestMemFile::size`], its capacity.
    pub fn current_size(&self) -> u64 {
        let st = self.device.registry.lock();
        st.bindings.file_info(self.id()).map_or(0, |info| info.size)
    }

    /// `ftruncate(2)`: grow or shrink a file made by
    /// [`Device::create_resizable_guest_mem`] to `size` bytes. Shrinking
    /// below the end of a bound range is EBUSY (SPEC GM-7), growing past
    /// the capacity EFBIG; other files refuse any change (the kernel's
    /// errno). On error nothing changed.
    pub fn resize(&self, size: u64) -> Result<()> {
        let mut st = self.device.registry.lock();
        // The registry decides (and records) first; the file follows under
        // the same lock, so no binding can slip in between.
        let old = st.bindings.set_file_size(self.id(), size)?;
        if let Err(e) = self.file().set_len(size) {
            // Back to a size the registry held a moment ago: never refused.
            let _ = st.bindings.set_file_size(self.id(), old);
            return Err(e.into());
        }
        Ok(())
    }

    /// `fallocate(2)` with SPEC §2.2's rules measured against the file's
    /// current size ([`GuestMem::current_size`]): allocating past it is
    /// EINVAL; punch hole ignores what lies past it and refuses lent pages
    /// with EBUSY (DESIGN D10).
    pub fn fallocate_current(&self, mode: i32, offset: u64, len: u64) -> Result<()> {
        // Hold the registry lock so the size cannot change meanwhile (lock
        // order: registry, then the file's own lock).
        let st = self.device.registry.lock();
        let size = st.bindings.file_info(self.id()).map_or(0, |info| info.size);
        self.file().fallocate_within(size, mode, offset, len)?;
        Ok(())
    }
}
