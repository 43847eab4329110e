//! The vocabulary of the `gunyah_abi` target: one [`Op`] per raw Gunyah
//! call (or per setup step around them), each field an `arbitrary`-decoded
//! choice that mixes values near the edges the SPEC names with anything at
//! all. Values are turned into raw numbers here; the harness supplies what
//! only it knows (descriptor numbers, file sizes, its own buffers).

use arbitrary::Arbitrary;
use vmm::native_abi::{MMIO_WINDOW_BASE, SYSTEM_REGION_BASE};

pub const PAGE: u64 = 4096;
pub const MIB: u64 = 1 << 20;

/// A descriptor number for a raw argument.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Fd {
    /// The number file slot `n` holds or held: live in the table, closed
    /// through the table (bindings may keep the file open), or dropped.
    File(u8),
    /// 1_000_000 + n: never open in this process.
    NotOpen(u16),
    /// -1.
    MinusOne,
    /// At or above 2^31 (negative as an `int`).
    Negative(u32),
    /// The process's eventfd.
    Event,
    /// The process's regular (unlinked temporary) file.
    Regular,
    /// 0, 1 or 2.
    Std(u8),
    /// Anything.
    Raw(u32),
}

/// A guest physical address, mostly near another one so that ranges meet.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// Pages from 0 (wrapped to 4 MiB).
    Low(u16),
    /// Pages from 2 GiB (the compat profile's RAM).
    Ram(u16),
    /// Pages from the native MMIO window's base.
    Mmio(u16),
    /// Pages around lendvm's system region.
    System(i8),
    /// Pages from 4 GiB.
    High(u16),
    /// Pages below 2^64.
    NearTop(u8),
    /// A `Ram` address plus 1..4095 bytes.
    Unaligned(u16, u16),
    /// Anything.
    Raw(u64),
}

impl Addr {
    pub fn value(self) -> u64 {
        let pages = |p: u16| u64::from(p % 1024) * PAGE;
        match self {
            Addr::Low(p) => pages(p),
            Addr::Ram(p) => 0x8000_0000 + pages(p),
            Addr::Mmio(p) => MMIO_WINDOW_BASE + pages(p),
            Addr::System(d) => SYSTEM_REGION_BASE.wrapping_add_signed(i64::from(d) * PAGE as i64),
            Addr::High(p) => (4 << 30) + pages(p),
            Addr::NearTop(n) => 0u64.wrapping_sub((u64::from(n) + 1) * PAGE),
            Addr::Unaligned(p, b) => 0x8000_0000 + pages(p) + 1 + u64::from(b % 4095),
            Addr::Raw(v) => v,
        }
    }
}

/// A length or file offset.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Len {
    /// 0..=255 pages.
    Pages(u8),
    /// 0..=64 MiB in whole MiB.
    Mib(u8),
    /// The whole file the call names (its size), or 1 MiB.
    Whole,
    /// Under 64 KiB, any byte count.
    Bytes(u16),
    /// Close to 2^64.
    NearTop(u8),
    /// Anything.
    Raw(u64),
}

impl Len {
    pub fn value(self, whole: u64) -> u64 {
        match self {
            Len::Pages(p) => u64::from(p) * PAGE,
            Len::Mib(m) => u64::from(m % 65) * MIB,
            Len::Whole => whole,
            Len::Bytes(b) => u64::from(b),
            Len::NearTop(n) => 0u64.wrapping_sub(u64::from(n) * PAGE),
            Len::Raw(v) => v,
        }
    }
}

/// MAP_MEM flags: mostly well-formed in the chosen encoding.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum MapFlagsSel {
    /// `access`: 0 default, 1 lend, 2 share, 3 an invalid access value;
    /// `perms`: R/W/X bits (0 = none).
    Valid {
        access: u8,
        perms: u8,
        unmap: bool,
    },
    Raw(u32),
}

impl MapFlagsSel {
    pub fn encode(self, upstream: bool) -> u32 {
        match self {
            MapFlagsSel::Raw(v) => v,
            MapFlagsSel::Valid {
                access,
                perms,
                unmap,
            } => {
                let perms = u32::from(perms & 7);
                let access = match access % 4 {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    _ => 3 + u32::from(access / 4 % 5), // 3..7
                };
                let unmap = if unmap { 1 << 8 } else { 0 };
                if upstream {
                    access | (perms << 4) | unmap
                } else {
                    (access << 4) | perms | unmap
                }
            }
        }
    }
}

/// CREATE_GUEST_MEM's `flags`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FileFlags {
    None,
    Cloexec,
    HugePage,
    Both,
    Raw(u64),
}

