//! The state of one input: up to two VMs, four file slots, the
//! descriptor table, user memory; each [`Op`] decoded into its raw
//! argument, called through `gunyah_abi`, and checked.

use std::collections::BTreeSet;
use std::ops::Range;
use std::os::fd::RawFd;

use gunyah_abi::{FdTable, FlagEncoding, Profile};
use uapi::{gunyah_create_mem_args, gunyah_map_mem_args, gunyah_vcpu_run};
use vmm::{BindingInfo, Mode, Vcpu, Vm};

use crate::check::{self, Expect, Request, check_result};
use crate::ops::{Addr, Fd, Len, MIB, Op, PAGE, UserRegionSel};
use crate::world::{UserMemory, World, fd_is_open};

pub const VM_SLOTS: usize = 2;
pub const FILE_SLOTS: usize = 4;
/// VM creations per input (KVM VM creation costs milliseconds).
const MAX_VM_CREATIONS: u32 = 4;
/// File creations per input.
const MAX_FILE_CREATIONS: u32 = 8;
/// Distinct KVM vCPUs per VM.
pub const MAX_VCPU_IDS: usize = 4;
/// vCPU handles kept per VM (the oldest goes first).
pub const MAX_VCPU_HANDLES: usize = 6;
/// Bindable files are at most this big (a share binding is one memslot,
/// whose KVM metadata grows with its size).
const MAX_BOUND_FILE: u64 = 256 * MIB;

pub struct FileSlot {
    pub fd: RawFd,
    /// The size MAP_MEM checks ranges against.
    pub size: u64,
    /// Not closed through the table (a closed number may come back for
    /// another file).
    pub live: bool,
}

pub struct VcpuSlot {
    pub vcpu: Vcpu,
    pub page: Box<gunyah_vcpu_run>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Never,
    Ok,
    Failed,
}

pub struct VmSlot {
    pub vm: Vm,
    pub profile: Profile,
    pub started: Started,
    pub vcpus: Vec<VcpuSlot>,
    /// Every id a KVM vCPU was created for.
    pub ids: BTreeSet<u32>,
    /// Ids with a live function.
    pub active: BTreeSet<u32>,
    /// Guest ranges of this VM's user regions.
    pub user: Vec<Range<u64>>,
    /// `active` is exact (false once a vCPU of unknown id was removed).
    pub vcpu_oracle: bool,
}

/// What a descriptor number is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdClass {
    /// A guest memory file in the table, of this size.
    Ours(u64),
    /// Not open: EBADF.
    NotOpen,
    /// Open, not a guest memory file: EINVAL for MAP_MEM.
    Foreign,
    Unknown,
}

pub struct Harness {
    pub w: &'static World,
    pub vms: [Option<VmSlot>; VM_SLOTS],
    pub files: [Option<FileSlot>; FILE_SLOTS],
    pub table: FdTable,
    vm_creations: u32,
    file_creations: u32,
    pub user_mem: Option<UserMemory>,
    pub notes: Notes,
}

/// Where results are reported: the trace (stderr) and the counters.
#[derive(Clone, Copy)]
pub struct Notes {
    pub trace: bool,
    pub stats: &'static crate::Stats,
}

impl Notes {
    pub fn result<T>(self, req: Request, r: &vmm::Result<T>) {
        if self.trace {
            match r {
                Ok(_) => eprintln!("  {req:?}: ok"),
                Err(e) => eprintln!("  {req:?}: errno {} ({e})", e.errno()),
            }
        }
        self.stats
            .count(req, r.as_ref().err().map(vmm::Error::errno));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // VMs (and their vCPUs) first: user regions must stay mapped while
        // a VM lives, and bindings are taken apart before the files go.
        for v in &mut self.vms {
            *v = None;
        }
        for f in self.files.iter_mut().filter_map(Option::take) {
            if f.live {
                self.table.close(f.fd);
            }
        }
        self.user_mem = None;
    }
}

impl Harness {
    pub fn new(w: &'static World, stats: &'static crate::Stats, trace: bool) -> Harness {
        Harness {
            w,
            vms: Default::default(),
            files: Default::default(),
            table: FdTable::default(),
            vm_creations: 0,
            file_creations: 0,
            user_mem: None,
            notes: Notes { trace, stats },
        }
    }

