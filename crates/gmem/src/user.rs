//! The caller's own memory, lent to a VM (the legacy `LEND_USER_MEM`).
//!
//! How the host loses access: the caller's pages are replaced, in place,
//! by a mapping of a lendvm memfd that holds their content and has no
//! access at all (`PROT_NONE`), so any host load or store there faults
//! (SIGSEGV). The VM uses the memfd through lendvm's own mapping of it.
//! When the lend ends the memfd is zeroed (DESIGN D5) and the range becomes
//! readable and writable again: the caller gets its range back, zero-filled
//! and still backed by that memfd.

use std::os::fd::AsRawFd;

use binding::PAGE_SIZE;

use crate::{Error, GuestMemFile};

/// Check that `[addr, addr + len)` (page-aligned) is mapped in this
/// process, for a memslot over the caller's own memory (the legacy
/// `SET_USER_MEM_REGION` share): EFAULT ([`Error::UserMemory`]) for a hole,
/// which KVM itself would accept and then fail the guest's access on.
pub fn check_user_memory(addr: u64, len: u64) -> Result<(), Error> {
    crate::sys::check_mapped(addr, len)
}

/// A range of the caller's address space lent to a VM.
pub struct LentUserMemory {
    addr: u64,
    len: u64,
    file: GuestMemFile,
}

impl LentUserMemory {
    /// Take `[addr, addr + len)` from the host: move its content into a new
    /// memfd, then make the range inaccessible.
    ///
    /// # Safety
    ///
    /// The range must be memory of this process that the caller owns:
    /// nothing may hold a reference into it or access it until the returned
    /// value is dropped (a range that is not mapped and readable, such as
    /// one lent already, is refused with EFAULT and left as it was). Afterwards it is a
    /// shared mapping of lendvm's memfd: the caller must not rely on its
    /// original backing (e.g. a file it mapped there).
    pub unsafe fn lend(addr: u64, len: u64) -> Result<LentUserMemory, Error> {
        let out_of_bounds = Error::OutOfBounds {
            offset: addr,
            len,
            size: len,
        };
        if len == 0 || !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(out_of_bounds);
        }
        let (Ok(size), Some(_)) = (usize::try_from(len), addr.checked_add(len)) else {
            return Err(out_of_bounds);
        };
        let file = GuestMemFile::memfd(len, binding::file_flags::CLOEXEC)?;
        // Copied without trusting the range: an unmapped or unreadable page
        // (e.g. one lent already) is EFAULT, not a fault (SPEC §2.13).
        crate::sys::check_mapped(addr, len)?;
        let view = file.view(0, len)?;
        crate::sys::copy_own_memory(addr, &view)?;
        drop(view);
        // SAFETY: MAP_FIXED replaces exactly the caller's range, which the
        // caller owns and guarantees nothing accesses; the new mapping is of
        // a memfd at least `size` bytes long.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                size,
                libc::PROT_NONE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os("mmap of lent user memory"));
        }
        // DESIGN D11. Advice on a shared file mapping of ours cannot fail;
        // if it ever did, the lend itself still holds.
        let _ = crate::sys::keep_private(addr as *mut u8, size);
        Ok(LentUserMemory { addr, len, file })
    }

    /// The memfd holding the memory, for the VM's memslot.
    pub fn file(&self) -> &GuestMemFile {
        &self.file
    }

    /// Address of the lent range in the caller's address space.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length of the lent range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty range (never: lending needs at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for LentUserMemory {
    fn drop(&mut self) {
        // The VM is gone (or the region removed): zero, then give back.
        if self.file.punch_hole(0, self.len).is_err() {
            let zeros = vec![0u8; 64 << 10];
            let mut at = 0;
            while at < self.len {
                let n = (self.len - at).min(zeros.len() as u64);
                let _ = self.file.write_at(at, &zeros[..n as usize]);
                at += n;
            }
        }
        // SAFETY: the range is the memfd mapping lend() installed; making
        // it accessible again hands it back to its owner.
        unsafe {
            libc::mprotect(
                self.addr as *mut libc::c_void,
                self.len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
    }
}
