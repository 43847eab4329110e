//! A VM: its memory (bindings, legacy regions), functions (vCPUs, irqfds,
//! ioeventfds), configuration and lifecycle (SPEC §2.5–2.11), in typed form.
//! The raw Gunyah ABI is decoded in front of this API (the `gunyah-abi`
//! crate); nothing here reads a descriptor number or a flag bit.

mod config;
mod counters;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use binding::{Access, BindingInfo, FileRules, MapFlags, MapRequest, Perms, VmId, file_flags};
use gmem::{GuestMemFile, Mode};
use kvm_ioctls::VmFd;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

pub use config::{BootMode, BootReg, Location, UserMemRegion};
pub(crate) use config::{Config, Lifecycle};
pub(crate) use counters::Counters;
pub use counters::VmMetrics;

use crate::device::{DeviceInner, GuestMem, VmOptions};
use crate::error::{Error, Result};
use crate::functions::{self, Ioevent};
use crate::memory::{AccessVcpuSource, HostMemory, VmMemory};
use crate::native_abi::{SYSTEM_REGION_BASE, SYSTEM_REGION_SIZE};
use crate::ports::{Console, Ports};
use crate::sync::lock;
use crate::vcpu::{Status, Vcpu, VcpuCore};
use crate::x86;
use crate::x86::{ACCESS_REGION_BASE, ACCESS_REGION_SIZE};

/// A binding request: `size` bytes of `mem` from `offset` at guest address
/// `guest`, with `flags` (share or lend, and the guest's permissions).
#[derive(Clone, Copy)]
pub struct BindRequest<'a> {
    /// The guest memory file.
    pub mem: &'a GuestMem,
    /// Guest physical address of the first byte.
    pub guest: GuestAddress,
    /// Byte offset into the file.
    pub offset: u64,
    /// Length in bytes (whole pages).
    pub size: u64,
    /// Share or lend, and what the guest may do.
    pub flags: MapFlags,
}

impl<'a> BindRequest<'a> {
    /// A request with explicit share or lend.
    pub fn new(
        mem: &'a GuestMem,
        guest: GuestAddress,
        offset: u64,
        size: u64,
        access: Access,
        perms: Perms,
    ) -> BindRequest<'a> {
        BindRequest {
            mem,
            guest,
            offset,
            size,
            flags: MapFlags::new(access, perms),
        }
    }

    /// The whole file at `guest`.
    pub fn whole(mem: &'a GuestMem, guest: GuestAddress, access: Access, perms: Perms) -> Self {
        BindRequest::new(mem, guest, 0, mem.size(), access, perms)
    }

    fn request(&self) -> MapRequest {
        MapRequest {
            guest_addr: self.guest.0,
            file: self.mem.id(),
            offset: self.offset,
            size: self.size,
            flags: self.flags,
        }
    }
}

impl std::fmt::Debug for BindRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindRequest")
            .field("file", &self.mem.id())
            .field("guest", &format_args!("{:#x}", self.guest.0))
            .field("offset", &format_args!("{:#x}", self.offset))
            .field("size", &format_args!("{:#x}", self.size))
            .field("flags", &self.flags)
            .finish()
    }
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

pub(crate) struct VmInner {
    pub(crate) id: VmId,
    pub(crate) fd: Arc<VmFd>,
    pub(crate) memory: Arc<VmMemory>,
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
    /// Last, so that it drops after the VM file it may close (the reaper).
    pub(crate) device: Arc<DeviceInner>,
}

/// KVM_CAP_EXCEPTION_PAYLOAD.
const CAP_EXCEPTION_PAYLOAD: u32 = 164;

/// A VM. Dropping the last handle (this and every vCPU) tears it down:
/// every binding is removed and its pages returned (SPEC B-VM-8, B-VM-9).
pub struct Vm {
    pub(crate) inner: Arc<VmInner>,
}

