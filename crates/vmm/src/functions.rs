//! VM functions (SPEC §2.11): vCPUs, irqfds and ioeventfds, with the
//! Gunyah identity and conflict rules, registered with KVM.
//!
//! On x86 an irqfd label is the KVM GSI it raises (an IOAPIC input, so
//! labels 0..23); LEVEL uses KVM's resampling irqfd, which keeps the line
//! asserted until the guest acknowledges it. An ioeventfd becomes a KVM
//! MMIO ioeventfd; without DATAMATCH it matches any access length (SPEC
//! F-6: Gunyah stores its length as 0).

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, RawFd};

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use uapi::{
    GUNYAH_FN_IOEVENTFD, GUNYAH_FN_IRQFD, GUNYAH_FN_MAX_ARG_SIZE, GUNYAH_FN_VCPU,
    GUNYAH_IOEVENTFD_FLAGS_DATAMATCH, GUNYAH_IRQFD_FLAGS_LEVEL, gunyah_fn_desc,
    gunyah_fn_ioeventfd_arg, gunyah_fn_irqfd_arg, gunyah_fn_vcpu_arg,
};
use vmm_sys_util::eventfd::EventFd;

use crate::{Error, Result};

/// Highest irqfd label + 1: the in-kernel IOAPIC's inputs.
pub const IRQFD_LABELS: u32 = 24;

/// A function argument, decoded from its descriptor (SPEC F-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionArg {
    /// `GUNYAH_FN_VCPU`.
    Vcpu(gunyah_fn_vcpu_arg),
    /// `GUNYAH_FN_IRQFD`.
    Irqfd(gunyah_fn_irqfd_arg),
    /// `GUNYAH_FN_IOEVENTFD`.
    Ioeventfd(gunyah_fn_ioeventfd_arg),
}

/// Read `len` bytes at `addr` of this process, reporting a bad address as
/// EFAULT instead of faulting (what the kernel's copy_from_user does).
fn copy_from_user(addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let fault = Error::Fault { addr, len };
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: process_vm_readv on our own pid copies from `remote` into our
    // buffer and reports unreadable source memory as EFAULT rather than
    // touching it; `local` describes `buf`, which we own and which has
    // exactly `len` bytes.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n != len as isize {
        return Err(fault);
    }
    Ok(buf)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

fn require_size(what: &str, size: u32, want: usize) -> Result<()> {
    if size as usize != want {
        return Err(Error::Invalid(format!(
            "{what} argument size {size} is wrong: it must be {want}"
        )));
    }
    Ok(())
}

/// Decode a function descriptor whose `arg` points into this process, in
/// the SPEC's order: size limit (EINVAL), copy (EFAULT), type (ENOENT),
/// size for the type (EINVAL).
pub fn decode(desc: &gunyah_fn_desc) -> Result<FunctionArg> {
    if desc.arg_size > GUNYAH_FN_MAX_ARG_SIZE {
        return Err(Error::Invalid(format!(
            "function argument size {} exceeds the limit of {GUNYAH_FN_MAX_ARG_SIZE}",
            desc.arg_size
        )));
    }
    let b = copy_from_user(desc.arg, desc.arg_size as usize)?;
    match desc.type_ {
        GUNYAH_FN_VCPU => {
            require_size("vCPU", desc.arg_size, size_of::<gunyah_fn_vcpu_arg>())?;
            Ok(FunctionArg::Vcpu(gunyah_fn_vcpu_arg { id: u32_at(&b, 0) }))
        }
        GUNYAH_FN_IRQFD => {
            require_size("irqfd", desc.arg_size, size_of::<gunyah_fn_irqfd_arg>())?;
            Ok(FunctionArg::Irqfd(gunyah_fn_irqfd_arg {
                fd: u32_at(&b, 0),
                label: u32_at(&b, 4),
                flags: u32_at(&b, 8),
                padding: u32_at(&b, 12),
            }))
        }
        GUNYAH_FN_IOEVENTFD => {
            require_size(
                "ioeventfd",
                desc.arg_size,
                size_of::<gunyah_fn_ioeventfd_arg>(),
            )?;
            Ok(FunctionArg::Ioeventfd(gunyah_fn_ioeventfd_arg {
                datamatch: u64_at(&b, 0),
                addr: u64_at(&b, 8),
                len: u32_at(&b, 16),
                fd: u32_at(&b, 20) as i32,
                flags: u32_at(&b, 24),
                padding: u32_at(&b, 28),
            }))
        }
        t => Err(Error::NotFound(format!("unknown function type {t}"))),
    }
}

