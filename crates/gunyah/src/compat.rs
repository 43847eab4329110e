//! The Gunyah compat profile (DESIGN D13): every decision the library makes
//! to behave like Gunyah where Gunyah and lendvm's own API differ. Each rule
//! of the Gunyah API proper comes from `binding`, `gmem` and `vmm`; what is
//! here is only what a Gunyah program expects and lendvm's API does not say:
//!
//! * MAP_MEM flags in the upstream (v16) encoding by default, seed 004's
//!   with `LENDVM_GUNYAH_ABI=android` ([`map_flags`]);
//! * guest memory files that grow and shrink, up to [`GUEST_MEM_CAPACITY`];
//! * the aarch64 boot-register namespace ([`boot_reg`]);
//! * the resource manager's START rules ([`check_start`]) and the platform
//!   layout they imply ([`PLATFORM_MMIO`]);
//! * a one-page vCPU run page ([`VCPU_MMAP_SIZE`]).
//!
//! vCPU ids are re-addable after REMOVE_FUNCTION in lendvm's own API too,
//! so that part of D13 needs nothing here.

use std::ops::Range;
use std::sync::OnceLock;

use uapi::{REG_SET_PC, REG_SET_SP, REG_SET_X};

use crate::guard::Errno;

/// The MAP_MEM flag encoding a program was built against. The request
/// number is the same for both, so it cannot be told from the call
/// (GUNYAH-USERSPACE §1.2); the environment says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abi {
    /// Upstream Gunyah (v16) and Qualcomm's test VMM default build:
    /// LEND = 1, SHARE = 2 (access field bits 0-2), R/W/X = 0x10/0x20/0x40.
    Upstream,
    /// Seed 004, Android's `gunyah.h` (lendvm's `uapi`): R/W/X = 1/2/4,
    /// LEND = 0x10, SHARE = 0x20 (access field bits 4-6).
    Android,
}

/// The environment variable that selects [`Abi::Android`].
pub(crate) const ABI_VARIABLE: &str = "LENDVM_GUNYAH_ABI";

impl Abi {
    /// `android` (any case) selects seed 004's encoding; anything else,
    /// or nothing, the upstream one.
    pub(crate) fn from_setting(value: Option<&str>) -> Abi {
        match value {
            Some(v) if v.eq_ignore_ascii_case("android") => Abi::Android,
            _ => Abi::Upstream,
        }
    }
}

/// The encoding of this process, read once.
pub(crate) fn abi() -> Abi {
    static ABI: OnceLock<Abi> = OnceLock::new();
    *ABI.get_or_init(|| Abi::from_setting(std::env::var(ABI_VARIABLE).ok().as_deref()))
}

/// MAP_MEM flags in lendvm's (seed 004) encoding. The two encodings put
/// the same three fields in swapped nibbles (access value in bits 0-2 vs
/// 4-6, R/W/X in bits 4-6 vs 0-2); UNMAP and every unknown bit keep their
/// place. So the translation is a bit permutation: an invalid request
/// stays exactly as invalid, and lendvm's binding rules judge it (unknown
/// bits, no permission, access values 3..7, DEFAULT distinct from LEND when
/// UNMAP matches: SPEC B-ADD-4..6, B-RM-2).
pub(crate) fn map_flags(abi: Abi, raw: u32) -> u32 {
    match abi {
        Abi::Android => raw,
        Abi::Upstream => (raw & !0x77) | ((raw & 0x7) << 4) | ((raw >> 4) & 0x7),
    }
}

/// A SET_BOOT_CONTEXT register, decoded from Gunyah's aarch64 namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootReg {
    /// X0..X15: the x86 register of that encoding index (RAX, RCX, RDX,
    /// RBX, RSP, RBP, RSI, RDI, R8..R15, DESIGN §5).
    Gpr(u8),
    /// X16..X31: accepted and recorded, as Gunyah does, but x86 has no
    /// register to put them in, so the guest never sees them.
    Unmapped(u8),
    /// PC (index 0): RIP.
    Pc,
    /// SP index 0 (SP_EL0) or 1 (SP_EL1, which TV's `set_boot_sp` uses):
    /// both are RSP on x86.
    Sp,
}

/// Decode `{reg, reserved}` of SET_BOOT_CONTEXT in the aarch64 namespace
/// Gunyah programs use (SPEC B-VM-6; TV `set_boot_context`): X0..X31, PC
/// index 0, SP indexes 0 and 1. Anything else, non-zero `reserved`, or bits
/// above the 16-bit register number: EINVAL.
pub(crate) fn boot_reg(reg: u32, reserved: u32) -> Result<BootReg, Errno> {
    if reserved != 0 || reg >> 16 != 0 {
        return Err(Errno::EINVAL);
    }
    let (set, index) = (reg >> 8, (reg & 0xff) as u8);
    match (set, index) {
        (REG_SET_X, i) if i < 16 => Ok(BootReg::Gpr(i)),
        (REG_SET_X, i) if i < 32 => Ok(BootReg::Unmapped(i)),
        (REG_SET_PC, 0) => Ok(BootReg::Pc),
        (REG_SET_SP, 0 | 1) => Ok(BootReg::Sp),
        _ => Err(Errno::EINVAL),
    }
}

/// The platform's device window: Gunyah VMs on Qualcomm's arm64 platforms
/// have RAM from 2 GiB and devices below it. lendvm makes unbound accesses
/// there MMIO exits (its MMIO window, DESIGN D1), and START refuses a DTB
/// there, as the resource manager does (TV `bad_dtb_addr` puts it at
/// 0x8_0000).
pub(crate) const PLATFORM_MMIO: Range<u64> = 0..0x8000_0000;

