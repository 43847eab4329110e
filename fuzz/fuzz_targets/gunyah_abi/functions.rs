//! ADD_FUNCTION / REMOVE_FUNCTION with descriptors whose `arg` points at
//! the harness's argument page (between two unreadable pages) or anywhere
//! at all, and the answers SPEC F-1..F-6 fix.

use uapi::{
    GUNYAH_FN_IOEVENTFD, GUNYAH_FN_IRQFD, GUNYAH_FN_MAX_ARG_SIZE, GUNYAH_FN_VCPU, gunyah_fn_desc,
};
use vmm::Function;

use crate::check::{Expect, Request, check_result};
use crate::harness::{FdClass, Harness, MAX_VCPU_HANDLES, MAX_VCPU_IDS, VcpuSlot};
use crate::ops::{ArgSel, ArgSize, FnDescSel, PAGE, Ptr, VcpuId};

/// What the harness knows of a serialised argument.
enum Known {
    Vcpu,
    /// Flags and whether the descriptor is known not to be open.
    Irqfd {
        flags: u32,
        not_open: bool,
    },
    Ioevent {
        flags: u32,
        len: u32,
        addr: u64,
        not_open: bool,
    },
    Bytes,
}

impl Harness {
    fn serialise(&mut self, arg: &ArgSel) -> (Vec<u8>, Known) {
        let mut b = Vec::new();
        let known = match arg {
            ArgSel::Vcpu(id) => {
                let limit = self.w.max_vcpu_id;
                let id = match id {
                    VcpuId::Small(n) => u32::from(n % 4),
                    VcpuId::Reserved => limit.saturating_sub(1),
                    VcpuId::Limit => limit,
                    VcpuId::Raw(v) => *v,
                };
                b.extend(id.to_ne_bytes());
                Known::Vcpu
            }
            ArgSel::Irqfd {
                fd,
                label,
                raw_label,
                flags,
            } => {
                let (n, class) = self.fd_number(*fd);
                let flags = u32::from(*flags);
                for v in [n, raw_label.unwrap_or(u32::from(label % 32)), flags, 0] {
                    b.extend(v.to_ne_bytes());
                }
                Known::Irqfd {
                    flags,
                    not_open: class == FdClass::NotOpen,
                }
            }
            ArgSel::Ioevent {
                datamatch,
                addr,
                len,
                fd,
                flags,
            } => {
                let (n, class) = self.fd_number(*fd);
                let (addr, len, flags) = (addr.value(), u32::from(*len), u32::from(*flags));
                b.extend(datamatch.to_ne_bytes());
                b.extend(addr.to_ne_bytes());
                for v in [len, n, flags, 0] {
                    b.extend(v.to_ne_bytes());
                }
                Known::Ioevent {
                    flags,
                    len,
                    addr,
                    not_open: class == FdClass::NotOpen,
                }
            }
            ArgSel::Bytes(v) => {
                b.extend(&v[..v.len().min(300)]);
                Known::Bytes
            }
        };
        (b, known)
    }

    pub fn function(&mut self, vm: u8, desc: &FnDescSel, add: bool) {
        let Some(i) = self.vm(vm) else { return };
        let (bytes, mut known) = self.serialise(&desc.arg);
        let page = self.w.arg_page();
        let len = bytes.len() as u64;
        let arg_size = match desc.size {
            ArgSize::Natural => len as u32,
            ArgSize::Raw(n) => u32::from(n % 301),
        };
        let (at, ptr) = match desc.ptr {
            Ptr::Buffer => (0, page),
            Ptr::GuardEnd => (PAGE - len, page + PAGE - len),
            Ptr::Near(d) => (0, page.wrapping_add_signed(i64::from(d) % 8192)),
            Ptr::Null => (0, 0),
            Ptr::Small(v) => (0, u64::from(v)),
            Ptr::Kernel(v) => (0, v | 0xffff_8000_0000_0000),
            Ptr::Raw(v) => (0, v),
        };
        self.w.fill_arg_page(at as usize, &bytes);
        if ptr != page + at {
            // The call reads other bytes than the serialised argument.
            known = Known::Bytes;
        }
        let desc_raw = gunyah_fn_desc {
            type_: desc.type_.value(),
            arg_size,
            arg: ptr,
        };
        let readable = readable(page, ptr, u64::from(arg_size));
        // The id a vCPU descriptor names, when the harness wrote it.
        let id = (readable == Some(true) && arg_size == 4).then(|| {
            let mut sim = vec![0u8; PAGE as usize];
            sim[at as usize..(at + len) as usize].copy_from_slice(&bytes);
            let o = (ptr - page) as usize;
            u32::from_ne_bytes([sim[o], sim[o + 1], sim[o + 2], sim[o + 3]])
        });
        let notes = self.notes;
        let limit = self.w.max_vcpu_id.saturating_sub(1);
        let Some(slot) = self.vms[i].as_mut() else {
            return;
        };
        let is_vcpu = desc_raw.type_ == GUNYAH_FN_VCPU;
        if add && is_vcpu && arg_size <= GUNYAH_FN_MAX_ARG_SIZE && slot.ids.len() >= MAX_VCPU_IDS {
            // Bound the KVM vCPUs per VM: only calls that cannot make one.
            let makes = match (readable, id) {
                (Some(false), _) => false,
                (Some(true), Some(id)) => id < limit && !slot.ids.contains(&id),
                (Some(true), None) => false,
                (None, _) => true,
            };
            if makes {
                return;
            }
        }
        let mut expect = expect(
            &desc_raw,
            readable,
            &known,
            id,
            limit,
            &slot.active,
            add,
            slot.vcpu_oracle,
        );
        if add && desc_raw.type_ == GUNYAH_FN_IRQFD && expect == Expect::Allowed {
            // KVM refuses a second irqfd on an eventfd that already has one
            // in the VM, which Gunyah allows: lendvm says so with the errno
            // of its host limits (EOPNOTSUPP; vmm's IrqfdEventfdShared).
            expect = Expect::AllowedOr(&[libc::EOPNOTSUPP]);
        }
        let req = if add {
            Request::AddFunction
        } else {
            Request::RemoveFunction
        };
        let r = if add {
            gunyah_abi::add_function(&slot.vm, &desc_raw).map(Some)
        } else {
            gunyah_abi::remove_function(&slot.vm, &desc_raw).map(|()| None)
        };
        notes.result(req, &r);
        check_result(req, expect, &r, &(desc, desc_raw));
        match r {
            Ok(Some(Function::Vcpu(v))) => {
                slot.ids.insert(v.id());
                slot.active.insert(v.id());
                slot.vcpus.push(VcpuSlot {
                    vcpu: v,
                    page: Box::default(),
                });
                if slot.vcpus.len() > MAX_VCPU_HANDLES {
                    slot.vcpus.remove(0);
                }
            }
            Ok(None) if is_vcpu => match id {
                Some(id) => {
                    slot.active.remove(&id);
                }
                // Some id read from memory the harness does not know.
                None => slot.vcpu_oracle = false,
            },
            _ => {}
        }
    }
}

