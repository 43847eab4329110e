//! Scoped host views: a mapping of part of a guest memory file that exists
//! only while the view does, and blocks lending of its pages meanwhile.

use std::ops::Range;

use vm_memory::mmap::MmapRegion;
use vm_memory::volatile_memory::VolatileMemory;
use vm_memory::{FileOffset, VolatileSlice};

use crate::Error;
use crate::file::GuestMemFile;

/// A live host mapping of `[offset, offset + len)` of a guest memory file.
///
/// While it exists its pages cannot be lent (a guest touching them gets a
/// PAGE_FAULT exit with -EPERM, SPEC GM-MM-6); dropping it unmaps the range
/// and only then unregisters it. Accesses go through bounds-checked volatile
/// copies because a guest may write shared pages concurrently.
pub struct HostView {
    // Field order is drop order: the mapping goes before its registration,
    // so pages may be lent only once no host mapping of them is left.
    region: MmapRegion,
    registration: ViewRegistration,
    offset: u64,
}

/// The registration of a host mapping with its file: while it lives, the
/// pages the mapping covers cannot be lent. Drop it only after the mapping
/// is gone ([`HostView::into_parts`]).
pub struct ViewRegistration {
    file: GuestMemFile,
    id: u64,
}

impl Drop for ViewRegistration {
    fn drop(&mut self) {
        self.file.lock().remove_view(self.id);
    }
}

impl HostView {
    pub(crate) fn new(
        file: &GuestMemFile,
        offset: u64,
        len: u64,
        pages: Range<u64>,
    ) -> Result<HostView, Error> {
        let size = usize::try_from(len).map_err(|_| Error::OutOfBounds {
            offset,
            len,
            size: file.size(),
        })?;
        // Registering first (under the lock) refuses lent pages and keeps a
        // lend from starting before the mapping exists.
        let mut st = file.lock();
        let id = st.add_view(pages)?;
        let region = MmapRegion::build(
            Some(FileOffset::from_arc(file.inner.file.clone(), offset)),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        );
        let region = region
            .map_err(|e| crate::sys::mmap_error("mmap of a host view", e))
            .and_then(|r| crate::sys::keep_private(r.as_ptr(), size).map(|()| r));
        match region {
            Ok(region) => Ok(HostView {
                region,
                registration: ViewRegistration {
                    file: file.clone(),
                    id,
                },
                offset,
            }),
            Err(e) => {
                st.remove_view(id);
                Err(e)
            }
        }
    }

    /// Offset of the view in its file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the view in bytes.
    pub fn len(&self) -> usize {
        self.region().size()
    }

    /// True for an empty view (never: views cover at least one page).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the view maps.
    pub fn file(&self) -> &GuestMemFile {
        &self.registration.file
    }

    fn region(&self) -> &MmapRegion {
        &self.region
    }

    /// The mapping and its registration, for vm-memory users that need
    /// the `MmapRegion` itself (e.g. as a `GuestRegionMmap`). The pages stay
    /// unlendable until the registration is dropped, which must happen
    /// after the mapping is (drop order).
    pub fn into_parts(self) -> (MmapRegion, ViewRegistration) {
        (self.region, self.registration)
    }

    /// The whole view as a volatile slice, for vm-memory style access.
    pub fn as_volatile_slice(&self) -> VolatileSlice<'_> {
        self.region().as_volatile_slice()
    }

    fn slice(&self, at: usize, len: usize) -> Result<VolatileSlice<'_>, Error> {
        self.as_volatile_slice()
            .subslice(at, len)
            .map_err(|_| Error::OutOfBounds {
                offset: at as u64,
                len: len as u64,
                size: self.len() as u64,
            })
    }

    /// Copy `buf.len()` bytes out of the view, starting `at` bytes in.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.slice(at, buf.len())?.copy_to(buf);
        Ok(())
    }

    /// Copy `buf` into the view, starting `at` bytes in.
    pub fn write(&self, at: usize, buf: &[u8]) -> Result<(), Error> {
        self.slice(at, buf.len())?.copy_from(buf);
        Ok(())
    }

    /// Set `len` bytes starting `at` to `byte`.
    pub fn fill(&self, at: usize, len: usize, byte: u8) -> Result<(), Error> {
        let s = self.slice(at, len)?;
        // SAFETY: `slice` checked that [at, at + len) lies inside the live
        // mapping, which stays mapped while `self` is borrowed.
        unsafe { std::ptr::write_bytes(s.ptr_guard_mut().as_ptr(), byte, len) };
        Ok(())
    }
}

impl std::fmt::Debug for HostView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostView")
            .field("offset", &self.offset)
            .field("len", &self.len())
            .finish()
    }
}
