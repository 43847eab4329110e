//! SET_BOOT_CONTEXT (SPEC B-VM-6): the register number decoded into lendvm's
//! x86 boot registers (DESIGN §5).

use uapi::{REG_SET_PC, REG_SET_SP, REG_SET_X, gunyah_vm_boot_context};
use vmm::{BootReg, Vm};

use crate::{Error, Result};

/// Which rules a Gunyah caller gets where Gunyah userspace and lendvm's SPEC
/// differ (DESIGN D13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// lendvm's own rules (SPEC): only registers x86 has.
    #[default]
    Strict,
    /// Unmodified Gunyah userspace: the aarch64 register namespace is
    /// accepted (X0–X31, PC index 0, SP indexes 0 and 1). X0–X15 map to
    /// x86's sixteen general-purpose registers as in strict mode, PC to RIP,
    /// SP0 and SP1 to RSP; X16–X31 have no x86 register and are accepted
    /// without effect.
    Compat,
}

/// How many X registers each profile accepts.
fn x_count(profile: Profile) -> u32 {
    match profile {
        Profile::Strict => 16,
        Profile::Compat => 32,
    }
}

/// SET_BOOT_CONTEXT: `reg = (set << 8) | index`; reserved bits and fields
/// must be zero; anything outside the profile's namespace, or a call after
/// START, is EINVAL.
pub fn set_boot_context(vm: &Vm, ctx: &gunyah_vm_boot_context, profile: Profile) -> Result<()> {
    if ctx.reserved != 0 {
        return Err(Error::ReservedNotZero {
            what: "boot context",
            index: None,
            value: u64::from(ctx.reserved),
        });
    }
    if ctx.reg >> 16 != 0 {
        return Err(Error::UnknownRegisterSet { reg: ctx.reg });
    }
    let (set, index) = (ctx.reg >> 8, ctx.reg & 0xff);
    let reg = match (set, index, profile) {
        (REG_SET_X, i, _) if i < 16 => Some(BootReg::Gpr(i as u8)),
        (REG_SET_X, i, p) if i < x_count(p) => None,
        (REG_SET_PC, 0, _) => Some(BootReg::Pc),
        (REG_SET_SP, 0, _) | (REG_SET_SP, 1, Profile::Compat) => Some(BootReg::Sp),
        (REG_SET_X, index, p) => {
            return Err(Error::NoSuchXRegister {
                index,
                count: x_count(p),
            });
        }
        (REG_SET_PC | REG_SET_SP, index, _) => {
            return Err(Error::NoSuchRegisterIndex { set, index });
        }
        _ => return Err(Error::UnknownRegisterSet { reg: ctx.reg }),
    };
    match reg {
        Some(reg) => vm.set_boot_reg(reg, ctx.value),
        // No x86 register: only the timing rule applies.
        None => vm.boot_context_open(),
    }
}
