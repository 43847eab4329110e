//! What the Gunyah compat profile (DESIGN D13) needs from a VM beyond
//! lendvm's own API: a START that also applies rules of the caller's.

use crate::vm::{Lifecycle, lock};
use crate::{Result, Vm};

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
