//! A VM: lifecycle, bindings, boot context, DTB/FW config, functions, and
//! START (SPEC §2.10–2.11).

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use binding::{Access, BindingInfo, FileRules, PAGE_SIZE, Perms, VmId, file_flags, map_flags};
use gmem::{GuestMemFile, Mode};
use kvm_ioctls::VmFd;
use uapi::{
    GUNYAH_IOEVENTFD_FLAGS_DATAMATCH, GUNYAH_IRQFD_FLAGS_LEVEL, GUNYAH_MEM_UNMAP, REG_SET_PC,
    REG_SET_SP, REG_SET_X, gunyah_fn_desc, gunyah_fn_ioeventfd_arg, gunyah_fn_irqfd_arg,
    gunyah_map_mem_args, gunyah_vm_boot_context, gunyah_vm_dtb_config, gunyah_vm_firmware_config,
};

use crate::boot::BootMode;
use crate::device::{GuestMem, Shared, VmOptions};
use crate::functions::{self, FunctionArg};
use crate::memory::MemoryStats;
use crate::native_abi::{
    MMIO_WINDOW_BASE, MMIO_WINDOW_SIZE, SYSTEM_REGION_BASE, SYSTEM_REGION_SIZE,
};
use crate::ports::{Console, Ports};
use crate::vcpu::{Status, Vcpu, VcpuCore};
use crate::{Error, Result, x86};

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

/// A boot-context register, in typed form (x86 mapping of SPEC B-VM-6).
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

impl BootReg {
    /// The raw boot-context register number.
    pub const fn raw(self) -> u32 {
        match self {
            BootReg::Gpr(i) => uapi::gunyah_vm_boot_context_reg(REG_SET_X, i as u32),
            BootReg::Pc => uapi::gunyah_vm_boot_context_reg(REG_SET_PC, 0),
            BootReg::Sp => uapi::gunyah_vm_boot_context_reg(REG_SET_SP, 0),
        }
    }
}

/// Initial registers, applied to every vCPU when it first runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BootContext {
    pub(crate) gprs: [Option<u64>; x86::GPR_COUNT],
    pub(crate) pc: Option<u64>,
}

pub(crate) struct Config {
    pub(crate) lifecycle: Lifecycle,
    dtb: Option<gunyah_vm_dtb_config>,
    fw: Option<gunyah_vm_firmware_config>,
    pub(crate) boot: BootContext,
    pub(crate) mmio_window: Range<u64>,
    /// How vCPUs enter the guest.
    pub(crate) boot_mode: BootMode,
    /// lendvm's own memory (GDT, IDT, TSS, page tables), made at START.
    system: Option<GuestMemFile>,
}

/// What ADD_FUNCTION created.
pub enum Function {
    /// A vCPU, ready to run once the VM has started.
    Vcpu(Vcpu),
    /// An irqfd was registered.
    Irqfd,
    /// An ioeventfd was registered.
    Ioeventfd,
}

/// Counters of one VM, for reports and metrics.
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

pub(crate) struct VmInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: VmId,
    pub(crate) fd: Arc<VmFd>,
    pub(crate) config: Mutex<Config>,
    functions: Mutex<functions::Table>,
    vcpus: Mutex<BTreeMap<u32, Arc<VcpuCore>>>,
    /// Set once the VM can no longer run (exited or crashed): the fast path
    /// every vCPU checks before entering the guest.
    pub(crate) down: AtomicBool,
    pub(crate) status: Mutex<Option<Status>>,
    pub(crate) ports: Mutex<Ports>,
    pub(crate) counters: Counters,
    /// KVM_CAP_EXCEPTION_PAYLOAD is on: injected #PF carry CR2.
    pub(crate) exception_payload: bool,
    pub(crate) options: VmOptions,
    /// When the VM was created, for the boot-complete probe.
    created: Instant,
    /// The in-kernel interrupt controller exists (created on first need).
    irqchip_made: OnceLock<()>,
    /// Time from creation to the guest's boot-complete write.
    boot_done: Arc<OnceLock<Duration>>,
}

/// `lock()` that survives a panic in another thread: every structure under
/// these locks is updated only after all checks passed.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// KVM_CAP_EXCEPTION_PAYLOAD.
const CAP_EXCEPTION_PAYLOAD: u32 = 164;