impl FileFlags {
    pub fn value(self) -> u64 {
        match self {
            FileFlags::None => 0,
            FileFlags::Cloexec => 1,
            FileFlags::HugePage => 2,
            FileFlags::Both => 3,
            FileFlags::Raw(v) => v,
        }
    }
}

/// CREATE_GUEST_MEM's `size`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FileSize {
    /// 1..=256 pages.
    Pages(u8),
    /// 1..=64 MiB.
    Mib(u8),
    Zero,
    /// Anything under 4 GiB (mostly not whole pages).
    Bytes(u32),
    /// 2^(40 + n % 24): created (or refused) and dropped at once, never bound.
    Huge(u8),
}

impl FileSize {
    pub fn value(self) -> u64 {
        match self {
            FileSize::Pages(p) => (u64::from(p) + 1) * PAGE,
            FileSize::Mib(m) => (u64::from(m % 64) + 1) * MIB,
            FileSize::Zero => 0,
            FileSize::Bytes(b) => u64::from(b),
            FileSize::Huge(n) => 1 << (40 + u32::from(n % 24)),
        }
    }
}

/// The six reserved words of CREATE_GUEST_MEM.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Reserved {
    Zero,
    One { index: u8, value: u64 },
}

impl Reserved {
    pub fn words(self) -> [u64; 6] {
        let mut w = [0; 6];
        if let Reserved::One { index, value } = self {
            w[usize::from(index % 6)] = value;
        }
        w
    }
}

/// A vCPU id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum VcpuId {
    /// 0..=3.
    Small(u8),
    /// The id lendvm keeps for itself (the host's last one).
    Reserved,
    /// The host's limit (never valid).
    Limit,
    Raw(u32),
}

/// An ADD/REMOVE_FUNCTION argument, serialised into the harness's buffer.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArgSel {
    Vcpu(VcpuId),
    Irqfd {
        fd: Fd,
        /// `% 32` unless `raw_label`.
        label: u8,
        raw_label: Option<u32>,
        flags: u8,
    },
    Ioevent {
        datamatch: u64,
        addr: Addr,
        len: u8,
        fd: Fd,
        flags: u8,
    },
    /// Up to 300 bytes of anything.
    Bytes(Vec<u8>),
}

/// `type_` of a function descriptor.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FnType {
    Vcpu,
    Irqfd,
    Ioeventfd,
    Raw(u32),
}

impl FnType {
    pub fn value(self) -> u32 {
        match self {
            FnType::Vcpu => uapi::GUNYAH_FN_VCPU,
            FnType::Irqfd => uapi::GUNYAH_FN_IRQFD,
            FnType::Ioeventfd => uapi::GUNYAH_FN_IOEVENTFD,
            FnType::Raw(v) => v,
        }
    }
}

/// `arg_size` of a function descriptor.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArgSize {
    /// The serialised argument's own size.
    Natural,
    /// 0..=300.
    Raw(u16),
}

/// Where `arg` points.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Ptr {
    /// The start of the harness's argument page.
    Buffer,
    /// The argument ends where the page does; an unreadable page follows.
    GuardEnd,
    /// The page's start plus -8192..8191 bytes: the page or the
    /// unreadable pages around it.
    Near(i16),
    Null,
    /// Below 64 KiB (never mapped).
    Small(u16),
    /// In the kernel's half of the address space.
    Kernel(u64),
    Raw(u64),
}

/// A function descriptor.
#[derive(Arbitrary, Debug, Clone)]
pub struct FnDescSel {
    pub type_: FnType,
    pub arg: ArgSel,
    pub size: ArgSize,
    pub ptr: Ptr,
}

/// SET_BOOT_CONTEXT's `reg`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RegSel {
    X(u8),
    Pc(u8),
    Sp(u8),
    Set(u8, u8),
    Raw(u32),
}

impl RegSel {
    pub fn value(self) -> u32 {
        let reg = |set: u32, index: u8| (set << 8) | u32::from(index);
        match self {
            RegSel::X(i) => reg(uapi::REG_SET_X, i % 40),
            RegSel::Pc(i) => reg(uapi::REG_SET_PC, i % 3),
            RegSel::Sp(i) => reg(uapi::REG_SET_SP, i % 3),
            RegSel::Set(s, i) => reg(u32::from(s), i),
            RegSel::Raw(v) => v,
        }
    }
}

/// A run page's resume action.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Resume {
    Handled,
    Fault,
    Retry,
    Raw(u8),
}

impl Resume {
    pub fn value(self) -> u8 {
        match self {
            Resume::Handled => uapi::GUNYAH_VCPU_RESUME_HANDLED,
            Resume::Fault => uapi::GUNYAH_VCPU_RESUME_FAULT,
            Resume::Retry => uapi::GUNYAH_VCPU_RESUME_RETRY,
            Resume::Raw(v) => v,
        }
    }
}

