//! A VM's configuration before START, and START itself (SPEC §2.10).

use std::ops::Range;
use std::sync::MutexGuard;

use binding::{PAGE_SIZE, Perms};
use vm_memory::GuestAddress;

use super::{Vm, VmMetrics};
use crate::error::{Error, Result};
use crate::native_abi::{MMIO_WINDOW_BASE, MMIO_WINDOW_SIZE, SYSTEM_REGION_BASE};
use crate::sync::lock;
use crate::vcpu::exit::Status;
use crate::x86;

/// How a vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// lendvm's native mode: 64-bit long mode at CPL3 (`native_abi`).
    Native,
    /// PVH: 32-bit protected mode, paging off, EBX = `start_info`.
    Pvh {
        /// The note's 32-bit entry point.
        entry: u64,
        /// Guest address of `hvm_start_info`.
        start_info: u64,
    },
    /// Linux 64-bit boot protocol: long mode at CPL0, RSI = `boot_params`.
    Linux64 {
        /// The 64-bit entry (load address + 0x200).
        entry: u64,
        /// Guest address of the zero page.
        boot_params: u64,
    },
}

/// Where a VM is in its life (SPEC B-VM-2, reduced to what KVM needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Created, not started: configuration calls are allowed.
    NotStarted,
    /// START succeeded.
    Running,
    /// START failed; the VM can never run (SPEC B-VM-3.3).
    LoadFailed(String),
}

/// A boot-context register, in typed form (x86 mapping of SPEC B-VM-6,
/// DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootReg {
    /// General-purpose register by x86 encoding index 0..15 (RAX, RCX, RDX,
    /// RBX, RSP, RBP, RSI, RDI, R8..R15).
    Gpr(u8),
    /// The instruction pointer.
    Pc,
    /// The stack pointer (RSP).
    Sp,
}

/// A legacy user memory region (SPEC B-VM-7) in typed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserMemRegion {
    /// The region's label, unique per VM.
    pub label: u32,
    /// Guest physical address.
    pub guest: GuestAddress,
    /// Length in bytes.
    pub size: u64,
    /// Address of the memory in this process.
    pub userspace_addr: u64,
    /// What the guest may do (no-write is enforced).
    pub perms: Perms,
}

impl UserMemRegion {
    pub(crate) fn raw(&self) -> uapi::gunyah_userspace_memory_region {
        uapi::gunyah_userspace_memory_region {
            label: self.label,
            flags: self.perms.bits(),
            guest_phys_addr: self.guest.0,
            memory_size: self.size,
            userspace_addr: self.userspace_addr,
        }
    }
}

/// Initial registers, applied to every vCPU when it first runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BootContext {
    pub(crate) gprs: [Option<u64>; x86::GPR_COUNT],
    pub(crate) pc: Option<u64>,
}

/// A guest location set before START (the DTB or the firmware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
}

pub(crate) struct Config {
    pub(crate) lifecycle: Lifecycle,
    pub(crate) dtb: Option<Location>,
    fw: Option<Location>,
    pub(crate) boot: BootContext,
    pub(crate) mmio_window: Range<u64>,
    /// How vCPUs enter the guest.
    pub(crate) boot_mode: BootMode,
    /// The native part of lendvm's system region (GDT, IDT, TSS, page
    /// tables) is installed: native VMs only (DESIGN D12).
    pub(crate) native_region: bool,
}

impl Config {
    pub(crate) fn new() -> Config {
        Config {
            lifecycle: Lifecycle::NotStarted,
            dtb: None,
            fw: None,
            boot: BootContext::default(),
            mmio_window: MMIO_WINDOW_BASE..MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE,
            boot_mode: BootMode::Native,
            native_region: false,
        }
    }

    /// The DTB address handed to vCPUs at boot (0 if unset).
    pub(crate) fn dtb_addr(&self) -> u64 {
        self.dtb.map_or(0, |d| d.addr)
    }
}

