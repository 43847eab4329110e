//! The device: `/dev/kvm`, what it supports, and the state every VM of this
//! process shares. The binding registry is process-wide: guest memory files
//! are named by descriptor numbers, which are process-wide, and their file
//! ranges are exclusive across every VM (SPEC B-ADD-9), as in Gunyah where
//! one driver serves every open of the device.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use binding::FileId;
use gmem::{GuestMemFile, GuestMemfdSupport, LentRange, ReclaimHook};
use kvm_bindings::CpuId;
use kvm_ioctls::{Cap, Kvm};

use crate::memory::State;
use crate::{Error, Result, Vm};

/// What this host's KVM offers, probed once when the device is opened.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// `KVM_GET_API_VERSION` (12 on every supported kernel).
    pub api_version: i32,
    /// `KVM_CREATE_GUEST_MEMFD` and its supported flags.
    pub guest_memfd: GuestMemfdSupport,
    /// Memslots per address space.
    pub memslots: usize,
    /// Recommended and maximum vCPUs per VM.
    pub max_vcpus: usize,
    /// Largest vCPU id + 1.
    pub max_vcpu_id: usize,
    /// Read-only memslots (used to enforce no-write on memfd bindings).
    pub readonly_memslots: bool,
    /// The KVM backend is PVM (no VMX/SVM): CPL0 guest code is emulated.
    pub pvm: bool,
}

/// How to create a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmOptions {
    /// Give the VM KVM's in-kernel interrupt controller (LAPIC, IOAPIC,
    /// PIC), which irqfds and SMP standard guests need. Default: yes. It
    /// is created at the first vCPU or irqfd, because on this project's
    /// hosts KVM's first memslot change after creating it waits about 7 ms
    /// for an SRCU grace period (measured): memory bound before then does
    /// not pay it, memory installed later (demand paging, lendvm's system
    /// region) does. A VM without one never pays it.
    pub irqchip: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions { irqchip: true }
    }
}

/// `/dev/kvm`, opened and probed.
#[derive(Clone)]
pub struct Device {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) kvm: Kvm,
    pub(crate) caps: Capabilities,
    cpuid: OnceLock<std::result::Result<CpuId, i32>>,
}

impl Shared {
    /// The one lock over the registry, files and every VM's memslots.
    /// Lock order: this lock, then a guest memory file's own lock.
    pub(crate) fn lock(&self) -> MutexGuard<'static, State> {
        static STATE: Mutex<State> = Mutex::new(State::new());
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `KVM_GET_SUPPORTED_CPUID`, asked once per process.
    pub(crate) fn supported_cpuid(&self) -> Result<CpuId> {
        self.cpuid
            .get_or_init(|| {
                self.kvm
                    .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
                    .map_err(|e| e.errno())
            })
            .clone()
            .map_err(|errno| Error::Kvm {
                op: "KVM_GET_SUPPORTED_CPUID",
                source: std::io::Error::from_raw_os_error(errno),
            })
    }
}

fn require(kvm: &Kvm, cap: Cap, what: &str) -> Result<()> {
    if kvm.check_extension(cap) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("KVM lacks {what} ({cap:?})")))
    }
}