impl Vm {
    pub(crate) fn new(device: Arc<DeviceInner>, options: VmOptions) -> Result<Vm> {
        let fd = device
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
        let caps = &device.caps;
        let mut reg = device.registry.lock();
        let id = reg.bindings.create_vm();
        let cpuid_device = device.clone();
        let memory = Arc::new(VmMemory::new(
            id,
            fd.clone(),
            caps.memslots,
            AccessVcpuSource {
                vm_fd: fd.clone(),
                id: access_vcpu_id(caps.max_vcpu_id),
                cpuid: Arc::new(move || cpuid_device.supported_cpuid()),
                irqchip: options.irqchip,
                run_size: caps.vcpu_mmap_size,
            },
        ));
        reg.add_vm(&memory);
        drop(reg);
        let vm = Vm {
            inner: Arc::new(VmInner {
                device,
                id,
                fd,
                memory,
                config: Mutex::new(Config::new()),
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
        };
        // lendvm's regions are installed now, before any interrupt
        // controller or ioeventfd exists, which keeps them off KVM's slow
        // first-memslot-change path (DESIGN §1).
        vm.install_lendvm_regions(options.native)?;
        Ok(vm)
    }

    /// Every VM gets the read-only access region (its access vCPU's
    /// tables and stubs); native VMs also the native part of the system
    /// region (GDT, IDT, TSS, page tables), from one memfd.
    fn install_lendvm_regions(&self, native: bool) -> Result<()> {
        let mut memory = self.inner.memory.lock();
        let access = ACCESS_REGION_BASE..SYSTEM_REGION_BASE + SYSTEM_REGION_SIZE;
        if native {
            let system = GuestMemFile::memfd(SYSTEM_REGION_SIZE, file_flags::CLOEXEC)?;
            x86::build_system_region(&system)?;
            memory.install_lendvm_region(
                SYSTEM_REGION_BASE..ACCESS_REGION_BASE,
                &system,
                0,
                false,
                "lendvm's system region",
            )?;
            memory.install_lendvm_region(
                access,
                &system,
                ACCESS_REGION_BASE - SYSTEM_REGION_BASE,
                true,
                "lendvm's access region",
            )?;
        } else {
            let file = GuestMemFile::memfd(ACCESS_REGION_SIZE, file_flags::CLOEXEC)?;
            x86::build_access_region(&file)?;
            memory.install_lendvm_region(access, &file, 0, true, "lendvm's access region")?;
        }
        drop(memory);
        lock(&self.inner.config).native_region = native;
        Ok(())
    }

    /// The VM's id in the device's registry.
    pub fn id(&self) -> VmId {
        self.inner.id
    }

    // ----- memory ------------------------------------------------------------

    /// Create a guest_memfd owned by this VM (bindable into it only, SPEC
    /// B-ADD-3). `Private` files can only be lent (DESIGN D6); neither mode
    /// allows bindings without ALLOW_WRITE (D3).
    pub fn create_guest_memfd(&self, size: u64, mode: Mode) -> Result<GuestMem> {
        let device = &self.inner.device;
        let mut reg = device.registry.lock();
        let rules = FileRules {
            owner: Some(self.inner.id),
            share_allowed: mode == Mode::HostMappable,
            write_required: true,
        };
        let id = reg
            .bindings
            .create_file_with(size, file_flags::CLOEXEC, rules)?;
        match GuestMemFile::guest_memfd_with(&self.inner.fd, device.caps.guest_memfd, size, mode) {
            Ok(file) => Ok(GuestMem::register(device, file, id)),
            Err(e) => {
                let _ = reg.bindings.close_file(id);
                Err(e.into())
            }
        }
    }

    fn same_device(&self, mem: &GuestMem) -> Result<()> {
        if !Arc::ptr_eq(&mem.device, &self.inner.device) {
            return Err(Error::ForeignGuestMem { file: mem.id() });
        }
        Ok(())
    }

    /// MAP_MEM (SPEC §2.5–2.7): bind `req.size` bytes of `req.mem`. Errors
    /// carry the SPEC's errno and change nothing.
    pub fn bind(&self, req: &BindRequest<'_>) -> Result<()> {
        self.same_device(req.mem)?;
        let mut reg = self.inner.device.registry.lock();
        reg.map(&self.inner.memory, &req.request(), req.mem.file())
    }

    /// MAP_MEM with UNMAP (SPEC §2.6): remove (part of) a binding made with
    /// the same flags and translation; lent pages come back zeroed.
    pub fn unbind(&self, req: &BindRequest<'_>) -> Result<()> {
        self.same_device(req.mem)?;
        let mut reg = self.inner.device.registry.lock();
        reg.unmap(&self.inner.memory, &req.request())
    }

    /// The VM's bindings, sorted by guest address.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        self.inner
            .device
            .registry
            .lock()
            .bindings
            .bindings(self.inner.id)
    }

    /// SET_USER_MEM_REGION (SPEC B-VM-7): share `[r.userspace_addr,
    /// +r.size)` of this process with the guest at `r.guest`, with `r.perms`
    /// (no-write is enforced with a read-only memslot). Labels are unique
    /// (EEXIST); the range may not overlap bindings or other regions
    /// (EEXIST); everything page-aligned (EINVAL). The region lives as long
    /// as the VM.
    ///
    /// # Safety
    ///
    /// The memory must stay mapped while the VM lives, and the guest may
    /// change it at any time, so no Rust reference may point into it.
    pub unsafe fn set_user_mem_region(&self, r: &UserMemRegion) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.memory.lock().add_user_region(&r.raw(), false) }
    }

    /// ANDROID_LEND_USER_MEM (SPEC B-VM-7): lend `[r.userspace_addr,
    /// +r.size)` of this process to the guest. The host loses access like
    /// this: the pages are replaced in place by a mapping of a lendvm memfd
    /// that holds their content and allows no access, so any host load or
    /// store there faults (SIGSEGV) while the VM lives. When the VM is torn
    /// down the memory is zeroed (DESIGN D5) and the range becomes readable
    /// and writable again (still backed by that memfd). Rules as for
    /// [`Vm::set_user_mem_region`].
    ///
    /// # Safety
    ///
    /// The range must be memory of this process that the caller owns and
    /// does not access at all (no references into it) until the VM is gone.
    pub unsafe fn lend_user_mem(&self, r: &UserMemRegion) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.memory.lock().add_user_region(&r.raw(), true) }
    }

    /// Guest ranges currently installed in KVM memslots, with slot ids.
    pub fn installed(&self) -> Vec<(Range<u64>, u32)> {
        self.inner.memory.lock().installed()
    }

    /// Give lend bindings to the guest at MAP_MEM instead of on first touch.
    /// Before START only.
    pub fn set_demand_paging(&self, on: bool) -> Result<()> {
        let _cfg = self.require_not_started("changing demand paging")?;
        self.inner.memory.lock().demand_paging = on;
        Ok(())
    }

    /// Hand `[guest, guest + size)` (inside lend bindings) to the guest
    /// now, whole demand chunks at a time, instead of on its first touches:
    /// the pages stop being host-accessible and are installed in as few
    /// memslots as possible. For boot paths that wrote the kernel through
    /// the lend binding (DESIGN D2 allows host use before the guest's
    /// touch) and lend all RAM at start. EBUSY if a host view covers any of
    /// it; nothing changes then.
    pub fn lend_now(&self, guest: GuestAddress, size: u64) -> Result<()> {
        let end = guest.0.checked_add(size).ok_or(Error::Overflow {
            what: "guest range",
            addr: guest.0,
            size,
        })?;
        self.inner.memory.lock().lend_now(guest.0..end)
    }

    /// The VM's host-accessible memory as vm-memory's `GuestMemory` (see
    /// [`HostMemory`]): boot paths load kernels straight into it. Its pages
    /// cannot be lent while it lives.
    pub fn host_memory(&self) -> Result<HostMemory> {
        self.inner.memory.lock().host_memory()
    }

    /// Host read of guest memory through the bindings: refused on lent
    /// pages, private files and unbound addresses, never faults, and
    /// leaves `buf` untouched unless it succeeds (DESIGN D4).
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.memory.lock().read_guest(gpa, buf)
    }

    /// Host write of guest memory through the bindings; all or nothing,
    /// see [`Vm::read_guest`].
    pub fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.inner.memory.lock().write_guest(gpa, data)
    }

    // ----- devices ----------------------------------------------------------------

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

    /// Add vCPU `id` (SPEC F-3): EEXIST if it exists. Allowed after START.
    /// A removed id comes back as the same KVM vCPU (KVM cannot destroy
    /// one), reset to the boot state on its first run.
    pub fn add_vcpu(&self, id: u32) -> Result<Vcpu> {
        let caps = &self.inner.device.caps;
        if u64::from(id) >= access_vcpu_id(caps.max_vcpu_id) {
            return Err(Error::VcpuIdOutOfRange {
                id,
                limit: access_vcpu_id(caps.max_vcpu_id),
            });
        }
        let mut vcpus = lock(&self.inner.vcpus);
        if let Some(core) = vcpus.get(&id) {
            if core.is_active() {
                return Err(Error::VcpuExists { id });
            }
            return Ok(Vcpu::attach(self.inner.clone(), core.clone()));
        }
        self.inner.ensure_irqchip()?;
        let fd = self
            .inner
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;
        let core = Arc::new(VcpuCore::new(id, fd, caps.vcpu_mmap_size));
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
            _ => Err(Error::NoVcpu { id }),
        }
    }

    /// Register an irqfd (SPEC F-5): each signal of `event` (an eventfd)
    /// raises interrupt line `label`; `level` keeps it asserted until the
    /// guest acknowledges it.
    pub fn add_irqfd(&self, event: &EventFd, label: u32, level: bool) -> Result<()> {
        self.require_irqchip()?;
        lock(&self.inner.functions).add_irqfd(&self.inner.fd, event, label, level)
    }

    fn require_irqchip(&self) -> Result<()> {
        if !self.inner.options.irqchip {
            return Err(Error::NoIrqchip);
        }
        let _vcpus = lock(&self.inner.vcpus);
        self.inner.ensure_irqchip()
    }

    /// Remove the irqfd with `label` (SPEC F-2).
    pub fn remove_irqfd(&self, label: u32) -> Result<()> {
        lock(&self.inner.functions).remove_irqfd(&self.inner.fd, label)
    }

    /// Register an ioeventfd (SPEC F-6): guest writes at `io.addr` (of
    /// `io.len` bytes, and equal to `io.datamatch` if given) signal `event`
    /// instead of exiting.
    pub fn add_ioeventfd(&self, event: &EventFd, io: &Ioevent) -> Result<()> {
        lock(&self.inner.functions).add_ioeventfd(&self.inner.fd, event, io)
    }

    /// Remove the ioeventfds registered with the same address, length and
    /// match (SPEC F-2).
    pub fn remove_ioeventfd(&self, io: &Ioevent) -> Result<()> {
        lock(&self.inner.functions).remove_ioeventfd(&self.inner.fd, io)
    }

    /// Number of registered irqfds and ioeventfds.
    pub fn function_counts(&self) -> (usize, usize) {
        lock(&self.inner.functions).counts()
    }
}

