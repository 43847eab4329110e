//! Guest accesses completed on the guest's behalf.
//!
//! When an instruction touches an address KVM has no slot for (a first
//! touch of a lend binding) or memory its emulator cannot reach (a private
//! guest_memfd), KVM hands each piece of the access to userspace as an
//! MMIO exit: a *fragment* of at most 8 bytes inside one page. Wide and
//! page-crossing accesses come as several fragments. Each is resolved and
//! completed here, under the VM's memory lock, in one critical section:
//! nothing can unbind or reclaim the page between the check and the copy.
//! A write is all or nothing: every fragment of it is resolved before any
//! is stored, so a write that is half unbound stores no byte.

use std::ops::Range;

use super::access_vcpu::{AccessVcpu, pieces};
use super::{MemState, Touch};
use crate::error::Result;

use super::secrecy::{scrub_stack, wipe};

/// One piece of a guest access, as KVM reports it.
#[derive(Clone)]
pub(crate) struct Fragment {
    pub(crate) gpa: u64,
    /// 1 to 8.
    pub(crate) len: usize,
    pub(crate) is_write: bool,
    /// For writes, the bytes written.
    pub(crate) data: [u8; 8],
}

impl Fragment {
    /// A read of `len` bytes at `gpa`.
    pub(crate) fn read(gpa: u64, len: usize) -> Fragment {
        Fragment {
            gpa,
            len: len.min(8),
            is_write: false,
            data: [0; 8],
        }
    }

    /// A write of `data` (at most 8 bytes are kept) at `gpa`.
    pub(crate) fn write(gpa: u64, data: &[u8]) -> Fragment {
        let len = data.len().min(8);
        let mut d = [0u8; 8];
        d[..len].copy_from_slice(&data[..len]);
        Fragment {
            gpa,
            len,
            is_write: true,
            data: d,
        }
    }

    /// The bytes written.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl std::fmt::Debug for Fragment {
    // The data may be a guest's secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragment")
            .field("gpa", &format_args!("{:#x}", self.gpa))
            .field("len", &self.len)
            .field("is_write", &self.is_write)
            .finish()
    }
}

impl Drop for Fragment {
    fn drop(&mut self) {
        wipe(&mut self.data);
    }
}

/// How far completing an access got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completed {
    /// Done against memory.
    Done,
    /// Nothing is bound there.
    Unbound,
    /// A write to memory the guest may not write (SPEC R-5 -EPERM).
    WriteDenied,
    /// The memory cannot be given to the guest now (SPEC GM-MM-6 -EPERM).
    Refused,
    /// The memory is private and lendvm cannot reach it for the guest
    /// (no system region, or beyond the identity map).
    Uncompletable,
    /// The memory is private and is installed now: the guest should run
    /// the instruction again, natively, instead of having it completed.
    Reexecute,
}

/// Where a queue of writes stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteProgress {
    /// Leading fragments stored.
    pub(crate) stored: usize,
    /// The fragment that was not, and why, if one remains.
    pub(crate) blocked: Option<(usize, Completed)>,
}

impl MemState {
    /// Read `buf.len()` (at most 8) bytes at `gpa` for the guest, giving it
    /// the memory on a first touch. `buf` is untouched unless `Done`.
    ///
    /// For private memory given to the guest by this very touch, the
    /// answer is `Reexecute`: KVM's emulator can read private memory only
    /// through lendvm, and cannot write it at all for a locked
    /// read-modify-write (it goes through the host mapping, which the
    /// kernel refuses), so the guest is better served running the
    /// instruction itself now that the memory is installed. Memory that was
    /// installed already came back to KVM because the instruction needs
    /// its emulator anyway: its bytes are read through the access vCPU.
    pub(crate) fn guest_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<Completed> {
        let done = self.complete_read(gpa, buf);
        // Only a load that reached memory (or failed on the way) moved
        // guest data through the frames below; an MMIO exit, the common
        // case, did not, and pays no scrub.
        if matches!(done, Ok(Completed::Done) | Err(_)) {
            scrub_stack();
        }
        done
    }

