//! A VM's counters, for reports and metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::memory::MemoryStats;

/// Counters of one VM, bumped by its vCPUs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) mmio_exits: AtomicU64,
    pub(crate) page_fault_exits: AtomicU64,
    pub(crate) status_exits: AtomicU64,
    pub(crate) kvm_exits: AtomicU64,
    pub(crate) port_io: AtomicU64,
    pub(crate) unknown_port_io: AtomicU64,
    pub(crate) injected_faults: AtomicU64,
}

/// A snapshot of a VM's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VmMetrics {
    /// MMIO exits returned to the caller.
    pub mmio_exits: u64,
    /// PAGE_FAULT exits returned to the caller.
    pub page_fault_exits: u64,
    /// STATUS exits returned to the caller.
    pub status_exits: u64,
    /// KVM exits handled (every return from KVM_RUN).
    pub kvm_exits: u64,
    /// Port I/O handled by built-in devices.
    pub port_io: u64,
    /// Port I/O to ports nobody handles (DESIGN D9: counted, ignored).
    pub unknown_port_io: u64,
    /// Faults injected into the guest (resume action FAULT, DESIGN D7).
    pub injected_faults: u64,
    /// Time from VM creation to the guest's write to the boot-complete
    /// probe (port 0xee), if it wrote.
    pub boot_complete: Option<Duration>,
    /// Memory events.
    pub memory: MemoryStats,
}

impl Counters {
    /// Count one more of `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        boot_complete: Option<Duration>,
        memory: MemoryStats,
    ) -> VmMetrics {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VmMetrics {
            mmio_exits: get(&self.mmio_exits),
            page_fault_exits: get(&self.page_fault_exits),
            status_exits: get(&self.status_exits),
            kvm_exits: get(&self.kvm_exits),
            port_io: get(&self.port_io),
            unknown_port_io: get(&self.unknown_port_io),
            injected_faults: get(&self.injected_faults),
            boot_complete,
            memory,
        }
    }
}