/// A private duplicate of the caller's eventfd (EBADF if the number is not
/// open, EINVAL if it is not an eventfd), so lendvm can unregister it even
/// after the caller closed theirs.
fn eventfd(fd: RawFd) -> Result<EventFd> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    match link {
        Err(_) => Err(Error::BadFd(fd)),
        Ok(target) if target.as_os_str() != "anon_inode:[eventfd]" => Err(Error::WrongFdKind {
            fd,
            wanted: "an eventfd",
        }),
        Ok(_) => {
            // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new
            // descriptor that nothing else owns.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(Error::BadFd(fd));
            }
            // SAFETY: `dup` is a fresh descriptor owned by nobody else.
            Ok(unsafe { EventFd::from_raw_fd(dup) })
        }
    }
}

struct Irqfd {
    event: EventFd,
    resample: Option<EventFd>,
}

/// An ioeventfd as Gunyah stores it: `len` only with DATAMATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IoeventKey {
    addr: u64,
    len: u32,
    datamatch: Option<u64>,
}

impl IoeventKey {
    fn from_arg(a: &gunyah_fn_ioeventfd_arg) -> IoeventKey {
        let dm = a.flags & GUNYAH_IOEVENTFD_FLAGS_DATAMATCH != 0;
        IoeventKey {
            addr: a.addr,
            len: if dm { a.len } else { 0 },
            datamatch: dm.then_some(a.datamatch),
        }
    }