/// A VM. Dropping the last handle (this and every vCPU) tears it down:
/// every binding is removed and its pages returned (SPEC B-VM-8, B-VM-9).
pub struct Vm {
    pub(crate) inner: Arc<VmInner>,
}

impl Vm {
    pub(crate) fn new(shared: Arc<Shared>, options: VmOptions) -> Result<Vm> {
        let fd = shared
            .kvm
            .create_vm()
            .map_err(|e| Error::kvm("KVM_CREATE_VM", e))?;

        let exception_payload = fd.check_extension_raw(CAP_EXCEPTION_PAYLOAD.into()) > 0
            && fd
                .enable_cap(&kvm_bindings::kvm_enable_cap {
                    cap: CAP_EXCEPTION_PAYLOAD,
                    args: [1, 0, 0, 0],
                    ..Default::default()
                })
                .is_ok();
        let fd = Arc::new(fd);
        let id = {
            let mut st = shared.lock();
            let id = st.bindings.create_vm();
            st.add_vm(id, fd.clone(), shared.caps.memslots);
            st.reserve(
                id,
                SYSTEM_REGION_BASE..SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE,
                "lendvm's system region",
            );
            id
        };
        Ok(Vm {
            inner: Arc::new(VmInner {
                shared,
                id,
                fd,
                config: Mutex::new(Config {
                    lifecycle: Lifecycle::NotStarted,
                    dtb: None,
                    fw: None,
                    boot: BootContext::default(),
                    mmio_window: MMIO_WINDOW_BASE..MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE,
                    boot_mode: BootMode::Native,
                    system: None,
                }),
                functions: Mutex::new(functions::Table::default()),
                vcpus: Mutex::new(BTreeMap::new()),
                down: AtomicBool::new(false),
                status: Mutex::new(None),
                ports: Mutex::new(Ports::new()),
                counters: Counters::default(),
                exception_payload,
                options,
                created: Instant::now(),
                irqchip_made: OnceLock::new(),
                boot_done: Arc::new(OnceLock::new()),
            }),
        })
    }

    /// The VM's id in the binding registry.
    pub fn id(&self) -> VmId {
        self.inner.id
    }