    /// Run one op and every check that follows it.
    pub fn step(&mut self, op: &Op) {
        if let Op::Quickstart {
            vm,
            slot,
            lend,
            code,
        } = op
        {
            for op in Op::quickstart(*vm, *slot, *lend, code) {
                self.step(&op);
            }
            return;
        }
        if self.notes.trace {
            eprintln!("op: {op:?}");
        }
        let before = self.snapshot();
        let changed = self.apply(op);
        self.check_invariants(&before, changed);
    }

    fn apply(&mut self, op: &Op) -> Option<vmm::VmId> {
        match op {
            Op::CreateVm {
                slot,
                vm_type,
                compat,
            } => self.create_vm(*slot, vm_type.unwrap_or(0), *compat),
            Op::CreateMem {
                slot,
                flags,
                size,
                reserved,
                compat,
            } => {
                let args = gunyah_create_mem_args {
                    flags: flags.value(),
                    size: size.value(),
                    reserved: reserved.words(),
                };
                self.create_mem(*slot, &args, *compat);
            }
            Op::CreateGuestMemfd {
                slot,
                vm,
                pages,
                private,
            } => self.create_guest_memfd(*slot, *vm, *pages, *private),
            Op::CloseFile { slot } => {
                if let Some(f) = &mut self.files[usize::from(*slot) % FILE_SLOTS]
                    && f.live
                {
                    self.table.close(f.fd);
                    f.live = false;
                }
            }
            Op::WriteFile {
                slot,
                offset,
                bytes,
            } => {
                if let Some(f) = &self.files[usize::from(*slot) % FILE_SLOTS]
                    && f.live
                    && let Some(mem) = self.table.get(f.fd)
                {
                    // Anywhere up to twice the file's current size: a compat
                    // file is mapped to its capacity, and a host write past
                    // its current length must be an error, never a signal.
                    let at = offset.value(f.size.saturating_mul(2));
                    let bytes = &bytes[..bytes.len().min(256)];
                    let inside = at
                        .checked_add(bytes.len() as u64)
                        .is_some_and(|end| end <= f.size);
                    let r = mem.write_at(at, bytes);
                    // Inside, any answer will do (the guest may own the
                    // bytes); outside, EFAULT (EACCES first for a private
                    // file, which refuses every host access).
                    if !inside && !bytes.is_empty() {
                        let errno = r.as_ref().map_err(|e| e.errno()).err();
                        assert!(
                            matches!(errno, Some(libc::EFAULT | libc::EACCES)),
                            "a host write at {at:#x} past a {:#x}-byte file answered {errno:?}",
                            f.size
                        );
                    }
                }
            }
            Op::MapMem {
                vm,
                fd,
                guest,
                offset,
                size,
                flags,
                upstream,
            } => {
                return self.map_mem(
                    *vm,
                    *fd,
                    *guest,
                    *offset,
                    *size,
                    flags.encode(*upstream),
                    *upstream,
                );
            }
            Op::AddFunction { vm, desc } => self.function(*vm, desc, true),
            Op::RemoveFunction { vm, desc } => self.function(*vm, desc, false),
            Op::SetDtb { vm, addr, size } => self.set_location(*vm, *addr, *size, true),
            Op::SetFw { vm, addr, size } => self.set_location(*vm, *addr, *size, false),
            Op::SetBootContext {
                vm,
                reg,
                reserved,
                value,
            } => self.set_boot_context(*vm, reg.value(), reserved.unwrap_or(0), *value),
            Op::Start { vm } => self.start(*vm),
            Op::Run {
                vm,
                vcpu,
                free,
                resume,
                data,
                garbage,
            } => self.run(*vm, *vcpu, *free % 4 == 0, resume.value(), *data, *garbage),
            Op::DropVcpu { vm, vcpu } => {
                if let Some(v) = &mut self.vms[usize::from(*vm) % VM_SLOTS]
                    && !v.vcpus.is_empty()
                {
                    let i = usize::from(*vcpu) % v.vcpus.len();
                    v.vcpus.remove(i);
                }
            }
            Op::DropVm { slot } => self.vms[usize::from(*slot) % VM_SLOTS] = None,
            Op::UserMem { vm, region } => self.user_mem_region(*vm, region),
            Op::Quickstart { .. } => {}
        }
        None
    }

    // ----- slots -------------------------------------------------------------

