//! Why a VM manager call was refused, with the errno the SPEC names for it.
//!
//! Every variant carries the facts of the refusal (ids, labels, guest
//! ranges) as fields, so callers can match on what went wrong; the
//! message is built from them. An underlying error is kept as the
//! variant's source: [`full_message`] renders the whole chain.

use std::ops::Range;

use binding::{FileId, Perms};

use crate::loader::LoadError;
use crate::placement::PlaceError;
use crate::vcpu::exit::Status;

/// A refused VM manager call. Unless a variant says otherwise, nothing was
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binding rule (SPEC §2.5–2.7) refused the call.
    #[error(transparent)]
    Binding(#[from] binding::Error),

    /// A guest memory file operation failed.
    #[error(transparent)]
    Memory(#[from] gmem::Error),

    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// What lendvm asked KVM to do.
        op: &'static str,
        /// KVM's answer.
        #[source]
        source: std::io::Error,
    },

    /// SPEC B-ADD-2, F-5, F-6: the number is not an open file descriptor.
    #[error("file descriptor {0} is not open")]
    BadFd(i32),

    /// SPEC B-ADD-3: the descriptor is open but is not a lendvm guest
    /// memory file (or an eventfd, where one is needed).
    #[error("file descriptor {fd} is not {wanted}")]
    WrongFdKind {
        /// The descriptor.
        fd: i32,
        /// What it should have been.
        wanted: &'static str,
    },

    /// SPEC B-VM-4: a guest range wraps past the end of the address space.
    #[error("{what} [{addr:#x}, +{size:#x}) wraps past the end of the address space")]
    Overflow {
        /// Which range.
        what: &'static str,
        /// Start.
        addr: u64,
        /// Size.
        size: u64,
    },

    /// SPEC R-4: `immediate_exit` was set, or the run was interrupted.
    #[error("the vCPU run was interrupted (immediate_exit set)")]
    Interrupted,

    /// The VM's memslots are all reserved: a binding that could need more
    /// is refused at MAP_MEM, so a guest can never run out of them.
    #[error(
        "the binding needs {needed} more KVM memslots but only {free} are left for this VM (lend bindings reserve one per demand chunk)"
    )]
    NoSlots {
        /// Memslots the operation would reserve.
        needed: usize,
        /// Memslots still free.
        free: usize,
    },

    /// SPEC F-1, B-ADD-1: an argument address could not be read.
    #[error("cannot read {len} bytes of argument at {addr:#x}")]
    Fault {
        /// The address.
        addr: u64,
        /// The length.
        len: usize,
    },

    // ----- EOPNOTSUPP: the host or the VM lacks a feature -------------------------
    /// `/dev/kvm` lacks a capability lendvm needs.
    #[error("this host cannot run lendvm: KVM lacks {what} ({cap:?})")]
    HostLacks {
        /// The feature, in words.
        what: &'static str,
        /// The KVM capability that announces it.
        cap: kvm_ioctls::Cap,
    },

    /// `/dev/kvm` speaks another API version than the stable one (12).
    #[error("this host cannot run lendvm: KVM API version {found}, lendvm needs 12")]
    KvmApiVersion {
        /// The version KVM reported.
        found: i32,
    },

    /// Irqfds need the in-kernel interrupt controller the VM was created
    /// without.
    #[error(
        "irqfds need an interrupt controller, and this VM was created without one (VmOptions::irqchip)"
    )]
    NoIrqchip,

    /// SPEC F-5 lets one eventfd ring several doorbells; KVM lets an
    /// eventfd drive only one interrupt line per VM.
    #[error(
        "this eventfd already drives another irqfd of the VM, so it cannot also ring label {label}: KVM allows one interrupt line per eventfd (use a separate eventfd)"
    )]
    IrqfdEventfdShared {
        /// The label that was refused.
        label: u32,
    },

    /// lendvm's access vCPU left its stub with an exit other than the stub's
    /// own port write.
    #[error(
        "the access vCPU stopped with KVM exit reason {exit_reason} instead of completing its stub"
    )]
    AccessVcpuStopped {
        /// The KVM exit reason (`KVM_EXIT_*`).
        exit_reason: u32,
    },

    // ----- EINVAL: a bad argument, or a call at the wrong time --------------------
    /// SPEC B-VM-6 (and lendvm's own configuration calls): allowed only
    /// before START.
    #[error("{what} is only allowed before START")]
    OnlyBeforeStart {
        /// The refused configuration step.
        what: &'static str,
    },

    /// SPEC B-VM-6: an X register index beyond what this VM takes.
    #[error(
        "register X{index} does not exist: this VM takes X0..X{} (X0..X15 are RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15)",
        .count - 1
    )]
    NoSuchXRegister {
        /// The index asked for.
        index: u32,
        /// How many X registers this VM takes.
        count: u32,
    },

    /// SPEC B-VM-6: the PC or SP register set has no such index.
    #[error("register set {set} has no index {index}")]
    NoSuchRegisterIndex {
        /// The register set.
        set: u32,
        /// The index asked for.
        index: u32,
    },

    /// SPEC B-VM-6: the register number names no register set (or has bits
    /// above 16).
    #[error(
        "boot context register {reg:#x} is in no register set: a register is (set << 8) | index with the sets X (0), PC (1) and SP (2)"
    )]
    UnknownRegisterSet {
        /// The register number as given.
        reg: u32,
    },

    /// SPEC B-VM-3.2: START without SET_DTB_CONFIG.
    #[error("no DTB location was set (SET_DTB_CONFIG)")]
    NoDtb,

    /// SPEC B-VM-3.2 (DTB), B-VM-7 (user region): a size of 0.
    #[error("the {what} size is 0")]
    Empty {
        /// What is empty.
        what: &'static str,
    },

    /// A PVH or Linux guest wakes its other vCPUs with INIT/SIPI, which
    /// needs the in-kernel LAPIC.
    #[error(
        "a PVH or Linux guest with several vCPUs ({vcpus}) needs an interrupt controller (VmOptions::irqchip)"
    )]
    SmpBootWithoutIrqchip {
        /// The VM's vCPUs.
        vcpus: usize,
    },

    /// lendvm's native mode needs the system region the VM does not have.
    #[error(
        "the VM has no lendvm system region (created with VmOptions::native off, or a PVH/Linux boot mode was chosen earlier): it cannot enter lendvm's native mode"
    )]
    NoNativeRegion,

    /// Gunyah's resource manager hands the DTB over with full access: a
    /// lend binding holding it must allow it (TV bad_dtb_access).
    #[error("the DTB lies in a lend binding with permissions {perms}: it needs rwx")]
    DtbPerms {
        /// The binding's permissions.
        perms: Perms,
    },

    /// A guest memory file binds only into VMs of the device that made it.
    #[error(
        "guest memory file {file} belongs to another device: it binds into that device's VMs only"
    )]
    ForeignGuestMem {
        /// The file.
        file: FileId,
    },

    /// SPEC F-3: a vCPU id KVM cannot create (lendvm keeps the last one
    /// for its access vCPU).
    #[error(
        "vCPU id {id} is out of range: this host's KVM allows ids below {limit}, and lendvm keeps the last one for itself"
    )]
    VcpuIdOutOfRange {
        /// The id asked for.
        id: u32,
        /// Ids must be below this.
        limit: u64,
    },

    /// SPEC F-5: the irqfd label has no interrupt line on x86.
    #[error(
        "irqfd label {label} has no interrupt line on x86: labels are 0..{labels} (the IOAPIC inputs)"
    )]
    IrqfdLabelOutOfRange {
        /// The label asked for.
        label: u32,
        /// Labels must be below this.
        labels: u32,
    },

    /// SPEC F-6: `len` ∉ {0, 1, 2, 4, 8}.
    #[error("ioeventfd length {len} is not 0, 1, 2, 4 or 8")]
    IoeventfdLength {
        /// The length asked for.
        len: u32,
    },

    /// SPEC F-6 (`addr + len` wraps), B-VM-7: a range wraps where the SPEC
    /// names EINVAL (not EOVERFLOW as for [`Error::Overflow`]).
    #[error("{what} [{addr:#x}, +{size:#x}) wraps past the end of the address space")]
    Wraps {
        /// Which range.
        what: &'static str,
        /// Start.
        addr: u64,
        /// Size.
        size: u64,
    },

    /// SPEC F-6: DATAMATCH with length 0.
    #[error("an ioeventfd with DATAMATCH needs a length of 1, 2, 4 or 8")]
    DatamatchWithoutLength,

    /// SPEC B-VM-7, F-5, F-6: flag bits outside the known ones.
    #[error("{what} flags {flags:#x} include unknown bits: only {known} exist")]
    UnknownFlags {
        /// Whose flags.
        what: &'static str,
        /// The flags as given.
        flags: u32,
        /// The known flags, in words.
        known: &'static str,
    },

    /// SPEC B-VM-7: a user region grants no access at all.
    #[error("a {what} must grant some of R, W, X")]
    NoPermissions {
        /// What grants nothing.
        what: &'static str,
    },

    /// SPEC B-VM-7: an address or size that is not a whole number of pages.
    #[error("{what} {value:#x} is not page-aligned")]
    NotPageAligned {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },

    /// SPEC B-VM-1: CREATE_VM's type must be 0.
    #[error("VM type {vm_type} is not supported: the only VM type is 0")]
    UnknownVmType {
        /// The type asked for.
        vm_type: u64,
    },

    /// SPEC GM-3, B-VM-6: a reserved word is not 0.
    #[error("{what} reserved word{} is {value:#x}: reserved words must be 0", word_index(*.index))]
    ReservedNotZero {
        /// Whose reserved word.
        what: &'static str,
        /// Which word, where there are several.
        index: Option<usize>,
        /// Its value.
        value: u64,
    },

    /// Gunyah's resource manager takes the DTB only from RAM, not from
    /// the platform's MMIO range (compat profile).
    #[error(
        "the DTB at {addr:#x} lies in the platform's MMIO range [{:#x}, {:#x}): Gunyah's resource manager takes it only from RAM",
        .mmio.start, .mmio.end
    )]
    DtbInPlatformMmio {
        /// The DTB's guest address.
        addr: u64,
        /// The platform's MMIO range.
        mmio: Range<u64>,
    },

    /// Gunyah's resource manager refuses a DTB whose binding does not allow
    /// execution (compat profile).
    #[error(
        "the binding that holds the DTB at {addr:#x} does not allow execution: Gunyah's resource manager refuses it"
    )]
    DtbNotExecutable {
        /// The DTB's guest address.
        addr: u64,
    },

    /// SPEC F-3, F-5, F-6: a function argument of the wrong size.
    #[error("{what} argument size {size} is wrong: it must be {want}")]
    ArgSize {
        /// Which function type.
        what: &'static str,
        /// The size given.
        size: u32,
        /// The size it must be.
        want: usize,
    },

    /// SPEC F-1: a function argument larger than the limit.
    #[error("function argument size {size} exceeds the limit of {limit}")]
    ArgTooLarge {
        /// The size given.
        size: u32,
        /// The limit.
        limit: u32,
    },

    /// SPEC R-8: `mmio.resume_action` is none of the three.
    #[error("resume action {action} is not HANDLED (0), FAULT (1) or RETRY (2)")]
    BadResumeAction {
        /// The value given.
        action: u8,
    },

    /// A boot structure or image part could not be written into guest
    /// memory.
    #[error("cannot write the {what} at {gpa:#x}")]
    GuestWrite {
        /// What was being written.
        what: &'static str,
        /// Where.
        gpa: u64,
        /// Why the write failed.
        #[source]
        source: Box<Error>,
    },

    /// Standard boots put their structures below 1 MiB and the kernel at
    /// 1 MiB.
    #[error("standard boots need guest RAM bound from address 0 past 1 MiB")]
    NoLowRam,

    /// A kernel, initrd or command line does not fit in guest RAM.
    #[error(transparent)]
    Place(#[from] PlaceError),

    /// The image is malformed or does not fit the VM.
    #[error(transparent)]
    Load(#[from] LoadError),

    /// A PVH boot of an ELF without the Xen PVH entry note.
    #[error("the image has no PVH entry note")]
    NoPvhNote,

    /// The memory map has more entries than its table holds.
    #[error("{entries} memory map entries do not fit in {table} (at most {max})")]
    TooManyMapEntries {
        /// Entries in the map.
        entries: usize,
        /// Entries the table holds.
        max: u64,
        /// Which table.
        table: &'static str,
    },

    /// linux-loader could not load the bzImage.
    #[error("linux-loader refused the bzImage")]
    BzImageLoad {
        /// linux-loader's reason.
        #[source]
        source: linux_loader::loader::Error,
    },

    /// The kernel unpacks past the end of low guest RAM.
    #[error("the kernel needs RAM up to {needs:#x} to unpack, guest RAM ends at {ram_end:#x}")]
    NoRoomToUnpack {
        /// The end of the kernel's unpacked image.
        needs: u64,
        /// The end of low guest RAM.
        ram_end: u64,
    },

    /// Only lend bindings can be lent ahead of first touch.
    #[error(
        "the binding at [{:#x}, {:#x}) shares its memory: only lend bindings can be lent now",
        .range.start, .range.end
    )]
    LendShared {
        /// The share binding's guest range.
        range: Range<u64>,
    },

    /// A host access larger than this host's address space.
    #[error("a host access of {len:#x} bytes is too long")]
    HostAccessTooLong {
        /// The access length.
        len: u64,
    },

    /// vm-memory cannot describe a host-accessible guest range.
    #[error("guest range at {gpa:#x} cannot be described to vm-memory")]
    HostRegion {
        /// The range's guest address.
        gpa: u64,
    },

    /// vm-memory cannot map the VM's host-accessible memory.
    #[error("the VM's memory cannot be mapped")]
    HostMap {
        /// vm-memory's reason.
        #[source]
        source: vm_memory::GuestRegionCollectionError,
    },

    /// The access vCPU's stubs move 1, 2, 4 or 8 bytes.
    #[error("the access vCPU moves 1, 2, 4 or 8 bytes at a time, not {len}")]
    AccessWidth {
        /// The length asked for.
        len: usize,
    },

    // ----- EEXIST: something with this identity already exists -------------------
    /// SPEC F-3: a vCPU with this id exists.
    #[error("vCPU {id} already exists")]
    VcpuExists {
        /// The vCPU id.
        id: u32,
    },

    /// SPEC F-5: an irqfd has this label.
    #[error("irqfd label {label} is already registered")]
    IrqfdLabelTaken {
        /// The label.
        label: u32,
    },

    /// SPEC F-6: an ioeventfd conflicting with the new one exists.
    #[error(
        "an ioeventfd at {addr:#x} (length {len}, {}) already covers this one",
        matching(*.datamatch)
    )]
    IoeventfdExists {
        /// The existing ioeventfd's address.
        addr: u64,
        /// Its length (0: any).
        len: u32,
        /// Its DATAMATCH value, if it has one.
        datamatch: Option<u64>,
    },

    /// SPEC B-VM-7: a user region has this label.
    #[error("user region label {label} is taken")]
    RegionLabelTaken {
        /// The label.
        label: u32,
    },

    /// SPEC B-VM-7 (and lendvm's reserved ranges): a guest range overlaps
    /// another that excludes it.
    #[error(
        "{what} [{:#x}, {:#x}) overlaps {other} [{:#x}, {:#x})",
        .range.start, .range.end, .other_range.start, .other_range.end
    )]
    Overlaps {
        /// What was being added.
        what: &'static str,
        /// Its guest range.
        range: Range<u64>,
        /// What is in the way.
        other: &'static str,
        /// Its guest range.
        other_range: Range<u64>,
    },

    // ----- ENOENT: nothing matches ------------------------------------------------
    /// SPEC F-2: no vCPU has this id.
    #[error("no vCPU has id {id}")]
    NoVcpu {
        /// The id.
        id: u32,
    },

    /// SPEC F-2, F-5: no irqfd has this label.
    #[error("no irqfd has label {label}")]
    NoIrqfd {
        /// The label.
        label: u32,
    },

    /// SPEC F-2, F-6: no ioeventfd matches.
    #[error("no ioeventfd matches address {addr:#x}, length {len}")]
    NoIoeventfd {
        /// The address asked for.
        addr: u64,
        /// The length asked for.
        len: u32,
    },

    /// SPEC F-1: an unknown function type.
    #[error("unknown function type {kind}")]
    UnknownFunction {
        /// The type asked for.
        kind: u32,
    },

    /// A guest address no binding covers.
    #[error("guest address {gpa:#x} is not bound to any guest memory file")]
    NotBound {
        /// The guest address.
        gpa: u64,
    },

    /// A range to lend ahead of first touch is not all bound.
    #[error(
        "guest address {gpa:#x} is not bound: [{:#x}, {:#x}) cannot be lent",
        .range.start, .range.end
    )]
    NotBoundForLend {
        /// The first unbound guest address.
        gpa: u64,
        /// The range to lend.
        range: Range<u64>,
    },

    /// SPEC B-VM-3.2: the DTB does not lie inside one binding.
    #[error(
        "the DTB [{:#x}, {:#x}) does not lie inside one binding",
        .range.start, .range.end
    )]
    DtbOutsideBinding {
        /// The DTB's pages.
        range: Range<u64>,
    },

    /// SPEC F-2 (B-RM-2): an unmap that matches no binding.
    #[error("the unmap plan removes nothing")]
    NothingToUnmap,

    // ----- EBUSY: the resource is in use -----------------------------------------
    /// SPEC B-VM-4, B-VM-5: a location fixed at START.
    #[error("the {what} location cannot change after START")]
    FixedAfterStart {
        /// Which location.
        what: &'static str,
    },

    /// SPEC GM-MM-6: a host view covers pages that would be lent.
    #[error(
        "the host has a view of guest pages in [{:#x}, {:#x}): they cannot be lent",
        .range.start, .range.end
    )]
    HostViewOverLend {
        /// The guest range with the view.
        range: Range<u64>,
    },

    /// SPEC B-VM-3.4, GM-MM-6: a host view covers the DTB's pages at START.
    #[error(
        "the host has a view of the DTB pages [{:#x}, {:#x}): they cannot be lent at START",
        .range.start, .range.end
    )]
    HostViewOverDtb {
        /// The DTB's pages.
        range: Range<u64>,
    },

    /// A KVM memslot already covers part of the guest range.
    #[error(
        "guest range [{:#x}, {:#x}) is already installed in KVM slot {slot} [{:#x}, {:#x})",
        .range.start, .range.end, .slot_range.start, .slot_range.end
    )]
    SlotOccupied {
        /// The range to install.
        range: Range<u64>,
        /// The slot in the way.
        slot: u32,
        /// Its guest range.
        slot_range: Range<u64>,
    },

    // ----- ENODEV: the VM or vCPU cannot run ----------------------------------------
    /// SPEC R-2: the vCPU's function was removed.
    #[error("vCPU {id} was removed")]
    VcpuRemoved {
        /// The vCPU id.
        id: u32,
    },

    /// SPEC R-2: RUN before START.
    #[error("the VM has not been started (START)")]
    NotStarted,

    /// SPEC B-VM-3.1: START on a VM that ran and stopped.
    #[error("the VM has stopped ({status:?}) and cannot start again")]
    Stopped {
        /// Why it stopped.
        status: Status,
    },

    /// SPEC B-VM-3.1, B-VM-3.3: START after a failed START.
    #[error("the VM failed to start earlier: {reason}")]
    StartFailedEarlier {
        /// The earlier failure, as it was reported then.
        reason: String,
    },
}