    fn config(&self) -> MutexGuard<'_, Config> {
        lock(&self.inner.config)
    }

    fn require_not_started(&self, what: &str) -> Result<MutexGuard<'_, Config>> {
        let cfg = self.config();
        if cfg.lifecycle != Lifecycle::NotStarted {
            return Err(Error::Invalid(format!(
                "{what} is only allowed before START"
            )));
        }
        Ok(cfg)
    }

    // ----- memory ------------------------------------------------------------

    /// Create a guest_memfd owned by this VM (bindable into it only, SPEC
    /// B-ADD-3). `Private` files can only be lent (DESIGN D6); neither mode
    /// allows bindings without ALLOW_WRITE (D3).
    pub fn create_guest_memfd(&self, size: u64, mode: Mode) -> Result<GuestMem> {
        let shared = &self.inner.shared;
        let mut st = shared.lock();
        let rules = FileRules {
            owner: Some(self.inner.id),
            share_allowed: mode == Mode::HostMappable,
            write_required: true,
        };
        let id = st
            .bindings
            .create_file_with(size, file_flags::CLOEXEC, rules)?;
        match GuestMemFile::guest_memfd_with(&self.inner.fd, shared.caps.guest_memfd, size, mode) {
            Ok(file) => Ok(GuestMem::register(shared, &mut st, file, id)),
            Err(e) => {
                let _ = st.bindings.close_file(id);
                Err(e.into())
            }
        }
    }

    /// MAP_MEM (SPEC §2.5–2.7): `args.guest_mem_fd` is the descriptor
    /// number of a live lendvm guest memory file. Errors carry the SPEC's
    /// errno and change nothing.
    pub fn map_mem(&self, args: &gunyah_map_mem_args) -> Result<()> {
        self.inner.shared.lock().map_mem(self.inner.id, args)?;
        Ok(())
    }

    /// Bind `size` bytes of `mem` at `offset` to guest address `guest_addr`.
    pub fn bind(
        &self,
        mem: &GuestMem,
        guest_addr: u64,
        offset: u64,
        size: u64,
        access: Access,
        perms: Perms,
    ) -> Result<()> {
        let flags = map_flags(access, perms);
        self.map_file(mem, guest_addr, offset, size, flags)
    }

    /// Remove (part of) a binding made with the same access and permissions.
    pub fn unbind(
        &self,
        mem: &GuestMem,
        guest_addr: u64,
        offset: u64,
        size: u64,
        access: Access,
        perms: Perms,
    ) -> Result<()> {
        let flags = map_flags(access, perms) | GUNYAH_MEM_UNMAP;
        self.map_file(mem, guest_addr, offset, size, flags)
    }

    /// MAP_MEM with `mem`'s descriptor: the typed calls in raw form.
    fn map_file(
        &self,
        mem: &GuestMem,
        guest_addr: u64,
        offset: u64,
        size: u64,
        flags: u32,
    ) -> Result<()> {
        self.map_mem(&gunyah_map_mem_args {
            guest_addr,
            flags,
            guest_mem_fd: mem.fd() as u32,
            offset,
            size,
        })
    }

    /// The VM's bindings, sorted by guest address.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        self.inner.shared.lock().bindings.bindings(self.inner.id)
    }

    /// SET_USER_MEM_REGION (SPEC B-VM-7): share `[r.userspace_addr,
    /// +r.memory_size)` of this process with the guest at
    /// `r.guest_phys_addr`, with R/W/X `r.flags` (no-write is enforced with
    /// a read-only memslot). Labels are unique (EEXIST); the range may not
    /// overlap bindings or other regions (EEXIST); everything page-aligned
    /// (EINVAL). The region lives as long as the VM.
    ///
    /// # Safety
    ///
    /// The memory must stay mapped while the VM lives, and the guest may
    /// change it at any time, so no Rust reference may point into it.
    pub unsafe fn set_user_mem_region(
        &self,
        r: &uapi::gunyah_userspace_memory_region,
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.inner
                .shared
                .lock()
                .add_user_region(self.inner.id, r, false)
        }
    }

    /// ANDROID_LEND_USER_MEM (SPEC B-VM-7): lend `[r.userspace_addr,
    /// +r.memory_size)` of this process to the guest. The host loses access
    /// like this: the pages are replaced in place by a mapping of a lendvm
    /// memfd that holds their content and allows no access, so any host
    /// load or store there faults (SIGSEGV) while the VM lives. When the VM
    /// is torn down the memory is zeroed (DESIGN D5) and the range becomes
    /// readable and writable again (still backed by that memfd). Rules as
    /// for [`Vm::set_user_mem_region`].
    ///
    /// # Safety
    ///
    /// The range must be memory of this process that the caller owns and
    /// does not access at all (no references into it) until the VM is gone.
    pub unsafe fn lend_user_mem(&self, r: &uapi::gunyah_userspace_memory_region) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.inner
                .shared
                .lock()
                .add_user_region(self.inner.id, r, true)
        }
    }

    /// Guest ranges currently installed in KVM memslots, with slot ids.
    pub fn installed(&self) -> Vec<(Range<u64>, u32)> {
        self.inner.shared.lock().installed(self.inner.id)
    }

    /// Give lend bindings to the guest at MAP_MEM instead of on first touch
    /// (boot paths that lend all RAM up front). Before START only.
    pub fn set_demand_paging(&self, on: bool) -> Result<()> {
        let _cfg = self.require_not_started("changing demand paging")?;
        if let Some(m) = self.inner.shared.lock().vm(self.inner.id) {
            m.demand_paging = on;
        }
        Ok(())
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

    /// Host read of guest memory through the bindings (refused on lent
    /// pages, private files and unbound addresses; never faults).
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.guest_io(gpa, buf.len() as u64, |file, off, at, len| {
            file.read_at(off, &mut buf[at..at + len])
        })
    }

    /// Host write of guest memory through the bindings; see
    /// [`Vm::read_guest`].
    pub fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.guest_io(gpa, data.len() as u64, |file, off, at, len| {
            file.write_at(off, &data[at..at + len])
        })
    }

    fn guest_io(
        &self,
        gpa: u64,
        len: u64,
        mut io: impl FnMut(&GuestMemFile, u64, usize, usize) -> gmem::Result<()>,
    ) -> Result<()> {
        let st = self.inner.shared.lock();
        let end = gpa.checked_add(len).ok_or(Error::Overflow {
            what: "guest range",
            addr: gpa,
            size: len,
        })?;
        let mut at = gpa;
        let mut pieces = Vec::new();
        for b in st.bindings.bindings_in(self.inner.id, gpa, len) {
            if b.guest_addr > at {
                break;
            }
            let piece = b.clip_to_guest_range(at, end - at).unwrap_or(b);
            pieces.push(piece);
            at = piece.guest_end();
        }
        if at < end {
            return Err(Error::NotFound(format!(
                "guest address {at:#x} is not bound to any guest memory file"
            )));
        }
        for p in pieces {
            let file = st
                .file(p.file)
                .ok_or_else(|| Error::NotFound(format!("file {} is gone", p.file)))?;
            io(
                file,
                p.offset,
                (p.guest_addr - gpa) as usize,
                p.size as usize,
            )?;
        }
        Ok(())
    }

    // ----- configuration -------------------------------------------------------

    /// SET_DTB_CONFIG (SPEC B-VM-4): wrap → EOVERFLOW, after START → EBUSY.
    pub fn set_dtb_config(&self, cfg: &gunyah_vm_dtb_config) -> Result<()> {
        self.set_location("DTB", cfg.guest_phys_addr, cfg.size, |c| c.dtb = Some(*cfg))
    }

    /// SET_FW_CONFIG (SPEC B-VM-5): validated like the DTB config; lendvm
    /// records it for the guest's firmware and reports it.
    pub fn set_fw_config(&self, cfg: &gunyah_vm_firmware_config) -> Result<()> {
        self.set_location("firmware", cfg.guest_phys_addr, cfg.size, |c| {
            c.fw = Some(*cfg)
        })
    }

    /// Record a guest location set before START (the DTB or firmware).
    fn set_location(
        &self,
        what: &'static str,
        addr: u64,
        size: u64,
        store: impl FnOnce(&mut Config),
    ) -> Result<()> {
        if addr.checked_add(size).is_none() {
            return Err(Error::Overflow { what, addr, size });
        }
        let mut c = self.config();
        if c.lifecycle != Lifecycle::NotStarted {
            return Err(Error::Busy(format!(
                "the {what} location cannot change after START"
            )));
        }
        store(&mut c);
        Ok(())
    }

    /// The recorded DTB and firmware locations.
    pub fn configs(
        &self,
    ) -> (
        Option<gunyah_vm_dtb_config>,
        Option<gunyah_vm_firmware_config>,
    ) {
        let c = self.config();
        (c.dtb, c.fw)
    }

    /// SET_BOOT_CONTEXT (SPEC B-VM-6, x86 mapping of DESIGN §5).
    pub fn set_boot_context(&self, ctx: &gunyah_vm_boot_context) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(why));
        if ctx.reserved != 0 {
            return bad(format!(
                "boot context reserved field is {:#x}, must be 0",
                ctx.reserved
            ));
        }
        if ctx.reg >> 16 != 0 {
            return bad(format!(
                "boot context register {:#x} has bits above 16",
                ctx.reg
            ));
        }
        let (set, index) = (ctx.reg >> 8, ctx.reg & 0xff);
        let reg = match (set, index) {
            (REG_SET_X, i) if (i as usize) < x86::GPR_COUNT => BootReg::Gpr(i as u8),
            (REG_SET_PC, 0) => BootReg::Pc,
            (REG_SET_SP, 0) => BootReg::Sp,
            (REG_SET_X, i) => {
                return bad(format!(
                    "register X{i} does not exist on x86: X0..X15 are RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15"
                ));
            }
            (REG_SET_PC | REG_SET_SP, i) => {
                return bad(format!(
                    "register set {set} has only index 0 on x86, not {i}"
                ));
            }
            _ => return bad(format!("unknown boot context register set {set}")),
        };
        let mut c = self.require_not_started("setting the boot context")?;
        match reg {
            BootReg::Gpr(i) => c.boot.gprs[i as usize] = Some(ctx.value),
            BootReg::Pc => c.boot.pc = Some(ctx.value),
            BootReg::Sp => c.boot.gprs[4] = Some(ctx.value),
        }
        Ok(())
    }

    /// The boot PC, if the boot context sets one.
    pub fn boot_pc(&self) -> Option<u64> {
        self.config().boot.pc
    }

    /// Typed SET_BOOT_CONTEXT.
    pub fn set_boot_reg(&self, reg: BootReg, value: u64) -> Result<()> {
        self.set_boot_context(&gunyah_vm_boot_context {
            reg: reg.raw(),
            reserved: 0,
            value,
        })
    }

    /// How vCPUs enter the guest (default: lendvm's native mode). The
    /// `boot` module sets it for PVH and Linux images. Before START only.
    pub fn set_boot_mode(&self, mode: BootMode) -> Result<()> {
        let mut cfg = self.require_not_started("choosing the boot mode")?;
        cfg.boot_mode = mode;
        Ok(())
    }

    /// The boot mode.
    pub fn boot_mode(&self) -> BootMode {
        self.config().boot_mode
    }

    /// Add the legacy PC devices standard guests use: COM1 (a 16550 whose
    /// output goes to `serial` and whose interrupt, line 4, goes through an
    /// irqfd when the VM has an interrupt controller), the i8042 reset line
    /// (`out 0x64, 0xfe` stops the VM: EXITED, kind RESET), and the
    /// boot-complete probe at port 0xee. `input`, if given, feeds COM1's
    /// receiver until it ends.
    pub fn add_legacy_devices(
        &self,
        serial: Console,
        input: Option<Box<dyn std::io::Read + Send>>,
    ) -> Result<()> {
        let irq = if self.inner.options.irqchip {
            self.require_irqchip()?;
            let e = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
                .map_err(|source| Error::Kvm {
                    op: "eventfd",
                    source,
                })?;
            self.inner
                .fd
                .register_irqfd(&e, crate::devices::COM1_IRQ)
                .map_err(|e| Error::kvm("KVM_IRQFD (COM1)", e))?;
            Some(e)
        } else {
            None
        };
        let devices = crate::devices::legacy(
            serial,
            input,
            irq,
            self.inner.created,
            self.inner.boot_done.clone(),
        );
        let mut ports = lock(&self.inner.ports);
        for d in devices {
            ports.add(d);
        }
        Ok(())
    }

    /// Where built-in console output goes (default: standard output).
    pub fn set_console(&self, console: Console) {
        lock(&self.inner.ports).set_console(console);
    }

    // ----- functions -------------------------------------------------------------

    /// ADD_FUNCTION (SPEC F-1, F-3, F-5, F-6): `desc.arg` is the address of
    /// the argument in this process (a bad address is EFAULT, not a crash).
    pub fn add_function(&self, desc: &gunyah_fn_desc) -> Result<Function> {
        match functions::decode(desc)? {
            FunctionArg::Vcpu(a) => self.add_vcpu(a.id).map(Function::Vcpu),
            FunctionArg::Irqfd(a) => {
                self.require_irqchip()?;
                lock(&self.inner.functions).add_irqfd(&self.inner.fd, &a)?;
                Ok(Function::Irqfd)
            }
            FunctionArg::Ioeventfd(a) => {
                lock(&self.inner.functions).add_ioeventfd(&self.inner.fd, &a)?;
                Ok(Function::Ioeventfd)
            }
        }
    }

    /// REMOVE_FUNCTION (SPEC F-2): removes every matching instance; ENOENT
    /// if none matched.
    pub fn remove_function(&self, desc: &gunyah_fn_desc) -> Result<()> {
        match functions::decode(desc)? {
            FunctionArg::Vcpu(a) => self.remove_vcpu(a.id),
            FunctionArg::Irqfd(a) => {
                lock(&self.inner.functions).remove_irqfd(&self.inner.fd, a.label)
            }
            FunctionArg::Ioeventfd(a) => {
                lock(&self.inner.functions).remove_ioeventfd(&self.inner.fd, &a)
            }
        }
    }

    /// Add vCPU `id` (SPEC F-3): EEXIST if it exists. Allowed after START.
    pub fn add_vcpu(&self, id: u32) -> Result<Vcpu> {
        let mut vcpus = lock(&self.inner.vcpus);
        if let Some(core) = vcpus.get(&id) {
            if core.is_active() {
                return Err(Error::Exists(format!("vCPU {id} already exists")));
            }
            // KVM cannot destroy a vCPU: a re-added id gets the same KVM
            // vCPU back, reset to the boot state on its first run.
            return Ok(Vcpu::attach(self.inner.clone(), core.clone()));
        }
        self.inner.ensure_irqchip()?;
        let fd = self
            .inner
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;
        let core = Arc::new(VcpuCore::new(id, fd));
        vcpus.insert(id, core.clone());
        Ok(Vcpu::attach(self.inner.clone(), core))
    }

    /// Remove vCPU `id`: its handle's next run fails with ENODEV (SPEC R-2).
    pub fn remove_vcpu(&self, id: u32) -> Result<()> {
        let vcpus = lock(&self.inner.vcpus);
        match vcpus.get(&id) {
            Some(core) if core.is_active() => {
                core.deactivate();
                Ok(())
            }
            _ => Err(Error::NotFound(format!("no vCPU has id {id}"))),
        }
    }

    /// Register an irqfd: each signal of `fd` raises interrupt line `label`.
    pub fn add_irqfd(&self, fd: RawFd, label: u32, level: bool) -> Result<()> {
        self.require_irqchip()?;
        lock(&self.inner.functions).add_irqfd(
            &self.inner.fd,
            &gunyah_fn_irqfd_arg {
                fd: fd as u32,
                label,
                flags: if level { GUNYAH_IRQFD_FLAGS_LEVEL } else { 0 },
                padding: 0,
            },
        )
    }

    fn require_irqchip(&self) -> Result<()> {
        if !self.inner.options.irqchip {
            return Err(Error::Unsupported(
                "irqfds need an interrupt controller, and this VM was created without one (VmOptions::irqchip)".into(),
            ));
        }
        let _vcpus = lock(&self.inner.vcpus);
        self.inner.ensure_irqchip()
    }

    /// Remove the irqfd with `label`.
    pub fn remove_irqfd(&self, label: u32) -> Result<()> {
        lock(&self.inner.functions).remove_irqfd(&self.inner.fd, label)
    }

    /// Register an ioeventfd: guest writes at `addr` (of `len` bytes, and
    /// equal to `datamatch` if given) signal `fd` instead of exiting.
    pub fn add_ioeventfd(
        &self,
        fd: RawFd,
        addr: u64,
        len: u32,
        datamatch: Option<u64>,
    ) -> Result<()> {
        lock(&self.inner.functions)
            .add_ioeventfd(&self.inner.fd, &ioevent_arg(fd, addr, len, datamatch))
    }

    /// Remove ioeventfds registered with the same address, length and match.
    pub fn remove_ioeventfd(&self, addr: u64, len: u32, datamatch: Option<u64>) -> Result<()> {
        lock(&self.inner.functions)
            .remove_ioeventfd(&self.inner.fd, &ioevent_arg(-1, addr, len, datamatch))
    }

    // ----- START -------------------------------------------------------------------

    /// START (SPEC B-VM-3): idempotent on a running VM; ENODEV after a
    /// failed start. Needs a DTB config inside one binding (EINVAL unset,
    /// ENOENT outside); lent DTB pages are handed over now and must have no
    /// host view (EBUSY).
    pub fn start(&self) -> Result<()> {
        let mut cfg = self.config();
        match &cfg.lifecycle {
            Lifecycle::Running => return Ok(()),
            Lifecycle::LoadFailed(why) => {
                return Err(Error::NotRunnable(format!(
                    "the VM failed to start earlier: {why}"
                )));
            }
            Lifecycle::NotStarted => {}
        }
        match self.try_start(&mut cfg) {
            Ok(()) => {
                cfg.lifecycle = Lifecycle::Running;
                Ok(())
            }
            Err(e) => {
                cfg.lifecycle = Lifecycle::LoadFailed(e.to_string());
                Err(e)
            }
        }
    }

    fn try_start(&self, cfg: &mut Config) -> Result<()> {
        let dtb = cfg
            .dtb
            .ok_or_else(|| Error::Invalid("no DTB location was set (SET_DTB_CONFIG)".into()))?;
        // Standard boots start only vCPU 0; the guest wakes the others with
        // INIT/SIPI, which needs the in-kernel LAPIC.
        if cfg.boot_mode != BootMode::Native
            && !self.inner.options.irqchip
            && lock(&self.inner.vcpus).len() > 1
        {
            return Err(Error::Invalid(
                "a PVH or Linux guest with several vCPUs needs an interrupt controller (VmOptions::irqchip)".into(),
            ));
        }
        if dtb.size == 0 {
            return Err(Error::Invalid("the DTB size is 0".into()));
        }
        // Whole pages around the DTB (SPEC B-VM-3.2 [REC]).
        let start = dtb.guest_phys_addr & !(PAGE_SIZE - 1);
        let end = (dtb.guest_phys_addr + dtb.size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut st = self.inner.shared.lock();
        let vm = self.inner.id;
        let b = st
            .bindings
            .lookup(vm, start)
            .filter(|b| b.guest_end() >= end)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "the DTB [{start:#x}, {end:#x}) does not lie inside one binding"
                ))
            })?;
        // The Gunyah resource manager hands the DTB over with full access
        // and refuses bindings that do not allow it (TV bad_dtb_access).
        if b.is_lend() && b.perms() != Perms::RWX {
            return Err(Error::Invalid(format!(
                "the DTB lies in a lend binding with permissions {}: it needs rwx",
                b.perms()
            )));
        }
        if b.is_lend() {
            st.hand_over(vm, &b, start..end)?;
        }
        // Native and Linux entries use lendvm's GDT and page tables; a PVH
        // guest brings its own.
        if !matches!(cfg.boot_mode, BootMode::Pvh { .. }) {
            let system = GuestMemFile::memfd(SYSTEM_REGION_SIZE, file_flags::CLOEXEC)?;
            x86::build_system_region(&system)?;
            st.install_private_slot(vm, SYSTEM_REGION_BASE, &system)?;
            cfg.system = Some(system);
        }
        Ok(())
    }

    // ----- status ------------------------------------------------------------------

    /// Why the VM stopped, once it has.
    pub fn status(&self) -> Option<Status> {
        *lock(&self.inner.status)
    }

    /// A snapshot of the VM's counters.
    pub fn metrics(&self) -> VmMetrics {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VmMetrics {
            mmio_exits: get(&c.mmio_exits),
            page_fault_exits: get(&c.page_fault_exits),
            status_exits: get(&c.status_exits),
            kvm_exits: get(&c.kvm_exits),
            port_io: get(&c.port_io),
            unknown_port_io: get(&c.unknown_port_io),
            injected_faults: get(&c.injected_faults),
            boot_complete: self.inner.boot_done.get().copied(),
            memory: self.inner.shared.lock().stats(self.inner.id),
        }
    }

    /// Number of registered irqfds and ioeventfds.
    pub fn function_counts(&self) -> (usize, usize) {
        lock(&self.inner.functions).counts()
    }
}

