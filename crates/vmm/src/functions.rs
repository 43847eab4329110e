//! VM functions (SPEC §2.11): vCPUs, irqfds and ioeventfds, with the
//! Gunyah identity and conflict rules, registered with KVM.
//!
//! On x86 an irqfd label is the KVM GSI it raises (an IOAPIC input, so
//! labels 0..23); LEVEL uses KVM's resampling irqfd, which keeps the line
//! asserted until the guest acknowledges it. An ioeventfd becomes a KVM
//! MMIO ioeventfd; without DATAMATCH it matches any access length (SPEC
//! F-6: Gunyah stores its length as 0).

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};

/// Highest irqfd label + 1: the in-kernel IOAPIC's inputs.
pub const IRQFD_LABELS: u32 = 24;

/// An ioeventfd registration in typed form (SPEC F-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ioevent {
    /// Guest physical address of the write.
    pub addr: u64,
    /// Access length: 0 (any) or 1, 2, 4, 8.
    pub len: u32,
    /// Fire only for writes of exactly `len` bytes equal to this value.
    pub datamatch: Option<u64>,
}

impl Ioevent {
    /// SPEC F-6's checks of the registration's own values (length, range,
    /// DATAMATCH), which come before any look at its eventfd: front ends
    /// call it before resolving the descriptor, `Vm::add_ioeventfd` again.
    pub fn check(&self) -> Result<()> {
        if ![0, 1, 2, 4, 8].contains(&self.len) {
            return Err(Error::IoeventfdLength { len: self.len });
        }
        if self.addr.checked_add(u64::from(self.len)).is_none() {
            return Err(Error::Wraps {
                what: "ioeventfd range",
                addr: self.addr,
                size: u64::from(self.len),
            });
        }
        if self.len == 0 && self.datamatch.is_some() {
            return Err(Error::DatamatchWithoutLength);
        }
        Ok(())
    }
}

/// KVM_IRQFD's refusal: EBUSY means the eventfd already drives an irqfd
/// of this VM (labels are unique here, so that is the only cause).
fn irqfd_error(op: &'static str, e: kvm_ioctls::Error, label: u32) -> Error {
    if e.errno() == libc::EBUSY {
        Error::IrqfdEventfdShared { label }
    } else {
        Error::kvm(op, e)
    }
}

/// A private duplicate of the caller's eventfd (EINVAL if it is not one),
/// so lendvm can unregister it even after the caller closed theirs.
fn eventfd(event: &EventFd) -> Result<EventFd> {
    let fd = event.as_raw_fd();
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Err(_) => Err(Error::BadFd(fd)),
        Ok(target) if target.as_os_str() != "anon_inode:[eventfd]" => Err(Error::WrongFdKind {
            fd,
            wanted: "an eventfd",
        }),
        Ok(_) => event.try_clone().map_err(|_| Error::BadFd(fd)),
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
    fn from_ioevent(a: &Ioevent) -> IoeventKey {
        IoeventKey {
            addr: a.addr,
            len: if a.datamatch.is_some() { a.len } else { 0 },
            datamatch: a.datamatch,
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
    pub(crate) fn add_irqfd(
        &mut self,
        vm: &VmFd,
        event: &EventFd,
        label: u32,
        level: bool,
    ) -> Result<()> {
        let event = eventfd(event)?;
        if self.irqfds.contains_key(&label) {
            return Err(Error::IrqfdLabelTaken { label });
        }
        if label >= IRQFD_LABELS {
            return Err(Error::IrqfdLabelOutOfRange {
                label,
                labels: IRQFD_LABELS,
            });
        }
        let resample = if level {
            let r =
                EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(|e| Error::Kvm {
                    op: "eventfd",
                    source: e,
                })?;
            vm.register_irqfd_with_resample(&event, &r, label)
                .map_err(|e| irqfd_error("KVM_IRQFD (resample)", e, label))?;
            Some(r)
        } else {
            vm.register_irqfd(&event, label)
                .map_err(|e| irqfd_error("KVM_IRQFD", e, label))?;
            None
        };
        self.irqfds.insert(label, Irqfd { event, resample });
        Ok(())
    }

    /// SPEC F-2, F-5: remove the irqfd with this label (matched on label only).
    pub(crate) fn remove_irqfd(&mut self, vm: &VmFd, label: u32) -> Result<()> {
        let irq = self.irqfds.remove(&label).ok_or(Error::NoIrqfd { label })?;
        vm.unregister_irqfd(&irq.event, label)
            .map_err(|e| Error::kvm("KVM_IRQFD (deassign)", e))?;
        drop(irq.resample);
        Ok(())
    }

    /// SPEC F-6: add an ioeventfd.
    pub(crate) fn add_ioeventfd(&mut self, vm: &VmFd, event: &EventFd, a: &Ioevent) -> Result<()> {
        a.check()?;
        let event = eventfd(event)?;
        let key = IoeventKey::from_ioevent(a);
        if let Some(old) = self.ioeventfds.iter().find(|e| e.key.conflicts(&key)) {
            return Err(Error::IoeventfdExists {
                addr: old.key.addr,
                len: old.key.len,
                datamatch: old.key.datamatch,
            });
        }
        let entry = Ioeventfd { key, event };
        register_ioevent(vm, &entry).map_err(|e| Error::kvm("KVM_IOEVENTFD", e))?;
        self.ioeventfds.push(entry);
        Ok(())
    }

    /// SPEC F-2, F-6: remove every ioeventfd whose address, length and
    /// flags (and, with DATAMATCH, value) equal the argument's.
    pub(crate) fn remove_ioeventfd(&mut self, vm: &VmFd, a: &Ioevent) -> Result<()> {
        let key = IoeventKey::from_ioevent(a);
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
            return Err(Error::NoIoeventfd {
                addr: a.addr,
                len: a.len,
            });
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
    use std::os::fd::FromRawFd;

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
        let a = Ioevent {
            addr: 0x100,
            len: 4,
            datamatch: None,
        };
        assert_eq!(IoeventKey::from_ioevent(&a), key(0x100, 0, None));
    }

    #[test]
    fn eventfd_checks_kind() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        // SAFETY: a test-only wrapper around a descriptor `file` keeps open;
        // forgotten below so it is closed once, by `file`.
        let not_eventfd = unsafe { EventFd::from_raw_fd(file.as_raw_fd()) };
        assert_eq!(eventfd(&not_eventfd).unwrap_err().errno(), libc::EINVAL);
        std::mem::forget(not_eventfd);
        let e = EventFd::new(0).unwrap();
        let dup = eventfd(&e).unwrap();
        dup.write(1).unwrap();
        assert_eq!(e.read().unwrap(), 1);
    }
}
