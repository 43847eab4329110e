//! A vCPU's first entry: CPUID, and the registers of its boot mode and
//! boot context (SPEC B-VM-6, DESIGN §5).

use kvm_bindings::kvm_regs;

use super::{CoreState, Vcpu};
use crate::error::{Error, Result};
use crate::sync::lock;
use crate::vm::BootMode;
use crate::x86;

impl Vcpu {
    pub(super) fn load_boot_state(&self, st: &mut CoreState) -> Result<()> {
        if !st.cpuid_set {
            let cpuid = self.vm.device.supported_cpuid()?;
            st.fd
                .set_cpuid2(&cpuid)
                .map_err(|e| Error::kvm("KVM_SET_CPUID2", e))?;
            st.cpuid_set = true;
        }
        let cfg = lock(&self.vm.config);
        let mode = cfg.boot_mode;
        let mut sregs = st
            .fd
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
        let mut regs = kvm_regs {
            rflags: 2,
            ..Default::default()
        };
        match mode {
            BootMode::Native => {
                x86::native_sregs(&mut sregs);
                regs.rip = cfg.boot.pc.unwrap_or(0);
                regs.rdi = u64::from(self.core.id);
                regs.rsi = cfg.dtb_addr();
            }
            BootMode::Pvh { entry, start_info } => {
                x86::pvh_sregs(&mut sregs);
                regs.rip = entry;
                regs.rbx = start_info;
            }
            BootMode::Linux64 { entry, boot_params } => {
                x86::linux64_sregs(&mut sregs);
                regs.rip = entry;
                regs.rsi = boot_params;
            }
        }
        for (i, v) in cfg.boot.gprs.iter().enumerate() {
            if let Some(v) = v {
                x86::set_gpr(&mut regs, i, *v);
            }
        }
        if mode != BootMode::Native
            && let Some(pc) = cfg.boot.pc
        {
            regs.rip = pc;
        }
        drop(cfg);
        st.fd
            .set_sregs(&sregs)
            .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        st.fd
            .set_regs(&regs)
            .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
        // With an in-kernel LAPIC every vCPU but the boot CPU (id 0) starts
        // waiting for INIT/SIPI and KVM_RUN would block. lendvm's native
        // vCPUs all start at once; a PVH or Linux guest wakes its own.
        if self.core.id != 0 && self.vm.options.irqchip && mode == BootMode::Native {
            st.fd
                .set_mp_state(kvm_bindings::kvm_mp_state {
                    mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
                })
                .map_err(|e| Error::kvm("KVM_SET_MP_STATE", e))?;
        }
        Ok(())
    }
}
