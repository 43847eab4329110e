//! A VM's access vCPU: how lendvm reads and writes a private guest_memfd
//! on a guest's behalf.
//!
//! The host can never touch a private file's memory (the kernel refuses),
//! yet a guest access that KVM hands to userspace (an instruction KVM
//! emulates because part of it hit an address without a slot) must be
//! completed against it. Only guest code can reach the memory, so each VM
//! that needs it gets one hidden vCPU that runs a four-instruction stub in
//! lendvm's system region: load or store 1, 2, 4 or 8 bytes at RDI, then
//! `out` to a private port. It runs only while the VM's memory lock is
//! held, never runs guest code, and is wiped after every use: the value it
//! carried leaves its registers and lendvm's copies (DESIGN D11).
//!
//! Its TSS, page tables and stubs are lendvm's access region, read-only to
//! every guest and present in every VM (`x86::ACCESS_REGION_BASE`). Guest
//! addresses beyond its identity map cannot be completed and the guest's
//! vCPU ends CRASHED (`Crash::Uncompletable`).

use kvm_bindings::{CpuId, kvm_regs};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::AccessVcpuSource;
use super::secrecy::{keep_run_private, wipe_regs};

use crate::error::{Error, Result};
use crate::native_abi::IDENTITY_MAP_SIZE;
use crate::x86::{self, STUB_BASE, STUB_PORT, STUB_STRIDE};

/// The stub for a load (`write == false`) or store of `len` bytes.
fn stub(write: bool, len: usize) -> Option<u64> {
    let size = match len {
        1 => 0,
        2 => 1,
        4 => 2,
        8 => 3,
        _ => return None,
    };
    Some(STUB_BASE + (u64::from(write) * 4 + size) * STUB_STRIDE)
}

/// The hidden vCPU of one VM.
pub(crate) struct AccessVcpu {
    fd: VcpuFd,
}

impl AccessVcpu {
    /// Create it with id `id` (reserved by the VM: guests never see it).
    pub(crate) fn new(source: &AccessVcpuSource, cpuid: &CpuId) -> Result<AccessVcpu> {
        let mut fd = source
            .vm_fd
            .create_vcpu(source.id)
            .map_err(|e| Error::kvm("KVM_CREATE_VCPU (access vCPU)", e))?;
        fd.set_cpuid2(cpuid)
            .map_err(|e| Error::kvm("KVM_SET_CPUID2 (access vCPU)", e))?;
        let mut sregs = fd
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS (access vCPU)", e))?;
        x86::access_sregs(&mut sregs);
        fd.set_sregs(&sregs)
            .map_err(|e| Error::kvm("KVM_SET_SREGS (access vCPU)", e))?;
        keep_run_private(&mut fd, source.run_size);
        if source.irqchip {
            // With an in-kernel LAPIC a non-boot vCPU waits for INIT/SIPI.
            fd.set_mp_state(kvm_bindings::kvm_mp_state {
                mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
            })
            .map_err(|e| Error::kvm("KVM_SET_MP_STATE (access vCPU)", e))?;
        }
        Ok(AccessVcpu { fd })
    }

    /// True if the stubs can reach `[gpa, gpa + len)`.
    pub(crate) fn reaches(gpa: u64, len: usize) -> bool {
        gpa.checked_add(len as u64)
            .is_some_and(|end| end <= IDENTITY_MAP_SIZE)
    }

    /// Run one stub with RDI = `gpa` and RAX = `value`; returns RBX.
    fn run_stub(&mut self, rip: u64, gpa: u64, value: u64) -> Result<u64> {
        let mut regs = kvm_regs {
            rip,
            rdi: gpa,
            rax: value,
            rflags: 2,
            ..Default::default()
        };
        self.fd
            .set_regs(&regs)
            .map_err(|e| Error::kvm("KVM_SET_REGS (access vCPU)", e))?;
        wipe_regs(&mut regs);
        let ran = loop {
            match self.fd.run() {
                Ok(VcpuExit::IoOut(STUB_PORT, _)) => break Ok(()),
                // A signal meant for this thread; the stub has not run yet
                // or will re-run idempotently.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => break Err(Error::kvm("KVM_RUN (access vCPU)", e)),
                Ok(_) => {
                    break Err(Error::AccessVcpuStopped {
                        exit_reason: self.fd.get_kvm_run().exit_reason,
                    });
                }
            }
        };
        let mut out = self
            .fd
            .get_regs()
            .map_err(|e| Error::kvm("KVM_GET_REGS (access vCPU)", e))?;
        let value = out.rbx;
        wipe_regs(&mut out);
        // Leave nothing of the value in the vCPU itself.
        let _ = self.fd.set_regs(&kvm_regs {
            rflags: 2,
            ..Default::default()
        });
        ran.map(|()| value)
    }

    /// Load `buf.len()` (1, 2, 4 or 8) bytes at `gpa`.
    pub(crate) fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let rip = stub(false, buf.len()).ok_or_else(|| bad_len(buf.len()))?;
        let mut value = self.run_stub(rip, gpa, 0)?.to_le_bytes();
        let n = buf.len();
        buf.copy_from_slice(&value[..n]);
        // SAFETY: a valid, exclusively borrowed local array.
        unsafe { std::ptr::write_volatile(&mut value, [0; 8]) };
        Ok(())
    }

    /// Store `data` (1, 2, 4 or 8 bytes) at `gpa`.
    pub(crate) fn write(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        let rip = stub(true, data.len()).ok_or_else(|| bad_len(data.len()))?;
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        // SAFETY: a valid, exclusively borrowed local array.
        unsafe { std::ptr::write_volatile(&mut bytes, [0; 8]) };
        self.run_stub(rip, gpa, value).map(drop)
    }
}

fn bad_len(len: usize) -> Error {
    Error::AccessWidth { len }
}

/// Split `[gpa, gpa + len)` into naturally sized pieces the stubs move
/// (each 1, 2, 4 or 8 bytes), in address order.
pub(crate) fn pieces(gpa: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut at = gpa;
    let end = gpa + len as u64;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let left = end - at;
        let n = [8u64, 4, 2, 1]
            .into_iter()
            .find(|n| *n <= left)
            .unwrap_or(1);
        let piece = (at, n as usize);
        at += n;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_range_in_stub_sizes() {
        let p: Vec<_> = pieces(0x1000, 15).collect();
        assert_eq!(p, vec![(0x1000, 8), (0x1008, 4), (0x100c, 2), (0x100e, 1)]);
        assert_eq!(pieces(5, 0).count(), 0);
    }

    #[test]
    fn stubs_never_put_the_value_on_the_port() {
        let code = x86::stub_code();
        for write in [false, true] {
            for len in [1, 2, 4, 8] {
                let at = (stub(write, len).unwrap() - STUB_BASE) as usize;
                let body = &code[at..at + STUB_STRIDE as usize];
                let out = body.windows(2).position(|w| w == [0xe6, 0xef]).unwrap();
                // `xor eax, eax` right before the `out`.
                assert_eq!(&body[out - 2..out], &[0x31, 0xc0]);
            }
        }
        assert!(stub(true, 3).is_none());
    }
}