impl Vm {
    fn config(&self) -> MutexGuard<'_, Config> {
        lock(&self.inner.config)
    }

    pub(crate) fn require_not_started(&self, what: &'static str) -> Result<MutexGuard<'_, Config>> {
        let cfg = self.config();
        if cfg.lifecycle != Lifecycle::NotStarted {
            return Err(Error::OnlyBeforeStart { what });
        }
        Ok(cfg)
    }

    /// Move the MMIO window (DESIGN D1). Before START only.
    pub fn set_mmio_window(&self, base: u64, size: u64) -> Result<()> {
        let mut cfg = self.require_not_started("moving the MMIO window")?;
        let end = base.checked_add(size).ok_or(Error::Overflow {
            what: "MMIO window",
            addr: base,
            size,
        })?;
        cfg.mmio_window = base..end;
        Ok(())
    }

    /// SET_DTB_CONFIG (SPEC B-VM-4): wrap → EOVERFLOW, after START → EBUSY.
    pub fn set_dtb_config(&self, addr: GuestAddress, size: u64) -> Result<()> {
        self.set_location("DTB", addr.0, size, |c, l| c.dtb = Some(l))
    }

    /// SET_FW_CONFIG (SPEC B-VM-5): validated like the DTB config; lendvm
    /// records it for the guest's firmware and reports it.
    pub fn set_fw_config(&self, addr: GuestAddress, size: u64) -> Result<()> {
        self.set_location("firmware", addr.0, size, |c, l| c.fw = Some(l))
    }

    fn set_location(
        &self,
        what: &'static str,
        addr: u64,
        size: u64,
        store: impl FnOnce(&mut Config, Location),
    ) -> Result<()> {
        if addr.checked_add(size).is_none() {
            return Err(Error::Overflow { what, addr, size });
        }
        let mut c = self.config();
        if c.lifecycle != Lifecycle::NotStarted {
            return Err(Error::FixedAfterStart { what });
        }
        store(&mut c, Location { addr, size });
        Ok(())
    }

    /// The recorded DTB and firmware locations.
    pub fn configs(&self) -> (Option<Location>, Option<Location>) {
        let c = self.config();
        (c.dtb, c.fw)
    }

    /// SET_BOOT_CONTEXT (SPEC B-VM-6, x86 mapping of DESIGN §5): before
    /// START only (EINVAL after).
    pub fn set_boot_reg(&self, reg: BootReg, value: u64) -> Result<()> {
        if let BootReg::Gpr(i) = reg
            && usize::from(i) >= x86::GPR_COUNT
        {
            return Err(Error::NoSuchXRegister {
                index: u32::from(i),
                count: x86::GPR_COUNT as u32,
            });
        }
        let mut c = self.require_not_started("setting the boot context")?;
        match reg {
            BootReg::Gpr(i) => c.boot.gprs[usize::from(i)] = Some(value),
            BootReg::Pc => c.boot.pc = Some(value),
            BootReg::Sp => c.boot.gprs[4] = Some(value),
        }
        Ok(())
    }

    /// Ok while the boot context can still be set (before START; EINVAL
    /// after, SPEC B-VM-6).
    pub fn boot_context_open(&self) -> Result<()> {
        self.require_not_started("setting the boot context")
            .map(drop)
    }

    /// The boot PC, if the boot context sets one.
    pub fn boot_pc(&self) -> Option<u64> {
        self.config().boot.pc
    }

    /// How vCPUs enter the guest (default: lendvm's native mode). The
    /// `boot` module sets it for PVH and Linux images, whose entry tables
    /// live in guest RAM: the native part of lendvm's system region goes
    /// and only the small read-only access region stays, inside the 32-bit
    /// MMIO hole (DESIGN D12). Before START only.
    pub fn set_boot_mode(&self, mode: BootMode) -> Result<()> {
        let mut cfg = self.require_not_started("choosing the boot mode")?;
        if mode != BootMode::Native && cfg.native_region {
            self.inner
                .memory
                .lock()
                .remove_lendvm_region(SYSTEM_REGION_BASE..x86::ACCESS_REGION_BASE)?;
            cfg.native_region = false;
        }
        cfg.boot_mode = mode;
        Ok(())
    }

    /// The boot mode.
    pub fn boot_mode(&self) -> BootMode {
        self.config().boot_mode
    }

    /// START (SPEC B-VM-3): idempotent on a running VM; ENODEV after a
    /// failed start or once the VM has stopped. Needs a DTB config inside
    /// one binding (EINVAL unset, ENOENT outside); the DTB pages are handed
    /// over lent now, whatever the binding says (SPEC B-AC-5), and must
    /// have no host view (EBUSY).
    pub fn start(&self) -> Result<()> {
        let mut cfg = self.config();
        match &cfg.lifecycle {
            Lifecycle::Running => {
                return match self.inner.stopped() {
                    None => Ok(()),
                    Some(status) => Err(Error::Stopped { status }),
                };
            }
            Lifecycle::LoadFailed(why) => {
                return Err(Error::StartFailedEarlier {
                    reason: why.clone(),
                });
            }
            Lifecycle::NotStarted => {}
        }
        match self.try_start(&cfg) {
            Ok(()) => {
                cfg.lifecycle = Lifecycle::Running;
                Ok(())
            }
            Err(e) => {
                cfg.lifecycle = Lifecycle::LoadFailed(crate::full_message(&e));
                Err(e)
            }
        }
    }

    fn try_start(&self, cfg: &Config) -> Result<()> {
        let dtb = cfg.dtb.ok_or(Error::NoDtb)?;
        // Standard boots start only vCPU 0; the guest wakes the others with
        // INIT/SIPI, which needs the in-kernel LAPIC.
        if cfg.boot_mode != BootMode::Native && !self.inner.options.irqchip {
            let vcpus = lock(&self.inner.vcpus).len();
            if vcpus > 1 {
                return Err(Error::SmpBootWithoutIrqchip { vcpus });
            }
        }
        if dtb.size == 0 {
            return Err(Error::Empty { what: "DTB" });
        }
        if cfg.boot_mode == BootMode::Native && !cfg.native_region {
            return Err(Error::NoNativeRegion);
        }
        // Whole pages around the DTB (SPEC B-VM-3.2 [REC]); set_location
        // checked that addr + size does not wrap. A last page that ends at
        // 2^64 lies in no binding (none can end there): ENOENT (B-VM-3).
        let start = dtb.addr & !(PAGE_SIZE - 1);
        let end = (dtb.addr + dtb.size)
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(Error::DtbOutsideBinding {
                range: start..u64::MAX,
            })?;
        let mut mem = self.inner.memory.lock();
        let b = mem
            .binding_at(start)
            .filter(|b| b.guest_end() >= end)
            .ok_or(Error::DtbOutsideBinding { range: start..end })?;
        // The Gunyah resource manager hands the DTB over with full access
        // and refuses bindings that do not allow it (TV bad_dtb_access).
        if b.is_lend() && b.perms() != Perms::RWX {
            return Err(Error::DtbPerms { perms: b.perms() });
        }
        mem.hand_over_dtb(start..end)
    }

    // ----- status ------------------------------------------------------------------

    /// Why the VM stopped, once it has.
    pub fn status(&self) -> Option<Status> {
        *lock(&self.inner.status)
    }

    /// A snapshot of the VM's counters.
    pub fn metrics(&self) -> VmMetrics {
        self.inner.counters.snapshot(
            self.inner.boot_done.get().copied(),
            self.inner.memory.lock().stats(),
        )
    }
}