/// Whether `[ptr, ptr + len)` is readable: `Some(true)` inside the
/// argument page, `Some(false)` if it touches a guard page, the first
/// 64 KiB or the kernel's half, `None` if the harness cannot tell.
fn readable(page: u64, ptr: u64, len: u64) -> Option<bool> {
    if len == 0 {
        return Some(true);
    }
    let end = ptr.checked_add(len)?;
    if ptr >= page && end <= page + PAGE {
        return Some(true);
    }
    let guards = [page - PAGE..page, page + PAGE..page + 2 * PAGE];
    if guards.iter().any(|g| ptr < g.end && g.start < end)
        || end <= 1 << 16
        || ptr >= 0xffff_8000_0000_0000
    {
        return Some(false);
    }
    None
}

/// SPEC F-1 (size limit, copy, type, size for the type), then F-3 for
/// vCPUs exactly, F-5/F-6 flags and descriptors in the SPEC's order.
#[allow(clippy::too_many_arguments)]
fn expect(
    d: &gunyah_fn_desc,
    readable: Option<bool>,
    known: &Known,
    id: Option<u32>,
    limit: u32,
    active: &std::collections::BTreeSet<u32>,
    add: bool,
    vcpu_oracle: bool,
) -> Expect {
    use libc::{EBADF, EEXIST, EFAULT, EINVAL, ENOENT};
    if d.arg_size > GUNYAH_FN_MAX_ARG_SIZE {
        return Expect::Errno(EINVAL);
    }
    match readable {
        Some(false) => return Expect::Errno(EFAULT),
        None => return Expect::Allowed,
        Some(true) => {}
    }
    let natural = match d.type_ {
        GUNYAH_FN_VCPU => 4,
        GUNYAH_FN_IRQFD => 16,
        GUNYAH_FN_IOEVENTFD => 32,
        _ => return Expect::Errno(ENOENT),
    };
    if d.arg_size != natural {
        return Expect::Errno(EINVAL);
    }
    match (d.type_, known) {
        (GUNYAH_FN_VCPU, _) => match id {
            Some(_) if !vcpu_oracle => Expect::Allowed,
            Some(id) if add && id >= limit => Expect::Errno(EINVAL),
            Some(id) if add && active.contains(&id) => Expect::Errno(EEXIST),
            Some(_) if add => Expect::Ok,
            Some(id) if active.contains(&id) => Expect::Ok,
            Some(_) => Expect::Errno(ENOENT),
            None => Expect::Allowed,
        },
        // Removal matches an irqfd on its label alone (SPEC F-5), so only
        // ADD checks its flags.
        (GUNYAH_FN_IRQFD, Known::Irqfd { flags, not_open }) if add => {
            if flags & !1 != 0 {
                Expect::Errno(EINVAL)
            } else if *not_open {
                Expect::Errno(EBADF)
            } else {
                Expect::Allowed
            }
        }
        (
            GUNYAH_FN_IOEVENTFD,
            Known::Ioevent {
                flags,
                len,
                addr,
                not_open,
            },
        ) => {
            let datamatch = flags & 1 != 0;
            // Flags, then length, range and DATAMATCH, then the descriptor.
            if !add {
                // G16 compares flags on removal (ENOENT), lendvm refuses
                // unknown ones (EINVAL): both allowed.
                Expect::Allowed
            } else if flags & !1 != 0
                || ![0, 1, 2, 4, 8].contains(len)
                || addr.checked_add(u64::from(*len)).is_none()
                || (*len == 0 && datamatch)
            {
                Expect::Errno(EINVAL)
            } else if *not_open {
                Expect::Errno(EBADF)
            } else {
                Expect::Allowed
            }
        }
        _ => Expect::Allowed,
    }
}
