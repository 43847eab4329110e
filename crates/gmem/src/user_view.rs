//! Mappings a program made of a guest memory file itself, with `mmap(2)`
//! on the file's descriptor (the Gunyah preload library hands programs
//! that descriptor, DESIGN D13).
//!
//! lendvm did not make such a mapping and cannot take it away, so it does
//! the next best thing: the mapping is registered like a [`crate::HostView`],
//! which keeps its pages from being lent while it lives (SPEC GM-MM-6: a
//! guest touching them gets a PAGE_FAULT exit with -EPERM, START fails when
//! they hold the DTB). Pages that were lent before the mapping was made
//! stay lent; [`UserView::lent_ranges`] names them so the owner of the
//! mapping can make them inaccessible until they come back.

use std::ops::Range;

use binding::PAGE_SIZE;

use crate::{Error, GuestMemFile};

/// A registered program mapping of `[offset, offset + len)` of a file.
/// Dropping it unregisters the mapping; drop it only after the mapping is
/// gone (munmap), as [`crate::HostView`] does.
pub struct UserView {
    file: GuestMemFile,
    id: u64,
    offset: u64,
    len: u64,
}

impl GuestMemFile {
    /// Register a mapping of `[offset, offset + len)` (whole pages, inside
    /// the file) that the program made itself. `shared` is false for a
    /// `MAP_PRIVATE` mapping, which guest memory refuses (SPEC GM-MM-1:
    /// EINVAL); a private guest_memfd refuses every host mapping.
    pub fn add_user_view(&self, offset: u64, len: u64, shared: bool) -> Result<UserView, Error> {
        if !shared {
            return Err(Error::PrivateMapping);
        }
        if self.kind().is_private() {
            return Err(Error::Private);
        }
        let out_of_bounds = || Error::OutOfBounds {
            offset,
            len,
            size: self.size(),
        };
        let end = offset.checked_add(len).ok_or_else(out_of_bounds)?;
        if len == 0
            || end > self.size()
            || !offset.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(out_of_bounds());
        }
        let id = self
            .lock()
            .add_user_view(offset / PAGE_SIZE..end / PAGE_SIZE)?;
        Ok(UserView {
            file: self.clone(),
            id,
            offset,
            len,
        })
    }
}

impl UserView {
    /// Offset of the mapping in its file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty mapping (never: a view covers at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file the mapping shows.
    pub fn file(&self) -> &GuestMemFile {
        &self.file
    }

    /// The parts of the mapping whose pages are lent to a VM right now, as
    /// file byte ranges: the host must not touch them. They were lent
    /// before the mapping was made (the view keeps others from being lent)
    /// and stay so until their VM gives them back.
    pub fn lent_ranges(&self) -> Vec<Range<u64>> {
        let first = self.offset / PAGE_SIZE;
        let pages = first..first + self.len / PAGE_SIZE;
        self.file
            .lock()
            .runs(pages)
            .into_iter()
            .filter(|(_, s)| s.is_lent())
            .map(|(r, _)| r.start * PAGE_SIZE..r.end * PAGE_SIZE)
            .collect()
    }
}

impl Drop for UserView {
    fn drop(&mut self) {
        self.file.lock().remove_view(self.id);
    }
}

impl std::fmt::Debug for UserView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserView")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}