    /// Gunyah's equality for registration (SPEC F-6): at one address, a
    /// length-0 entry equals any other; otherwise lengths must match, and
    /// then a DATAMATCH entry equals a non-DATAMATCH one, or two DATAMATCH
    /// entries equal when their values do.
    fn conflicts(&self, other: &IoeventKey) -> bool {
        if self.addr != other.addr {
            return false;
        }
        if (self.len == 0) != (other.len == 0) {
            return true;
        }
        if self.len != other.len {
            return false;
        }
        match (self.datamatch, other.datamatch) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

struct Ioeventfd {
    key: IoeventKey,
    event: EventFd,
}

/// The irqfds and ioeventfds of one VM (vCPUs live with the VM).
#[derive(Default)]
pub(crate) struct Table {
    irqfds: BTreeMap<u32, Irqfd>,
    ioeventfds: Vec<Ioeventfd>,
}

fn register_ioevent(vm: &VmFd, e: &Ioeventfd) -> std::result::Result<(), kvm_ioctls::Error> {
    let addr = IoEventAddress::Mmio(e.key.addr);
    match (e.key.datamatch, e.key.len) {
        (None, _) => vm.register_ioevent(&e.event, &addr, NoDatamatch),
        (Some(v), 1) => vm.register_ioevent(&e.event, &addr, v as u8),
        (Some(v), 2) => vm.register_ioevent(&e.event, &addr, v as u16),
        (Some(v), 4) => vm.register_ioevent(&e.event, &addr, v as u32),
        (Some(v), _) => vm.register_ioevent(&e.event, &addr, v),
    }
}

fn unregister_ioevent(vm: &VmFd, e: &Ioeventfd) -> std::result::Result<(), kvm_ioctls::Error> {
    let addr = IoEventAddress::Mmio(e.key.addr);
    match (e.key.datamatch, e.key.len) {
        (None, _) => vm.unregister_ioevent(&e.event, &addr, NoDatamatch),
        (Some(v), 1) => vm.unregister_ioevent(&e.event, &addr, v as u8),
        (Some(v), 2) => vm.unregister_ioevent(&e.event, &addr, v as u16),
        (Some(v), 4) => vm.unregister_ioevent(&e.event, &addr, v as u32),
        (Some(v), _) => vm.unregister_ioevent(&e.event, &addr, v),
    }
}

impl Table {
    /// SPEC F-5: add an irqfd.
    pub(crate) fn add_irqfd(&mut self, vm: &VmFd, a: &gunyah_fn_irqfd_arg) -> Result<()> {
        if a.flags & !GUNYAH_IRQFD_FLAGS_LEVEL != 0 {
            return Err(Error::Invalid(format!(
                "unknown irqfd flags {:#x} (only LEVEL 0x1 exists)",
                a.flags & !GUNYAH_IRQFD_FLAGS_LEVEL
            )));
        }
        let event = eventfd(a.fd as RawFd)?;
        if self.irqfds.contains_key(&a.label) {
            return Err(Error::Exists(format!(
                "irqfd label {} is already registered",
                a.label
            )));
        }
        if a.label >= IRQFD_LABELS {
            return Err(Error::Invalid(format!(
                "irqfd label {} has no interrupt line on x86: labels are 0..{IRQFD_LABELS} (the IOAPIC inputs)",
                a.label
            )));
        }
        let level = a.flags & GUNYAH_IRQFD_FLAGS_LEVEL != 0;
        let resample = if level {
            let r =
                EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(|e| Error::Kvm {
                    op: "eventfd",
                    source: e,
                })?;
            vm.register_irqfd_with_resample(&event, &r, a.label)
                .map_err(|e| Error::kvm("KVM_IRQFD (resample)", e))?;
            Some(r)
        } else {
            vm.register_irqfd(&event, a.label)
                .map_err(|e| Error::kvm("KVM_IRQFD", e))?;
            None
        };
        self.irqfds.insert(a.label, Irqfd { event, resample });
        Ok(())
    }

    /// SPEC F-2, F-5: remove the irqfd with this label (matched on label only).
    pub(crate) fn remove_irqfd(&mut self, vm: &VmFd, label: u32) -> Result<()> {
        let irq = self
            .irqfds
            .remove(&label)
            .ok_or_else(|| Error::NotFound(format!("no irqfd has label {label}")))?;
        vm.unregister_irqfd(&irq.event, label)
            .map_err(|e| Error::kvm("KVM_IRQFD (deassign)", e))?;
        drop(irq.resample);
        Ok(())
    }

    /// SPEC F-6: add an ioeventfd.
    pub(crate) fn add_ioeventfd(&mut self, vm: &VmFd, a: &gunyah_fn_ioeventfd_arg) -> Result<()> {
        if a.flags & !GUNYAH_IOEVENTFD_FLAGS_DATAMATCH != 0 {
            return Err(Error::Invalid(format!(
                "unknown ioeventfd flags {:#x} (only DATAMATCH 0x1 exists)",
                a.flags & !GUNYAH_IOEVENTFD_FLAGS_DATAMATCH
            )));
        }
        if ![0, 1, 2, 4, 8].contains(&a.len) {
            return Err(Error::Invalid(format!(
                "ioeventfd length {} is not 0, 1, 2, 4 or 8",
                a.len
            )));
        }
        if a.addr.checked_add(u64::from(a.len)).is_none() {
            return Err(Error::Invalid(format!(
                "ioeventfd range [{:#x}, +{}) wraps past the end of the address space",
                a.addr, a.len
            )));
        }
        if a.len == 0 && a.flags & GUNYAH_IOEVENTFD_FLAGS_DATAMATCH != 0 {
            return Err(Error::Invalid(
                "an ioeventfd with DATAMATCH needs a length of 1, 2, 4 or 8".into(),
            ));
        }
        let event = eventfd(a.fd)?;
        let key = IoeventKey::from_arg(a);
        if let Some(old) = self.ioeventfds.iter().find(|e| e.key.conflicts(&key)) {
            return Err(Error::Exists(format!(
                "an ioeventfd at {:#x} (length {}, {}) already covers this one",
                old.key.addr,
                old.key.len,
                old.key
                    .datamatch
                    .map_or("any value".to_string(), |v| format!("value {v:#x}"))
            )));
        }
        let entry = Ioeventfd { key, event };
        register_ioevent(vm, &entry).map_err(|e| Error::kvm("KVM_IOEVENTFD", e))?;
        self.ioeventfds.push(entry);
        Ok(())
    }

    /// SPEC F-2, F-6: remove every ioeventfd whose address, length and
    /// flags (and, with DATAMATCH, value) equal the argument's.
    pub(crate) fn remove_ioeventfd(
        &mut self,
        vm: &VmFd,
        a: &gunyah_fn_ioeventfd_arg,
    ) -> Result<()> {
        let key = IoeventKey::from_arg(a);
        let before = self.ioeventfds.len();
        let mut kept = Vec::with_capacity(before);
        for e in self.ioeventfds.drain(..) {
            if e.key == key {
                unregister_ioevent(vm, &e)
                    .map_err(|e| Error::kvm("KVM_IOEVENTFD (deassign)", e))?;
            } else {
                kept.push(e);
            }
        }
        self.ioeventfds = kept;
        if self.ioeventfds.len() == before {
            return Err(Error::NotFound(format!(
                "no ioeventfd matches address {:#x}, length {}",
                a.addr, a.len
            )));
        }
        Ok(())
    }

    /// Number of registered irqfds and ioeventfds.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.irqfds.len(), self.ioeventfds.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn key(addr: u64, len: u32, datamatch: Option<u64>) -> IoeventKey {
        IoeventKey {
            addr,
            len,
            datamatch,
        }
    }

    // SPEC F-6 (TV ioeventfd::create_many, multiple_datamatch).
    #[test]
    fn ioeventfd_conflicts_follow_gunyah_equality() {
        let any = key(0x8000, 0, None);
        let dm4 = key(0x8000, 4, Some(1));
        assert!(any.conflicts(&dm4) && dm4.conflicts(&any));
        assert!(any.conflicts(&key(0x8000, 0, None)));
        // Distinct values or lengths at one address coexist.
        assert!(!dm4.conflicts(&key(0x8000, 4, Some(2))));
        assert!(!dm4.conflicts(&key(0x8000, 8, Some(1))));
        assert!(dm4.conflicts(&key(0x8000, 4, Some(1))));
        // Other addresses never conflict, even overlapping byte ranges.
        assert!(!key(0x8000, 8, Some(0)).conflicts(&key(0x8004, 8, Some(0))));
        // Without DATAMATCH the length is not stored.
        let a = gunyah_fn_ioeventfd_arg {
            addr: 0x100,
            len: 4,
            ..Default::default()
        };
        assert_eq!(IoeventKey::from_arg(&a), key(0x100, 0, None));
    }

    // SPEC F-1.
    #[test]
    fn descriptors_decode_in_the_spec_order() {
        let big = gunyah_fn_desc {
            type_: 99,
            arg_size: GUNYAH_FN_MAX_ARG_SIZE + 1,
            arg: 0,
        };
        assert_eq!(decode(&big).unwrap_err().errno(), libc::EINVAL);
        let fault = gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: 8, // never mapped
        };
        assert_eq!(decode(&fault).unwrap_err().errno(), libc::EFAULT);
        let arg = gunyah_fn_vcpu_arg { id: 3 };
        let unknown = gunyah_fn_desc {
            type_: 77,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode(&unknown).unwrap_err().errno(), libc::ENOENT);
        let short = gunyah_fn_desc {
            type_: GUNYAH_FN_IRQFD,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode(&short).unwrap_err().errno(), libc::EINVAL);
        let ok = gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode(&ok).unwrap(), FunctionArg::Vcpu(arg));
    }

    #[test]
    fn eventfd_checks_kind_and_openness() {
        assert_eq!(eventfd(1_000_000).unwrap_err().errno(), libc::EBADF);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(eventfd(file.as_raw_fd()).unwrap_err().errno(), libc::EINVAL);
        let e = EventFd::new(0).unwrap();
        let dup = eventfd(e.as_raw_fd()).unwrap();
        dup.write(1).unwrap();
        assert_eq!(e.read().unwrap(), 1);
    }
}
