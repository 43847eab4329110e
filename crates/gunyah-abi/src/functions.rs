//! ADD_FUNCTION / REMOVE_FUNCTION (SPEC §2.11): the descriptor and its
//! argument, read from the caller's memory, decoded into typed calls.

use std::os::fd::{FromRawFd, RawFd};

use uapi::{
    GUNYAH_FN_IOEVENTFD, GUNYAH_FN_IRQFD, GUNYAH_FN_MAX_ARG_SIZE, GUNYAH_FN_VCPU,
    GUNYAH_IOEVENTFD_FLAGS_DATAMATCH, GUNYAH_IRQFD_FLAGS_LEVEL, gunyah_fn_desc,
    gunyah_fn_ioeventfd_arg, gunyah_fn_irqfd_arg, gunyah_fn_vcpu_arg,
};
use vmm::{Function, Ioevent, Vm};
use vmm_sys_util::eventfd::EventFd;

use crate::files::fd_is_open;
use crate::{Error, Result};

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

/// Copy `buf.len()` bytes from this process's address `addr` into `buf`:
/// EFAULT if any of them is unreadable (as the kernel's copy_from_user),
/// never a fault. The preload library reads ioctl arguments with it.
pub fn read_user_bytes(addr: u64, buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    if len == 0 {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: process_vm_readv on our own pid copies from `remote` into
    // `buf` (exactly `len` bytes we borrow mutably) and reports unreadable
    // source memory as EFAULT rather than touching it.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n != len as isize {
        return Err(Error::Fault { addr, len });
    }
    Ok(())
}

fn copy_from_user(addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    read_user_bytes(addr, &mut buf)?;
    Ok(buf)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

fn require_size(what: &'static str, size: u32, want: usize) -> Result<()> {
    if size as usize != want {
        return Err(Error::ArgSize { what, size, want });
    }
    Ok(())
}

/// Decode a function descriptor whose `arg` points into this process, in
/// the SPEC's order: size limit (EINVAL), copy (EFAULT), type (ENOENT),
/// size for the type (EINVAL).
pub fn decode_function(desc: &gunyah_fn_desc) -> Result<FunctionArg> {
    if desc.arg_size > GUNYAH_FN_MAX_ARG_SIZE {
        return Err(Error::ArgTooLarge {
            size: desc.arg_size,
            limit: GUNYAH_FN_MAX_ARG_SIZE,
        });
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
        kind => Err(Error::UnknownFunction { kind }),
    }
}

/// A private duplicate of the caller's descriptor `fd` as an eventfd (EBADF
/// if it is not open; the VM manager says EINVAL if it is not an eventfd).
fn event(fd: RawFd) -> Result<EventFd> {
    if fd < 0 || !fd_is_open(fd) {
        return Err(Error::BadFd(fd));
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new
    // descriptor that nothing else owns.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Error::BadFd(fd));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    Ok(unsafe { EventFd::from_raw_fd(dup) })
}

fn ioevent(a: &gunyah_fn_ioeventfd_arg) -> Result<Ioevent> {
    if a.flags & !GUNYAH_IOEVENTFD_FLAGS_DATAMATCH != 0 {
        return Err(Error::UnknownFlags {
            what: "ioeventfd",
            flags: a.flags,
            known: "DATAMATCH (0x1)",
        });
    }
    Ok(Ioevent {
        addr: a.addr,
        len: a.len,
        datamatch: (a.flags & GUNYAH_IOEVENTFD_FLAGS_DATAMATCH != 0).then_some(a.datamatch),
    })
}

fn irqfd_level(a: &gunyah_fn_irqfd_arg) -> Result<bool> {
    if a.flags & !GUNYAH_IRQFD_FLAGS_LEVEL != 0 {
        return Err(Error::UnknownFlags {
            what: "irqfd",
            flags: a.flags,
            known: "LEVEL (0x1)",
        });
    }
    Ok(a.flags & GUNYAH_IRQFD_FLAGS_LEVEL != 0)
}

/// ADD_FUNCTION (SPEC F-1, F-3, F-5, F-6): `desc.arg` is the address of
/// the argument in this process (a bad address is EFAULT, not a crash).
/// An argument's flags and values are checked before its descriptor.
pub fn add_function(vm: &Vm, desc: &gunyah_fn_desc) -> Result<Function> {
    match decode_function(desc)? {
        FunctionArg::Vcpu(a) => vm.add_vcpu(a.id).map(Function::Vcpu),
        FunctionArg::Irqfd(a) => {
            let level = irqfd_level(&a)?;
            let fd = RawFd::try_from(a.fd).map_err(|_| Error::BadFd(a.fd as i32))?;
            vm.add_irqfd(&event(fd)?, a.label, level)
                .map(|()| Function::Irqfd)
        }
        FunctionArg::Ioeventfd(a) => {
            let io = ioevent(&a)?;
            // SPEC F-6: the values before the descriptor (a bad length
            // with a closed descriptor is EINVAL, as in Gunyah).
            io.check()?;
            vm.add_ioeventfd(&event(a.fd)?, &io)
                .map(|()| Function::Ioeventfd)
        }
    }
}

/// REMOVE_FUNCTION (SPEC F-2): removes every matching instance; ENOENT if
/// none matched. An irqfd matches on its label, an ioeventfd on address,
/// length and match, a vCPU on its id.
pub fn remove_function(vm: &Vm, desc: &gunyah_fn_desc) -> Result<()> {
    match decode_function(desc)? {
        FunctionArg::Vcpu(a) => vm.remove_vcpu(a.id),
        FunctionArg::Irqfd(a) => vm.remove_irqfd(a.label),
        FunctionArg::Ioeventfd(a) => vm.remove_ioeventfd(&ioevent(&a)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC F-1.
    #[test]
    fn descriptors_decode_in_the_spec_order() {
        let big = gunyah_fn_desc {
            type_: 99,
            arg_size: GUNYAH_FN_MAX_ARG_SIZE + 1,
            arg: 0,
        };
        assert_eq!(decode_function(&big).unwrap_err().errno(), libc::EINVAL);
        let fault = gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: 8, // never mapped
        };
        assert_eq!(decode_function(&fault).unwrap_err().errno(), libc::EFAULT);
        let arg = gunyah_fn_vcpu_arg { id: 3 };
        let unknown = gunyah_fn_desc {
            type_: 77,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode_function(&unknown).unwrap_err().errno(), libc::ENOENT);
        let short = gunyah_fn_desc {
            type_: GUNYAH_FN_IRQFD,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode_function(&short).unwrap_err().errno(), libc::EINVAL);
        let ok = gunyah_fn_desc {
            type_: GUNYAH_FN_VCPU,
            arg_size: 4,
            arg: &arg as *const _ as u64,
        };
        assert_eq!(decode_function(&ok).unwrap(), FunctionArg::Vcpu(arg));
    }

    // SPEC F-5, F-6: unknown flag bits and closed descriptors.
    #[test]
    fn flags_and_descriptors_are_checked_before_any_call() {
        let irq = gunyah_fn_irqfd_arg {
            fd: 0,
            label: 0,
            flags: 2,
            padding: 0,
        };
        assert_eq!(irqfd_level(&irq).unwrap_err().errno(), libc::EINVAL);
        let io = gunyah_fn_ioeventfd_arg {
            flags: 4,
            ..Default::default()
        };
        assert_eq!(ioevent(&io).unwrap_err().errno(), libc::EINVAL);
        assert_eq!(event(1_000_000).unwrap_err().errno(), libc::EBADF);
        assert_eq!(event(-1).unwrap_err().errno(), libc::EBADF);
    }
}