    fn complete_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<Completed> {
        let (file, offset, paged) = match self.touch(gpa, false)? {
            Touch::Memory {
                file,
                offset,
                paged,
            } => (file, offset, paged),
            other => return Ok(refusal(other)),
        };
        if file.kind().is_private() {
            if paged {
                return Ok(Completed::Reexecute);
            }
            return self.via_access_vcpu(gpa, buf.len(), |v, at, n, done| {
                v.read(at, &mut buf[done..done + n])
            });
        }
        match file.read_for_guest(self.vm, offset, buf) {
            Ok(()) => {
                self.stats.completed_accesses += 1;
                Ok(Completed::Done)
            }
            // Under this VM's lock nothing can take a page the guest was
            // just given; a refusal here would be a state the guest must
            // not see as an error.
            Err(_) => Ok(Completed::Refused),
        }
    }

    /// Store queued write fragments, in order: all resolved first; stored
    /// up to the first that is not memory. If that one is a page fault
    /// (not a device access in `mmio_window`), nothing is stored.
    pub(crate) fn guest_writes(
        &mut self,
        frags: &[Fragment],
        mmio_window: &Range<u64>,
    ) -> Result<WriteProgress> {
        let done = self.complete_writes(frags, mmio_window);
        if done.as_ref().is_err() || done.as_ref().is_ok_and(|p| p.stored > 0) {
            scrub_stack();
        }
        done
    }

    fn complete_writes(
        &mut self,
        frags: &[Fragment],
        mmio_window: &Range<u64>,
    ) -> Result<WriteProgress> {
        let mut targets = Vec::with_capacity(frags.len());
        let mut blocked = None;
        for (i, f) in frags.iter().enumerate() {
            let why = match self.touch(f.gpa, true)? {
                Touch::Memory { file, offset, .. } => {
                    if file.kind().is_private()
                        && !(self.stubs && AccessVcpu::reaches(f.gpa, f.len))
                    {
                        Completed::Uncompletable
                    } else {
                        targets.push((file, offset));
                        continue;
                    }
                }
                other => refusal(other),
            };
            if why != Completed::Unbound || !mmio_window.contains(&f.gpa) {
                // A fault: the whole write waits, nothing is stored.
                return Ok(WriteProgress {
                    stored: 0,
                    blocked: Some((i, why)),
                });
            }
            // A device access: the memory before it is stored first.
            blocked = Some((i, why));
            break;
        }
        for (i, (file, offset)) in targets.iter().enumerate() {
            let f = &frags[i];
            let done = if file.kind().is_private() {
                self.via_access_vcpu(f.gpa, f.len, |v, at, n, done| {
                    v.write(at, &f.bytes()[done..done + n])
                })?
            } else {
                match file.write_for_guest(self.vm, *offset, f.bytes()) {
                    Ok(()) => Completed::Done,
                    Err(_) => Completed::Refused,
                }
            };
            if done != Completed::Done {
                return Ok(WriteProgress {
                    stored: i,
                    blocked: Some((i, done)),
                });
            }
            if !file.kind().is_private() {
                self.stats.completed_accesses += 1;
            }
        }
        Ok(WriteProgress {
            stored: targets.len(),
            blocked,
        })
    }

    /// Move `len` bytes at `gpa` through the access vCPU, in stub-sized
    /// pieces: `step(vcpu, address, piece length, bytes done so far)`.
    fn via_access_vcpu(
        &mut self,
        gpa: u64,
        len: usize,
        mut step: impl FnMut(&mut AccessVcpu, u64, usize, usize) -> Result<()>,
    ) -> Result<Completed> {
        if !self.stubs || !AccessVcpu::reaches(gpa, len) {
            return Ok(Completed::Uncompletable);
        }
        if self.access_vcpu.is_none() {
            let cpuid = (self.access.cpuid)()?;
            self.access_vcpu = Some(AccessVcpu::new(&self.access, &cpuid)?);
        }
        let Some(v) = self.access_vcpu.as_mut() else {
            return Ok(Completed::Uncompletable);
        };
        for (at, n) in pieces(gpa, len) {
            step(v, at, n, (at - gpa) as usize)?;
        }
        self.stats.completed_accesses += 1;
        Ok(Completed::Done)
    }
}

fn refusal(t: Touch) -> Completed {
    match t {
        Touch::Memory { .. } => Completed::Done,
        Touch::Unbound => Completed::Unbound,
        Touch::WriteDenied => Completed::WriteDenied,
        Touch::Refused => Completed::Refused,
    }
}