/// The resource manager's START rules that lendvm's own START lacks
/// (DESIGN D13): the DTB must lie outside [`PLATFORM_MMIO`], and the
/// binding that holds it must allow execution (the DTB parcel is handed to
/// the VM with the binding's access; TV `bad_dtb_access`). `exec` is that
/// binding's permission, `None` when no binding holds the DTB's first byte
/// (lendvm's START then refuses with ENOENT itself). lendvm also refuses a
/// lend binding without full access, and a live host mapping of lent DTB
/// pages (EBUSY, TV `vm_dtb_no_map`), through the program's mappings the
/// library registers.
pub(crate) fn check_start(dtb_addr: u64, dtb_size: u64, exec: Option<bool>) -> Result<(), String> {
    let end = dtb_addr.saturating_add(dtb_size.max(1));
    if dtb_addr < PLATFORM_MMIO.end && PLATFORM_MMIO.start < end {
        return Err(format!(
            "the DTB at {dtb_addr:#x} lies in the platform's MMIO range [{:#x}, {:#x}): Gunyah's resource manager takes it only from RAM",
            PLATFORM_MMIO.start, PLATFORM_MMIO.end
        ));
    }
    if exec == Some(false) {
        return Err(format!(
            "the binding that holds the DTB at {dtb_addr:#x} does not allow execution: Gunyah's resource manager refuses it"
        ));
    }
    Ok(())
}

/// What VCPU_MMAP_SIZE answers: one page holds the 40-byte run structure
/// (SPEC F-4).
pub(crate) const VCPU_MMAP_SIZE: usize = 4096;

/// The most a guest memory file can grow to. lendvm maps this much address
/// space per file for KVM up front (no memory); `ftruncate` past it is
/// EFBIG.
pub(crate) const GUEST_MEM_CAPACITY: u64 = 64 << 30;

#[cfg(test)]
mod tests {
    use super::*;
    use uapi::{
        GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_RWX, GUNYAH_MEM_ALLOW_WRITE,
        GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND, GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP,
    };

    #[test]
    fn the_abi_setting_selects_android_only_when_asked() {
        assert_eq!(Abi::from_setting(None), Abi::Upstream);
        assert_eq!(Abi::from_setting(Some("upstream")), Abi::Upstream);
        assert_eq!(Abi::from_setting(Some("Android")), Abi::Android);
    }

    #[test]
    fn upstream_flags_become_lendvms_encoding() {
        let up = |raw| map_flags(Abi::Upstream, raw);
        // The values TV sends (GUNYAH-USERSPACE §1.2).
        assert_eq!(up(0x70), GUNYAH_MEM_DEFAULT_ACCESS | GUNYAH_MEM_ALLOW_RWX);
        assert_eq!(up(0x72), GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_RWX);
        assert_eq!(up(0x71), GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_RWX);
        assert_eq!(
            up(0x172),
            GUNYAH_MEM_UNMAP | GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_RWX
        );
        assert_eq!(
            up(0x31),
            GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE
        );
        assert_eq!(
            up(0x152),
            GUNYAH_MEM_UNMAP
                | GUNYAH_MEM_FORCE_SHARE
                | GUNYAH_MEM_ALLOW_READ
                | GUNYAH_MEM_ALLOW_EXEC
        );
        // Invalid stays invalid: access value 3 and unknown bits keep their
        // meaning, so the binding rules refuse them.
        assert_eq!(up(0x73) & 0x70, 0x30);
        assert_eq!(up(0x8 | 0x80 | 0x200), 0x8 | 0x80 | 0x200);
        // The translation is its own inverse: a permutation.
        for raw in 0..0x400 {
            assert_eq!(up(up(raw)), raw);
        }
        assert_eq!(map_flags(Abi::Android, 0x17), 0x17);
    }

    #[test]
    fn boot_registers_use_the_aarch64_namespace() {
        let r = |set: u32, i: u32| boot_reg((set << 8) | i, 0);
        for i in 0..16 {
            assert_eq!(r(REG_SET_X, i), Ok(BootReg::Gpr(i as u8)));
        }
        for i in 16..32 {
            assert_eq!(r(REG_SET_X, i), Ok(BootReg::Unmapped(i as u8)));
        }
        assert_eq!(r(REG_SET_X, 32), Err(Errno::EINVAL));
        assert_eq!(r(REG_SET_PC, 0), Ok(BootReg::Pc));
        assert_eq!(r(REG_SET_PC, 1), Err(Errno::EINVAL));
        assert_eq!(r(REG_SET_SP, 0), Ok(BootReg::Sp));
        assert_eq!(r(REG_SET_SP, 1), Ok(BootReg::Sp));
        assert_eq!(r(REG_SET_SP, 2), Err(Errno::EINVAL));
        assert_eq!(r(3, 0), Err(Errno::EINVAL));
        assert_eq!(boot_reg(0x1_0000, 0), Err(Errno::EINVAL));
        assert_eq!(boot_reg(0, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn start_refuses_a_dtb_in_the_mmio_range_or_without_execute() {
        assert!(check_start(0x8000_0000, 4096, Some(true)).is_ok());
        assert!(check_start(0x8000_2000, 4096, None).is_ok());
        assert!(check_start(0x8_0000, 0x4000, Some(true)).is_err());
        assert!(check_start(0x7fff_f000, 0x2000, Some(true)).is_err());
        assert!(check_start(0xa000_0000, 0x4000, Some(false)).is_err());
    }
}