fn ioevent_arg(fd: RawFd, addr: u64, len: u32, datamatch: Option<u64>) -> gunyah_fn_ioeventfd_arg {
    gunyah_fn_ioeventfd_arg {
        datamatch: datamatch.unwrap_or(0),
        addr,
        len,
        fd,
        flags: if datamatch.is_some() {
            GUNYAH_IOEVENTFD_FLAGS_DATAMATCH
        } else {
            0
        },
        padding: 0,
    }
}

impl Config {
    /// The DTB address handed to vCPUs at boot (0 if unset).
    pub(crate) fn dtb_addr(&self) -> u64 {
        self.dtb.map_or(0, |d| d.guest_phys_addr)
    }
}

impl VmInner {
    /// Create the in-kernel interrupt controller if the VM wants one and it
    /// does not exist yet. Deferred to the first vCPU or irqfd (KVM needs
    /// it before any vCPU) because KVM's next memslot change after it waits
    /// ~7 ms (see VmOptions): memory bound before then never pays that.
    pub(crate) fn ensure_irqchip(&self) -> Result<()> {
        if !self.options.irqchip || self.irqchip_made.get().is_some() {
            return Ok(());
        }
        // Serialised by the vCPU table lock, which every caller holds.
        self.fd
            .create_irq_chip()
            .map_err(|e| Error::kvm("KVM_CREATE_IRQCHIP", e))?;
        let _ = self.irqchip_made.set(());
        Ok(())
    }

    /// Record why the VM stopped (first reason wins) and stop every vCPU.
    pub(crate) fn set_down(&self, status: Status) {
        {
            let mut s = lock(&self.status);
            if s.is_none() {
                *s = Some(status);
            }
        }
        self.down.store(true, Ordering::SeqCst);
        lock(&self.ports).flush();
        for core in lock(&self.vcpus).values() {
            core.kick();
        }
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        lock(&self.config).lifecycle.clone()
    }
}

impl Drop for VmInner {
    fn drop(&mut self) {
        lock(&self.ports).flush();
        // Every vCPU handle is gone (each holds the VM), so no guest can
        // touch memory while the bindings are taken apart.
        self.shared.lock().destroy_vm(self.id);
    }
}
