//! The device: `/dev/kvm`, what it supports, and the registry its VMs
//! share. A device is the scope of guest memory files: a file's ranges are
//! exclusive across the VMs of the device that made it (SPEC B-ADD-9), and
//! it binds into that device's VMs only.

use std::sync::{Arc, OnceLock};

use binding::FileId;
use gmem::{GuestMemFile, GuestMemfdSupport};
use kvm_bindings::CpuId;
use kvm_ioctls::{Cap, Kvm};

use crate::error::{Error, Result};
use crate::reaper::Reaper;
use crate::registry::{Reclaimer, Registry};
use crate::vm::Vm;

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
    /// Size of a vCPU's `kvm_run` mapping.
    pub vcpu_mmap_size: usize,
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
    /// not pay it, memory installed later (demand paging) does. A VM
    /// without one never pays it. (Closing a VM soon after waits for the
    /// same grace periods; its device does that in the background.)
    pub irqchip: bool,
    /// The VM may enter lendvm's native mode, so it gets lendvm's system
    /// region (GDT, IDT, TSS, page tables at `native_abi::SYSTEM_REGION_BASE`),
    /// installed at creation, before any interrupt controller exists.
    /// Default: yes. VMs that boot PVH or Linux kernels bring their own
    /// tables and leave the whole address space to the guest (DESIGN D12).
    pub native: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            irqchip: true,
            native: true,
        }
    }
}

/// `/dev/kvm`, opened and probed, with the registry of every guest memory
/// file and VM made through it. Opening a device makes the process
/// non-dumpable (DESIGN D11): no core dump, and no other process of the
/// same user can read its memory through `/proc` or ptrace.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

pub(crate) struct DeviceInner {
    pub(crate) kvm: Kvm,
    pub(crate) caps: Capabilities,
    cpuid: OnceLock<std::result::Result<CpuId, i32>>,
    pub(crate) registry: Arc<Registry>,
    /// Closes the KVM files of dropped VMs in the background.
    pub(crate) reaper: Reaper,
}

impl DeviceInner {
    /// `KVM_GET_SUPPORTED_CPUID`, asked once per device.
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

/// DESIGN D11: only a process with CAP_SYS_PTRACE may look inside.
fn make_non_dumpable() -> Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(Error::Kvm {
            op: "prctl(PR_SET_DUMPABLE, 0)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn require(kvm: &Kvm, cap: Cap, what: &'static str) -> Result<()> {
    if kvm.check_extension(cap) {
        Ok(())
    } else {
        Err(Error::HostLacks { what, cap })
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
            return Err(Error::KvmApiVersion { found: api_version });
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
            vcpu_mmap_size: kvm.get_vcpu_mmap_size().map_err(|e| Error::Kvm {
                op: "KVM_GET_VCPU_MMAP_SIZE",
                source: std::io::Error::from_raw_os_error(e.errno()),
            })?,
            readonly_memslots: kvm.check_extension(Cap::ReadonlyMem),
            pvm: std::path::Path::new("/sys/module/kvm_pvm").exists(),
        };
        make_non_dumpable()?;
        Ok(Device {
            inner: Arc::new(DeviceInner {
                kvm,
                caps,
                cpuid: OnceLock::new(),
                registry: Arc::new(Registry::default()),
                reaper: Reaper::default(),
            }),
        })
    }

    /// Wait until the kernel has finished tearing down every VM of this
    /// device that was dropped. A dropped VM's own teardown (bindings,
    /// lent pages, vCPUs) is complete when the drop returns; the last
    /// close of its KVM file, which can wait up to ~16 ms for the kernel,
    /// runs on a background thread (at most 16 at a time). Dropping the
    /// device waits too. Useful before counting descriptors or memory.
    pub fn wait_for_teardown(&self) {
        self.inner.reaper.wait_idle();
    }

    /// What the host supports.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// Create a VM (SPEC B-VM-1: type 0) with the default options.
    pub fn create_vm(&self) -> Result<Vm> {
        Vm::new(self.inner.clone(), VmOptions::default())
    }

    /// Create a VM with explicit options.
    pub fn create_vm_with(&self, options: VmOptions) -> Result<Vm> {
        Vm::new(self.inner.clone(), options)
    }

    /// Create a free-standing guest memory file (the Gunyah model): a
    /// sealed memfd of `size` bytes, bindable into any VM of this device.
    /// `flags` are `binding::file_flags` (SPEC GM-1, GM-2).
    pub fn create_guest_mem(&self, size: u64, flags: u64) -> Result<GuestMem> {
        let registry = &self.inner.registry;
        let mut reg = registry.lock();
        // Validate in the registry first: its errors are the SPEC's.
        let id = reg.bindings.create_file(size, flags)?;
        match GuestMemFile::memfd(size, flags) {
            Ok(file) => Ok(GuestMem::register(&self.inner, file, id)),
            Err(e) => {
                let _ = reg.bindings.close_file(id);
                Err(e.into())
            }
        }
    }
}

/// A guest memory file registered with a device: what
/// [`Device::create_guest_mem`] and [`Vm::create_guest_memfd`] return, and
/// what [`Vm::bind`] binds.
///
/// Dropping it closes the caller's reference; bindings keep the file alive
/// until they are removed (SPEC GM-LT-1).
pub struct GuestMem {
    file: GuestMemFile,
    id: FileId,
    pub(crate) device: Arc<DeviceInner>,
}

impl GuestMem {
    pub(crate) fn register(device: &Arc<DeviceInner>, file: GuestMemFile, id: FileId) -> GuestMem {
        file.set_reclaim_hook(Arc::new(Reclaimer {
            registry: Arc::downgrade(&device.registry),
            file: id,
        }));
        GuestMem {
            file,
            id,
            device: device.clone(),
        }
    }

    /// The file's id in the device's registry.
    pub fn id(&self) -> FileId {
        self.id
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
        let _ = self.device.registry.lock().bindings.close_file(self.id);
    }
}