/// The KVM vCPU id of a VM's access vCPU (see `memory/access_vcpu.rs`):
/// the last id the host allows, kept from guests.
fn access_vcpu_id(max_vcpu_id: usize) -> u64 {
    (max_vcpu_id as u64).saturating_sub(1)
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
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        lock(&self.ports).flush();
        for core in lock(&self.vcpus).values() {
            core.kick();
        }
    }

    /// Why the VM stopped, if it has.
    pub(crate) fn stopped(&self) -> Option<Status> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            *lock(&self.status)
        } else {
            None
        }
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        lock(&self.config).lifecycle.clone()
    }

    /// The MMIO window (DESIGN D1).
    pub(crate) fn mmio_window(&self) -> Range<u64> {
        lock(&self.config).mmio_window.clone()
    }
}

impl Drop for VmInner {
    fn drop(&mut self) {
        lock(&self.ports).flush();
        // Every vCPU handle is gone (each holds the VM), so no guest can
        // touch memory while the bindings are taken apart.
        let mut reg = self.device.registry.lock();
        self.memory.lock().destroy();
        reg.destroy_vm(self.id);
        drop(reg);
        // lendvm's teardown is complete; the kernel's may wait (reaper.rs).
        self.device.reaper.release(self.fd.clone());
    }
}