/// A legacy user memory region over the harness's own memory.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct UserRegionSel {
    /// `% 8`, so labels repeat.
    pub label: u8,
    /// R/W/X (`% 8`) unless `raw_flags`.
    pub perms: u8,
    pub raw_flags: Option<u32>,
    pub guest: Addr,
    /// 1..=8 fresh pages of the harness's memory.
    pub pages: u8,
    /// 0: aligned whole pages; 1: a size that is not whole pages; 2: size
    /// 0; 3: an address that is not page-aligned. (All inside the pages.)
    pub shape: u8,
    pub lend: bool,
}

/// One step of an input.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// CREATE_VM into VM slot `slot % 2` (the old VM there is dropped).
    CreateVm {
        slot: u8,
        vm_type: Option<u64>,
        compat: bool,
    },
    /// CREATE_GUEST_MEM into file slot `slot % 4`.
    CreateMem {
        slot: u8,
        flags: FileFlags,
        size: FileSize,
        reserved: Reserved,
        compat: bool,
    },
    /// A VM-owned guest_memfd (lendvm's typed API) into a file slot: a
    /// descriptor MAP_MEM must refuse for every other VM.
    CreateGuestMemfd {
        slot: u8,
        vm: u8,
        pages: u8,
        private: bool,
    },
    /// Close a file slot's descriptor through the table.
    CloseFile {
        slot: u8,
    },
    /// Host write into a file (so a guest finds code or data there).
    WriteFile {
        slot: u8,
        offset: Len,
        bytes: Vec<u8>,
    },
    MapMem {
        vm: u8,
        fd: Fd,
        guest: Addr,
        offset: Len,
        size: Len,
        flags: MapFlagsSel,
        upstream: bool,
    },
    AddFunction {
        vm: u8,
        desc: FnDescSel,
    },
    RemoveFunction {
        vm: u8,
        desc: FnDescSel,
    },
    SetDtb {
        vm: u8,
        addr: Addr,
        size: Len,
    },
    SetFw {
        vm: u8,
        addr: Addr,
        size: Len,
    },
    SetBootContext {
        vm: u8,
        reg: RegSel,
        reserved: Option<u32>,
        value: u64,
    },
    Start {
        vm: u8,
    },
    /// VCPU_RUN of vCPU handle `vcpu` of VM `vm`; `free` (1 in 4) leaves
    /// `immediate_exit` clear, under a watchdog.
    Run {
        vm: u8,
        vcpu: u8,
        free: u8,
        resume: Resume,
        data: [u8; 8],
        garbage: u64,
    },
    /// Close a vCPU handle.
    DropVcpu {
        vm: u8,
        vcpu: u8,
    },
    /// Drop a VM slot (and its vCPU handles).
    DropVm {
        slot: u8,
    },
    UserMem {
        vm: u8,
        region: UserRegionSel,
    },
    /// The raw calls that make a VM runnable, each checked as its own op:
    /// a 2 MiB file in `slot` holding `code` at 0, bound RWX (lend or
    /// share) at 2 GiB, the DTB in its last page, PC at 2 GiB, vCPU 0,
    /// START. Lets the fuzzer spend its time on what follows.
    Quickstart {
        vm: u8,
        slot: u8,
        lend: bool,
        code: Vec<u8>,
    },
}

impl Op {
    /// The ops [`Op::Quickstart`] stands for.
    pub fn quickstart(vm: u8, slot: u8, lend: bool, code: &[u8]) -> Vec<Op> {
        vec![
            Op::CreateMem {
                slot,
                flags: FileFlags::Cloexec,
                size: FileSize::Mib(1),
                reserved: Reserved::Zero,
                compat: false,
            },
            Op::WriteFile {
                slot,
                offset: Len::Pages(0),
                bytes: code.to_vec(),
            },
            Op::MapMem {
                vm,
                fd: Fd::File(slot),
                guest: Addr::Ram(0),
                offset: Len::Pages(0),
                size: Len::Whole,
                flags: MapFlagsSel::Valid {
                    access: if lend { 1 } else { 2 },
                    perms: 7,
                    unmap: false,
                },
                upstream: false,
            },
            Op::SetDtb {
                vm,
                addr: Addr::Ram(511),
                size: Len::Pages(1),
            },
            Op::SetBootContext {
                vm,
                reg: RegSel::Pc(0),
                reserved: None,
                value: 0x8000_0000,
            },
            Op::AddFunction {
                vm,
                desc: FnDescSel {
                    type_: FnType::Vcpu,
                    arg: ArgSel::Vcpu(VcpuId::Small(0)),
                    size: ArgSize::Natural,
                    ptr: Ptr::Buffer,
                },
            },
            Op::Start { vm },
        ]
    }
}