impl Device {
    /// Open `/dev/kvm` and check that it has what lendvm needs.
    pub fn open() -> Result<Device> {
        let kvm = Kvm::new().map_err(|e| Error::Kvm {
            op: "open /dev/kvm",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let api_version = kvm.get_api_version();
        if api_version != 12 {
            return Err(Error::Unsupported(format!(
                "KVM API version {api_version}, lendvm needs 12"
            )));
        }
        require(&kvm, Cap::UserMemory, "user memory regions")?;
        require(&kvm, Cap::SyncRegs, "synchronised registers")?;
        require(&kvm, Cap::ImmediateExit, "immediate_exit")?;
        require(&kvm, Cap::Irqfd, "irqfd")?;
        require(&kvm, Cap::Ioeventfd, "ioeventfd")?;
        require(&kvm, Cap::Irqchip, "an in-kernel irqchip")?;
        let gmem_available = kvm.check_extension_raw(gmem::KVM_CAP_GUEST_MEMFD.into()) > 0;
        let guest_memfd = GuestMemfdSupport {
            available: gmem_available,
            flags: if gmem_available {
                u64::try_from(kvm.check_extension_raw(gmem::KVM_CAP_GUEST_MEMFD_FLAGS.into()))
                    .unwrap_or(0)
            } else {
                0
            },
        };
        let caps = Capabilities {
            api_version,
            guest_memfd,
            memslots: kvm.get_nr_memslots(),
            max_vcpus: kvm.get_max_vcpus(),
            max_vcpu_id: kvm.get_max_vcpu_id(),
            readonly_memslots: kvm.check_extension(Cap::ReadonlyMem),
            pvm: std::path::Path::new("/sys/module/kvm_pvm").exists(),
        };
        Ok(Device {
            shared: Arc::new(Shared {
                kvm,
                caps,
                cpuid: OnceLock::new(),
            }),
        })
    }

    /// What the host supports.
    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.caps
    }

    /// Create a VM (SPEC B-VM-1: type 0) with the default options.
    pub fn create_vm(&self) -> Result<Vm> {
        Vm::new(self.shared.clone(), VmOptions::default())
    }

    /// Create a VM with explicit options.
    pub fn create_vm_with(&self, options: VmOptions) -> Result<Vm> {
        Vm::new(self.shared.clone(), options)
    }

    /// Create a VM with a raw type argument: anything but 0 is EINVAL
    /// (SPEC B-VM-1).
    pub fn create_vm_with_type(&self, vm_type: u64) -> Result<Vm> {
        if vm_type != 0 {
            return Err(Error::Invalid(format!(
                "VM type {vm_type} is not supported: the only VM type is 0"
            )));
        }
        self.create_vm()
    }

    /// Create a free-standing guest memory file (the Gunyah model): a
    /// sealed memfd of `size` bytes, bindable into any VM of this device.
    /// `flags` are `binding::file_flags` (SPEC GM-1, GM-2).
    pub fn create_guest_mem(&self, size: u64, flags: u64) -> Result<GuestMem> {
        let mut st = self.shared.lock();
        // Validate in the registry first: its errors are the SPEC's.
        let id = st.bindings.create_file(size, flags)?;
        let file = match GuestMemFile::memfd(size, flags) {
            Ok(f) => f,
            Err(e) => {
                let _ = st.bindings.close_file(id);
                return Err(e.into());
            }
        };
        Ok(GuestMem::register(&self.shared, &mut st, file, id))
    }
}

impl Device {
    /// Create a free-standing guest memory file whose size may change
    /// later ([`GuestMem::resize`]): the Gunyah compat profile's guest
    /// memory (DESIGN D13). `size` and `flags` follow SPEC GM-1/GM-2 as in
    /// [`Device::create_guest_mem`]; `capacity` bounds growth (lendvm maps
    /// that much address space for KVM up front, but allocates nothing).
    /// The descriptor is not sealed, so a program holding it can also
    /// resize it with `ftruncate(2)` behind lendvm's back; only the
    /// preload library, which interposes that call, hands it out.
    pub fn create_resizable_guest_mem(
        &self,
        size: u64,
        capacity: u64,
        flags: u64,
    ) -> Result<GuestMem> {
        let mut st = self.shared.lock();
        let id = st.bindings.create_file(size, flags)?;
        let file = match GuestMemFile::memfd_resizable(size, capacity.max(size), flags) {
            Ok(f) => f,
            Err(e) => {
                let _ = st.bindings.close_file(id);
                return Err(e.into());
            }
        };
        Ok(GuestMem::register(&self.shared, &mut st, file, id))
    }
}

impl GuestMem {
    /// The file's current size: what MAP_MEM checks ranges against
    /// (SPEC B-ADD-8). For a resizable file this can be less than
    /// [`GuestMemFile::size`], its capacity.
    pub fn current_size(&self) -> u64 {
        let st = self.shared.lock();
        st.bindings.file_info(self.id).map_or(0, |info| info.size)
    }