    /// The index of VM slot `i`, made (type 0, strict) if empty and the
    /// budget allows.
    pub fn vm(&mut self, i: u8) -> Option<usize> {
        let i = usize::from(i) % VM_SLOTS;
        if self.vms[i].is_none() {
            if self.vm_creations >= MAX_VM_CREATIONS {
                return None;
            }
            self.vm_creations += 1;
            let vm = gunyah_abi::create_vm(&self.w.dev, 0, Profile::Strict)
                .unwrap_or_else(|e| panic!("CREATE_VM type 0 failed: {e}"));
            self.vms[i] = Some(VmSlot::new(vm, Profile::Strict));
        }
        Some(i)
    }

    fn create_vm(&mut self, slot: u8, vm_type: u64, compat: bool) {
        if self.vm_creations >= MAX_VM_CREATIONS {
            return;
        }
        self.vm_creations += 1;
        let profile = if compat {
            Profile::Compat
        } else {
            Profile::Strict
        };
        let i = usize::from(slot) % VM_SLOTS;
        // The old VM goes first: at most two live VMs.
        self.vms[i] = None;
        let r = gunyah_abi::create_vm(&self.w.dev, vm_type, profile);
        let expect = if vm_type == 0 {
            Expect::Ok
        } else {
            Expect::Errno(libc::EINVAL)
        };
        self.notes.result(Request::CreateVm, &r);
        check_result(Request::CreateVm, expect, &r, &vm_type);
        if let Ok(vm) = r {
            self.vms[i] = Some(VmSlot::new(vm, profile));
        }
    }

    /// The descriptor number of file slot `i`, making a 4 MiB file if the
    /// slot is empty and the budget allows.
    fn file_fd(&mut self, i: u8) -> Option<RawFd> {
        let i = usize::from(i) % FILE_SLOTS;
        if self.files[i].is_none() && self.file_creations < MAX_FILE_CREATIONS {
            self.file_creations += 1;
            let args = gunyah_create_mem_args {
                flags: uapi::GHMF_CLOEXEC,
                size: 4 * MIB,
                reserved: [0; 6],
            };
            let mem = gunyah_abi::create_guest_mem(&self.w.dev, &args, Profile::Strict)
                .unwrap_or_else(|e| panic!("CREATE_GUEST_MEM of 4 MiB failed: {e}"));
            let fd = self.table.insert(mem);
            self.files[i] = Some(FileSlot {
                fd,
                size: 4 * MIB,
                live: true,
            });
        }
        self.files[i].as_ref().map(|f| f.fd)
    }

    fn put_file(&mut self, slot: u8, mem: vmm::GuestMem, size: u64) {
        let i = usize::from(slot) % FILE_SLOTS;
        if let Some(old) = self.files[i].take()
            && old.live
        {
            self.table.close(old.fd);
        }
        let fd = self.table.insert(mem);
        self.files[i] = Some(FileSlot {
            fd,
            size,
            live: true,
        });
    }

    fn create_mem(&mut self, slot: u8, args: &gunyah_create_mem_args, compat: bool) {
        if self.file_creations >= MAX_FILE_CREATIONS {
            return;
        }
        self.file_creations += 1;
        let profile = if compat {
            Profile::Compat
        } else {
            Profile::Strict
        };
        let size = args.size;
        let valid = args.flags & !(uapi::GHMF_CLOEXEC | uapi::GHMF_ALLOW_HUGEPAGE) == 0
            && size != 0
            && size.is_multiple_of(PAGE)
            && size <= i64::MAX as u64
            && args.reserved == [0; 6];
        let r = gunyah_abi::create_guest_mem(&self.w.dev, args, profile);
        self.notes.result(Request::CreateMem, &r);
        let expect = match (valid, size > MAX_BOUND_FILE) {
            (false, _) => Expect::Errno(libc::EINVAL),
            (true, false) => Expect::Ok,
            // lendvm maps every file whole for KVM, which fails past the
            // address space the host has: the kernel's ENOMEM.
            (true, true) => Expect::OkOr(&[libc::ENOMEM]),
        };
        check_result(Request::CreateMem, expect, &r, args);
        if let Ok(mem) = r
            && size <= MAX_BOUND_FILE
        {
            self.put_file(slot, mem, size);
        }
    }

