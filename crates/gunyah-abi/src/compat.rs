//! The Gunyah compat profile (DESIGN D13): what unmodified Gunyah userspace
//! expects where it and lendvm's SPEC differ, applied by the functions of
//! this crate when they are given [`Profile::Compat`](crate::Profile).
//! lendvm's own API keeps the SPEC's stricter rules.
//!
//! * The platform layout: Gunyah VMs on Qualcomm's arm64 platforms have
//!   RAM from 2 GiB and devices below it ([`PLATFORM_MMIO`]); unbound
//!   accesses there are MMIO exits (DESIGN D1's window), and START refuses
//!   a DTB there as the resource manager does (TV `bad_dtb_addr`).
//! * START's resource-manager rules ([`check_start`]): the DTB's binding
//!   must allow execution (TV `bad_dtb_access`); lendvm refuses a live host
//!   mapping of lent DTB pages itself (TV `vm_dtb_no_map`).
//! * Guest memory files that grow and shrink (`ftruncate`), up to
//!   [`GUEST_MEM_CAPACITY`], never below a bound range (SPEC GM-7).
//! * The aarch64 boot-register namespace (`set_boot_context`).

use std::ops::Range;

use vmm::Vm;

use crate::{Error, Result};

/// The platform's device window in the compat profile.
pub const PLATFORM_MMIO: Range<u64> = 0..0x8000_0000;

/// The most a compat guest memory file can grow to: lendvm maps this much
/// address space per file for KVM up front (no memory); growing past it is
/// EFBIG.
pub const GUEST_MEM_CAPACITY: u64 = 64 << 30;

/// The resource manager's START rules lendvm's own START lacks: the DTB
/// must lie outside [`PLATFORM_MMIO`], and the binding holding it must
/// allow execution. A VM without a DTB, or whose DTB no binding holds, is
/// left to lendvm's START (EINVAL, ENOENT).
pub fn check_start(vm: &Vm) -> Result<()> {
    let Some(dtb) = vm.configs().0 else {
        return Ok(());
    };
    let end = dtb.addr.saturating_add(dtb.size.max(1));
    if dtb.addr < PLATFORM_MMIO.end && PLATFORM_MMIO.start < end {
        return Err(Error::DtbInPlatformMmio {
            addr: dtb.addr,
            mmio: PLATFORM_MMIO,
        });
    }
    let exec = vm
        .bindings()
        .iter()
        .find(|b| b.contains_guest(dtb.addr))
        .map(|b| b.perms().exec);
    if exec == Some(false) {
        return Err(Error::DtbNotExecutable { addr: dtb.addr });
    }
    Ok(())
}