    /// `ftruncate(2)`: grow or shrink a file made by
    /// [`Device::create_resizable_guest_mem`] to `size` bytes. Shrinking
    /// below the end of a bound range is EBUSY (SPEC GM-7), growing past
    /// the capacity EFBIG; other files refuse any change (the kernel's
    /// errno). On error nothing changed.
    pub fn resize(&self, size: u64) -> Result<()> {
        let mut st = self.shared.lock();
        // The registry decides (and records) first; the file follows under
        // the same lock, so no binding can slip in between.
        let old = st.bindings.set_file_size(self.id, size)?;
        if let Err(e) = self.file.set_len(size) {
            // Back to a size the registry held a moment ago: never refused.
            let _ = st.bindings.set_file_size(self.id, old);
            return Err(e.into());
        }
        Ok(())
    }

    /// `fallocate(2)` with SPEC §2.2's rules measured against the file's
    /// current size ([`GuestMem::current_size`]): allocating past it is
    /// EINVAL; punch hole ignores what lies past it and refuses lent pages
    /// with EBUSY (DESIGN D10).
    pub fn fallocate_current(&self, mode: i32, offset: u64, len: u64) -> Result<()> {
        // Hold the registry lock so the size cannot change meanwhile (lock
        // order: registry, then the file's own lock).
        let st = self.shared.lock();
        let size = st.bindings.file_info(self.id).map_or(0, |info| info.size);
        self.file.fallocate_within(size, mode, offset, len)?;
        Ok(())
    }
}

/// A guest memory file registered with the VM manager: what
/// [`Device::create_guest_mem`] and [`Vm::create_guest_memfd`] return. Its
/// descriptor number is what `gunyah_map_mem_args::guest_mem_fd` names.
///
/// Dropping it closes the caller's reference; bindings keep the file alive
/// until they are removed (SPEC GM-LT-1).
pub struct GuestMem {
    file: GuestMemFile,
    id: FileId,
    shared: Arc<Shared>,
}

impl GuestMem {
    pub(crate) fn register(
        shared: &Arc<Shared>,
        st: &mut State,
        file: GuestMemFile,
        id: FileId,
    ) -> GuestMem {
        file.set_reclaim_hook(Arc::new(Reclaimer {
            shared: Arc::downgrade(shared),
            file: id,
        }));
        st.add_file(id, file.clone());
        GuestMem {
            file,
            id,
            shared: shared.clone(),
        }
    }

    /// The file's id in the binding registry.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The descriptor number, for the raw MAP_MEM argument.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The file itself: host access, views, fallocate, page states.
    pub fn file(&self) -> &GuestMemFile {
        &self.file
    }
}

impl std::ops::Deref for GuestMem {
    type Target = GuestMemFile;
    fn deref(&self) -> &GuestMemFile {
        &self.file
    }
}

impl std::fmt::Debug for GuestMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMem")
            .field("id", &self.id)
            .field("file", &self.file)
            .finish()
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        self.shared.lock().close_file(self.id);
    }
}

/// The VM manager's reclaim hook: take lent pages away from their guests
/// by removing them from the KVM memslots (SPEC L-1).
struct Reclaimer {
    shared: std::sync::Weak<Shared>,
    file: FileId,
}

impl ReclaimHook for Reclaimer {
    fn reclaim(&self, _file: &GuestMemFile, ranges: &[LentRange]) -> gmem::Result<()> {
        let Some(shared) = self.shared.upgrade() else {
            // No device, so no VM can hold the pages any more.
            return Ok(());
        };
        let mut st = shared.lock();
        for r in ranges {
            st.unmap_file_range(r.vm, self.file, r.offset, r.len)
                .map_err(|e| gmem::Error::ReclaimFailed {
                    offset: r.offset,
                    len: r.len,
                    errno: e.errno(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}