    fn create_guest_memfd(&mut self, slot: u8, vm: u8, pages: u8, private: bool) {
        if self.file_creations >= MAX_FILE_CREATIONS {
            return;
        }
        self.file_creations += 1;
        let size = (u64::from(pages) + 1) * PAGE;
        let mode = if private {
            Mode::Private
        } else {
            Mode::HostMappable
        };
        let Some(i) = self.vm(vm) else { return };
        let Some(v) = &self.vms[i] else { return };
        // lendvm's typed API, not a raw entry point: any refusal (a host
        // without guest_memfd) only means there is no such file to name.
        if let Ok(mem) = v.vm.create_guest_memfd(size, mode) {
            self.put_file(slot, mem, size);
        }
    }

    /// A descriptor number for `fd`, and what it is known to be.
    pub fn fd_number(&mut self, fd: Fd) -> (u32, FdClass) {
        let n: u32 = match fd {
            Fd::File(i) => match self.file_fd(i) {
                Some(n) => n as u32,
                None => return (1_000_000, FdClass::NotOpen),
            },
            Fd::NotOpen(n) => 1_000_000 + u32::from(n),
            Fd::MinusOne => u32::MAX,
            Fd::Negative(v) => v | 0x8000_0000,
            Fd::Event => return (self.w.event_fd() as u32, FdClass::Foreign),
            Fd::Regular => return (self.w.regular_fd() as u32, FdClass::Foreign),
            Fd::Std(n) => u32::from(n % 3),
            Fd::Raw(v) => v,
        };
        let Ok(raw) = RawFd::try_from(n) else {
            return (n, FdClass::NotOpen);
        };
        if !fd_is_open(raw) {
            return (n, FdClass::NotOpen);
        }
        if self.table.get(raw).is_some() {
            let size = self
                .files
                .iter()
                .flatten()
                .find(|f| f.live && f.fd == raw)
                .map_or(0, |f| f.size);
            return (n, FdClass::Ours(size));
        }
        (n, FdClass::Unknown)
    }

