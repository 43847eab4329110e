//! The lendvm side of each comparison.

use vmm::{
    Access, BindRequest, Console, Device, Exit, GuestAddress, GuestMem, Perms, ResumeAction,
    Status, Vcpu, Vm,
};

use crate::*;

// ----- lendvm side -----------------------------------------------------------------

/// A lendvm VM with the code binding, the DTB config and the boot context
/// set; [`LendVm::start`] adds vCPU 0 and starts it.
pub(crate) struct LendVm {
    pub(crate) vcpu: Option<Vcpu>,
    pub(crate) vm: Vm,
    pub(crate) _code: GuestMem,
}

impl LendVm {
    /// A SHARE code binding is the 64 KiB one with the DTB in its second
    /// page. A LEND code binding is 4 MiB with the DTB at `LEND_DTB_GPA`,
    /// in another demand-paging window than the code: START installs the
    /// DTB page, and lendvm's first-touch install of a window that holds
    /// it fails with EEXIST (see the report of issue 4's benchmarks).
    pub(crate) fn new(dev: &Device, entry: &Entry, code_access: Access) -> LendVm {
        let (size, dtb) = match code_access {
            Access::Share => (CODE_SIZE, DTB_GPA),
            Access::Lend => (LEND_CODE_SIZE, LEND_DTB_GPA),
        };
        let vm = dev.create_vm().expect("create VM");
        vm.set_console(Console::Off);
        let code = dev.create_guest_mem(size, 0).expect("code memfd");
        vm.bind(&BindRequest::new(
            &code,
            GuestAddress(CODE_GPA),
            0,
            size,
            code_access,
            Perms::RWX,
        ))
        .expect("bind code");
        vm.write_guest(CODE_GPA, &guest_code()).expect("load code");
        vm.set_dtb_config(GuestAddress(dtb), PAGE)
            .expect("DTB config");
        entry.apply(&vm);
        LendVm {
            vcpu: None,
            vm,
            _code: code,
        }
    }

    pub(crate) fn start(&mut self) {
        self.vcpu = Some(self.vm.add_vcpu(0).expect("add vCPU"));
        self.vm.start().expect("START");
    }

    pub(crate) fn vcpu(&mut self) -> &mut Vcpu {
        self.vcpu.as_mut().expect("started")
    }

    /// Run to the guest's `out 0xf4`.
    pub(crate) fn run_to_exit(&mut self) {
        match self.vcpu().run() {
            Ok(Exit::Status(Status::Exited(_))) => {}
            other => panic!("lendvm: expected the guest to exit, got {other:?}"),
        }
    }

    /// Run to the next MMIO exit at `addr` and resume it as handled.
    pub(crate) fn run_to_mmio(&mut self, addr: u64) {
        let vcpu = self.vcpu();
        match vcpu.run() {
            Ok(Exit::Mmio { phys_addr, .. }) if phys_addr == addr => {
                vcpu.set_resume(ResumeAction::Handled)
            }
            other => panic!("lendvm: expected an MMIO exit at {addr:#x}, got {other:?}"),
        }
    }
}