fn word_index(index: Option<usize>) -> String {
    index.map_or_else(String::new, |i| format!(" {i}"))
}

fn matching(datamatch: Option<u64>) -> String {
    datamatch.map_or_else(|| "any value".to_string(), |v| format!("value {v:#x}"))
}

impl Error {
    /// The Linux errno for this error (positive).
    pub fn errno(&self) -> i32 {
        use Error::*;
        match self {
            Binding(e) => e.errno(),
            Memory(e) => e.errno(),
            Kvm { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            BadFd(_) => libc::EBADF,
            Overflow { .. } => libc::EOVERFLOW,
            Interrupted => libc::EINTR,
            Fault { .. } => libc::EFAULT,
            NoSlots { .. } => libc::ENOSPC,
            HostLacks { .. }
            | KvmApiVersion { .. }
            | NoIrqchip
            | IrqfdEventfdShared { .. }
            | AccessVcpuStopped { .. } => libc::EOPNOTSUPP,
            WrongFdKind { .. }
            | OnlyBeforeStart { .. }
            | NoSuchXRegister { .. }
            | NoSuchRegisterIndex { .. }
            | UnknownRegisterSet { .. }
            | NoDtb
            | Empty { .. }
            | SmpBootWithoutIrqchip { .. }
            | NoNativeRegion
            | DtbPerms { .. }
            | ForeignGuestMem { .. }
            | VcpuIdOutOfRange { .. }
            | IrqfdLabelOutOfRange { .. }
            | IoeventfdLength { .. }
            | Wraps { .. }
            | DatamatchWithoutLength
            | UnknownFlags { .. }
            | NoPermissions { .. }
            | NotPageAligned { .. }
            | UnknownVmType { .. }
            | ReservedNotZero { .. }
            | DtbInPlatformMmio { .. }
            | DtbNotExecutable { .. }
            | ArgSize { .. }
            | ArgTooLarge { .. }
            | BadResumeAction { .. }
            | GuestWrite { .. }
            | NoLowRam
            | Place(_)
            | Load(_)
            | NoPvhNote
            | TooManyMapEntries { .. }
            | BzImageLoad { .. }
            | NoRoomToUnpack { .. }
            | LendShared { .. }
            | HostAccessTooLong { .. }
            | HostRegion { .. }
            | HostMap { .. }
            | AccessWidth { .. } => libc::EINVAL,
            VcpuExists { .. }
            | IrqfdLabelTaken { .. }
            | IoeventfdExists { .. }
            | RegionLabelTaken { .. }
            | Overlaps { .. } => libc::EEXIST,
            NoVcpu { .. }
            | NoIrqfd { .. }
            | NoIoeventfd { .. }
            | UnknownFunction { .. }
            | NotBound { .. }
            | NotBoundForLend { .. }
            | DtbOutsideBinding { .. }
            | NothingToUnmap => libc::ENOENT,
            FixedAfterStart { .. }
            | HostViewOverLend { .. }
            | HostViewOverDtb { .. }
            | SlotOccupied { .. } => libc::EBUSY,
            VcpuRemoved { .. } | NotStarted | Stopped { .. } | StartFailedEarlier { .. } => {
                libc::ENODEV
            }
        }
    }

    /// The ioctl-style return value: `-errno`.
    pub fn to_ret(&self) -> i32 {
        -self.errno()
    }

    pub(crate) fn kvm(op: &'static str, e: kvm_ioctls::Error) -> Error {
        Error::Kvm {
            op,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }
}

/// An error's message followed by those of its sources, joined by ": ",
/// each source left out when the text so far already says it (some
/// messages quote their source). For reports that must say everything on
/// one line, such as the CLI's.
pub fn full_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// Result of VM manager calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