    // ----- MAP_MEM -----------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn map_mem(
        &mut self,
        vm: u8,
        fd: Fd,
        guest: Addr,
        offset: Len,
        size: Len,
        flags: u32,
        upstream: bool,
    ) -> Option<vmm::VmId> {
        // The VM first: making it opens descriptors, which may take the
        // number `fd` names.
        let i = self.vm(vm)?;
        let (n, class) = self.fd_number(fd);
        let whole = match class {
            FdClass::Ours(s) => s,
            _ => MIB,
        };
        let args = gunyah_map_mem_args {
            guest_addr: guest.value(),
            flags,
            guest_mem_fd: n,
            offset: offset.value(whole),
            size: size.value(whole),
        };
        let unmap = flags
            & if upstream {
                uapi::upstream::GUNYAH_MEM_UNMAP
            } else {
                uapi::GUNYAH_MEM_UNMAP
            }
            != 0;
        let req = if unmap {
            Request::MapRemove
        } else {
            Request::MapAdd
        };
        let expect = match class {
            FdClass::NotOpen => Expect::Errno(libc::EBADF),
            FdClass::Foreign => Expect::Errno(libc::EINVAL),
            FdClass::Unknown => Expect::Allowed,
            FdClass::Ours(file_size) => {
                let a = &args;
                let aligned = [a.guest_addr, a.offset, a.size]
                    .iter()
                    .all(|v| v.is_multiple_of(PAGE));
                let fits = a.size != 0
                    && a.guest_addr.checked_add(a.size).is_some()
                    && a.offset
                        .checked_add(a.size)
                        .is_some_and(|end| end <= file_size);
                if !check::map_flags_valid(flags, upstream) || !aligned || !fits {
                    Expect::Errno(libc::EINVAL)
                } else {
                    Expect::Allowed
                }
            }
        };
        let encoding = if upstream {
            FlagEncoding::Upstream
        } else {
            FlagEncoding::Android
        };
        let notes = self.notes;
        let table = &self.table;
        let slot = self.vms[i].as_ref()?;
        let r = gunyah_abi::map_mem(&slot.vm, &args, table, encoding);
        let id = slot.vm.id();
        let after = slot.vm.bindings();
        notes.result(req, &r);
        check_result(req, expect, &r, &args);
        if r.is_ok() {
            let (g, s) = (args.guest_addr, args.size);
            if unmap {
                assert!(
                    !after
                        .iter()
                        .any(|b| b.guest_addr < g + s && g < b.guest_end()),
                    "UNMAP {args:x?} succeeded but a binding still covers part of it: {after:x?}"
                );
            } else {
                let want = check::recorded_flags(flags, upstream);
                assert!(
                    after.iter().any(|b| b.guest_addr == g
                        && b.size == s
                        && b.offset == args.offset
                        && b.flags == want),
                    "MAP_MEM {args:x?} succeeded but no binding records it with flags {want:#x}: {after:x?}"
                );
            }
            return Some(id);
        }
        None
    }

    // ----- configuration and START -------------------------------------------

    fn set_location(&mut self, vm: u8, addr: Addr, size: Len, dtb: bool) {
        let (addr, size) = (addr.value(), size.value(PAGE));
        let Some(i) = self.vm(vm) else { return };
        let notes = self.notes;
        let Some(slot) = self.vms[i].as_mut() else {
            return;
        };
        let (req, r) = if dtb {
            let cfg = uapi::gunyah_vm_dtb_config {
                guest_phys_addr: addr,
                size,
            };
            (Request::SetDtb, gunyah_abi::set_dtb_config(&slot.vm, &cfg))
        } else {
            let cfg = uapi::gunyah_vm_firmware_config {
                guest_phys_addr: addr,
                size,
            };
            (Request::SetFw, gunyah_abi::set_fw_config(&slot.vm, &cfg))
        };
        // SPEC B-VM-4/5: wrap first, then the state.
        let expect = if addr.checked_add(size).is_none() {
            Expect::Errno(libc::EOVERFLOW)
        } else if slot.started != Started::Never {
            Expect::Errno(libc::EBUSY)
        } else {
            Expect::Ok
        };
        let (dtb_now, fw_now) = slot.vm.configs();
        notes.result(req, &r);
        check_result(req, expect, &r, &(addr, size));
        if r.is_ok() {
            let now = if dtb { dtb_now } else { fw_now };
            assert_eq!(
                now,
                Some(vmm::Location { addr, size }),
                "{req:?} not recorded"
            );
        }
    }

    fn set_boot_context(&mut self, vm: u8, reg: u32, reserved: u32, value: u64) {
        let Some(i) = self.vm(vm) else { return };
        let notes = self.notes;
        let Some(slot) = self.vms[i].as_mut() else {
            return;
        };
        let ctx = uapi::gunyah_vm_boot_context {
            reg,
            reserved,
            value,
        };
        let r = gunyah_abi::set_boot_context(&slot.vm, &ctx, slot.profile);
        // SPEC B-VM-6 on x86 (DESIGN §5): X0..X15 (X0..X31 compat), PC 0,
        // SP 0 (and 1 compat); reserved bits zero; before START only.
        let compat = slot.profile == Profile::Compat;
        let (set, index) = (reg >> 8, reg & 0xff);
        let known = reg >> 16 == 0
            && match set {
                uapi::REG_SET_X => index < if compat { 32 } else { 16 },
                uapi::REG_SET_PC => index == 0,
                uapi::REG_SET_SP => index == 0 || (compat && index == 1),
                _ => false,
            };
        let expect = if reserved == 0 && known && slot.started == Started::Never {
            Expect::Ok
        } else {
            Expect::Errno(libc::EINVAL)
        };
        notes.result(Request::SetBootContext, &r);
        check_result(Request::SetBootContext, expect, &r, &ctx);
    }

    fn start(&mut self, vm: u8) {
        let Some(i) = self.vm(vm) else { return };
        let notes = self.notes;
        let Some(slot) = self.vms[i].as_mut() else {
            return;
        };
        let r = gunyah_abi::start(&slot.vm, slot.profile);
        // SPEC B-VM-3.1: no second attempt; 0 while running, else ENODEV.
        // A DTB whose last page ends past 2^64 lies in no binding (ENOENT
        // by B-VM-3); the compat profile's rules may refuse first.
        let dtb_past_top = slot.vm.configs().0.is_some_and(|d| {
            d.addr
                .checked_add(d.size)
                .and_then(|end| end.checked_next_multiple_of(PAGE))
                .is_none()
        });
        let expect = match slot.started {
            Started::Never if slot.vm.configs().0.is_none() => Expect::Errno(libc::EINVAL),
            Started::Never if dtb_past_top => Expect::OkOr(&[libc::ENOENT, libc::EINVAL]),
            Started::Never => Expect::Allowed,
            Started::Failed => Expect::Errno(libc::ENODEV),
            Started::Ok if slot.vm.status().is_none() => Expect::Ok,
            Started::Ok => Expect::Errno(libc::ENODEV),
        };
        if slot.started == Started::Never {
            slot.started = if r.is_ok() {
                Started::Ok
            } else {
                Started::Failed
            };
        }
        notes.result(Request::Start, &r);
        check_result(Request::Start, expect, &r, &vm);
    }

    // ----- legacy user regions -----------------------------------------------

    fn user_mem_region(&mut self, vm: u8, sel: &UserRegionSel) {
        if self.user_mem.is_none() {
            self.user_mem = UserMemory::new();
        }
        let pages = u64::from(sel.pages % 8) + 1;
        let Some(host) = self.user_mem.as_mut().and_then(|m| m.take(pages)) else {
            return;
        };
        let unaligned = 1 + u64::from(sel.label) * 97 % 4095;
        let (userspace_addr, memory_size) = match sel.shape % 4 {
            0 => (host, pages * PAGE),
            1 => (host, pages * PAGE - unaligned),
            2 => (host, 0),
            _ => (
                host + unaligned,
                (pages - 1).max(1) * PAGE - if pages == 1 { unaligned } else { 0 },
            ),
        };
        let flags = sel.raw_flags.unwrap_or(u32::from(sel.perms % 8));
        let region = uapi::gunyah_userspace_memory_region {
            label: u32::from(sel.label % 8),
            flags,
            guest_phys_addr: sel.guest.value(),
            memory_size,
            userspace_addr,
        };
        let guest = region.guest_phys_addr;
        let bad = flags & !uapi::GUNYAH_MEM_ALLOW_RWX != 0
            || flags == 0
            || ![guest, memory_size, userspace_addr]
                .iter()
                .all(|v| v.is_multiple_of(PAGE))
            || memory_size == 0
            || guest.checked_add(memory_size).is_none();
        let expect = if bad {
            Expect::Errno(libc::EINVAL)
        } else {
            Expect::Allowed
        };
        let Some(i) = self.vm(vm) else { return };
        let notes = self.notes;
        let Some(slot) = self.vms[i].as_mut() else {
            return;
        };
        // SAFETY: `[userspace_addr, +memory_size)` lies inside pages of
        // this input's `UserMemory`, an anonymous mapping nothing in this
        // process references, handed out once (never to a second region)
        // and unmapped only after every VM of the input is dropped.
        let r = unsafe { gunyah_abi::set_user_mem_region(&slot.vm, &region, sel.lend) };
        if r.is_ok() {
            slot.user.push(guest..guest + memory_size);
        }
        notes.result(Request::UserMem, &r);
        check_result(Request::UserMem, expect, &r, &region);
    }

    // ----- checks ------------------------------------------------------------

    fn snapshot(&self) -> Vec<(vmm::VmId, Vec<BindingInfo>)> {
        self.vms
            .iter()
            .flatten()
            .map(|v| (v.vm.id(), v.vm.bindings()))
            .collect()
    }

    /// After every op: the VM's consistency, file ranges across VMs, and
    /// bindings changed only where a MAP_MEM succeeded.
    fn check_invariants(
        &self,
        before: &[(vmm::VmId, Vec<BindingInfo>)],
        changed: Option<vmm::VmId>,
    ) {
        let mut all = Vec::new();
        for v in self.vms.iter().flatten() {
            check::check_vm(&v.vm, &v.user);
            let now = v.vm.bindings();
            if Some(v.vm.id()) != changed
                && let Some((_, old)) = before.iter().find(|(id, _)| *id == v.vm.id())
            {
                assert_eq!(
                    old,
                    &now,
                    "VM {} bindings changed without a successful MAP_MEM",
                    v.vm.id()
                );
            }
            all.extend(now);
        }
        check::check_file_ranges(&all);
    }
}

impl VmSlot {
    fn new(vm: Vm, profile: Profile) -> VmSlot {
        VmSlot {
            vm,
            profile,
            started: Started::Never,
            vcpus: Vec::new(),
            ids: BTreeSet::new(),
            active: BTreeSet::new(),
            user: Vec::new(),
            vcpu_oracle: true,
        }
    }
}
