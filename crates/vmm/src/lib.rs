//! The lendvm VM manager on KVM.
//!
//! Real KVM VMs whose memory comes only through bindings of guest memory
//! files, driven by the Gunyah VM API (seed 004): create a VM, bind memory
//! with MAP_MEM (share or lend), add functions (vCPUs, irqfds, ioeventfds),
//! set the boot context and DTB, START, and run vCPUs that return MMIO,
//! PAGE_FAULT and STATUS exits.
//!
//! ```no_run
//! use vmm::{Access, BindRequest, Device, Exit, GuestAddress, Mode, Perms};
//!
//! let dev = Device::open()?;
//! let vm = dev.create_vm()?;
//! let ram = vm.create_guest_memfd(16 << 20, Mode::HostMappable)?;
//! vm.bind(&BindRequest::whole(&ram, GuestAddress(0x10_0000), Access::Lend, Perms::RWX))?;
//! let mut vcpu = vm.add_vcpu(0)?;
//! vm.set_dtb_config(GuestAddress(0x10_0000), 4096)?;
//! vm.start()?;
//! match vcpu.run()? {
//!     Exit::Mmio { phys_addr, .. } => println!("MMIO at {phys_addr:#x}"),
//!     other => println!("{other:?}"),
//! }
//! # Ok::<(), vmm::Error>(())
//! ```
//!
//! Decisions the SPEC leaves open on KVM are DESIGN.md §4's D1–D12; see
//! [`DECISIONS`].

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod boot;
mod compat;
mod device;
pub mod devices;
mod error;
pub mod functions;
pub mod loader;
mod memory;
pub mod placement;
mod ports;
mod reaper;
mod registry;
mod sync;
mod vcpu;
mod vm;
pub mod x86;

/// lendvm's native boot ABI (shared with its guests).
pub use guest_abi::native as native_abi;

pub use device::{Capabilities, Device, GuestMem, VmOptions};
pub use error::{Error, Result, full_message};
pub use functions::Ioevent;
pub use memory::{HostMemory, MAX_CHUNK, MIN_CHUNK, MemoryStats, demand_chunk};
pub use ports::{Console, ConsoleClosed, PortDevice, console_closed};
pub use vcpu::{Crash, Exit, ExitInfo, Kicker, ResumeAction, Status, Vcpu, exit_kind};
pub use vm::{BindRequest, BootMode, BootReg, Function, Location, UserMemRegion, Vm, VmMetrics};

// The types this crate's signatures use, so callers need no other crate.
pub use binding::{
    Access, BindingInfo, Error as BindingError, FileId, MapFlags, PAGE_SIZE, Perms, VmId, map_flags,
};
/// Who enforces each lending guarantee (`lendvm info` shows the matrix),
/// and the guest_memfd flags a host offers.
pub use gmem::{
    ENFORCEMENT, Enforcer, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, Guarantee,
};
pub use gmem::{Error as GuestMemError, GuestMemFile, HostView, Kind, Mode, PageState};
pub use vm_memory::GuestAddress;

/// DESIGN §4: how lendvm settles each question the SPEC leaves open on KVM.
pub const DECISIONS: &[(&str, &str, &str)] = &[
    (
        "D1",
        "access to an unbound guest address",
        "inside the MMIO window (default [3 GiB, 4 GiB)) an MMIO exit; elsewhere a PAGE_FAULT exit with -ENOENT",
    ),
    (
        "D2",
        "when a lend-bound page stops being host-accessible",
        "at the guest's first touch of any page of its demand chunk (the piece of the binding one KVM slot installs: MIN_CHUNK..MAX_CHUNK, see demand_chunk, or the whole binding if smaller); until then the host may use it; a live host view over the chunk at touch time gives PAGE_FAULT -EPERM; untouched pages of a touched chunk count as lent",
    ),
    (
        "D3",
        "permissions KVM cannot enforce",
        "no-write on guest_memfd bindings refused at MAP_MEM (EINVAL); enforced with read-only slots on memfd; no-exec advisory",
    ),
    (
        "D4",
        "host access spanning lent and non-lent pages",
        "refused whole (Error::Lent), no partial data",
    ),
    (
        "D5",
        "content of a lent page when it returns to the host",
        "zeroed first (UNMAP, explicit reclaim, VM teardown); shared pages keep their content",
    ),
    ("D6", "share binding of a private guest_memfd", "EINVAL"),
    (
        "D7",
        "resume action FAULT",
        "the guest receives #PF (vector 14) with CR2 = the guest physical address; no handler: the VM ends CRASHED",
    ),
    (
        "D8",
        "host reclaim",
        "only through an explicit call (GuestMemFile::reclaim), UNMAP or teardown; host access never reclaims",
    ),
    (
        "D9",
        "unknown port I/O",
        "counted and ignored: reads return all ones",
    ),
    (
        "D10",
        "punch hole over lent pages",
        "EBUSY, nothing freed; share-bound and untouched lend-bound pages are freed and read zero",
    ),
    (
        "D11",
        "who besides lendvm could read guest memory in the VMM process",
        "nobody without CAP_SYS_PTRACE: the process is non-dumpable, guest mappings and vCPU run pages are MADV_DONTDUMP and MADV_DONTFORK, and buffers and stack frames that carried guest data while completing an access are wiped; private files stay kernel-enforced even against root; root / CAP_SYS_PTRACE can read host-mappable lent pages",
    ),
    (
        "D12",
        "guest RAM layout for standard boots",
        "below the 32-bit MMIO hole [3 GiB, 4 GiB) and the rest above 4 GiB, as the e820 / PVH memory map says; the native system region exists only in native VMs; the 280 KiB read-only access region (the access vCPU's tables and stubs) sits at the top of the hole in every VM",
    ),
];
