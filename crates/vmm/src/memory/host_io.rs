//! The host reading and writing guest memory by guest address, through
//! the bindings (never through a guest mapping): refused on lent pages,
//! private files and unbound addresses, and all or nothing (DESIGN D4,
//! §6 invariant 4): every piece is checked before the first byte moves.

use std::ops::Range;

use gmem::GuestMemFile;

use super::MemState;
use crate::error::{Error, Result};

impl MemState {
    /// The file pieces behind `[gpa, gpa + len)`, each checked for host
    /// access: (file, file offset, offset in the caller's buffer, length).
    fn host_pieces(&self, gpa: u64, len: u64) -> Result<Vec<(GuestMemFile, u64, usize, usize)>> {
        let end = gpa.checked_add(len).ok_or(Error::Overflow {
            what: "guest range",
            addr: gpa,
            size: len,
        })?;
        let mut pieces = Vec::new();
        let mut at = gpa;
        for (r, b) in self.bound.overlapping(gpa..end) {
            if r.start > at {
                break;
            }
            let piece: Range<u64> = at..r.end.min(end);
            // `overlapping` gave the binding that holds `piece.start`.
            let offset = b.info.file_offset_of(piece.start).unwrap_or(b.info.offset);
            let n = piece.end - piece.start;
            b.file.check_host_access(offset, n)?;
            pieces.push((
                b.file.clone(),
                offset,
                usize::try_from(piece.start - gpa).map_err(|_| too_long(len))?,
                usize::try_from(n).map_err(|_| too_long(len))?,
            ));
            at = piece.end;
        }
        if at < end {
            return Err(Error::NotBound { gpa: at });
        }
        Ok(pieces)
    }

    /// Host read of guest memory; `buf` is untouched unless it succeeds.
    pub(crate) fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        // Every piece is checked first. Under this VM's lock no page of its
        // bindings can become lent (only this VM lends them, and it needs
        // the lock), so the copies below cannot be refused.
        for (file, offset, at, n) in self.host_pieces(gpa, buf.len() as u64)? {
            file.read_at(offset, &mut buf[at..at + n])?;
        }
        Ok(())
    }

    /// Host write of guest memory; nothing is written unless all of it can be.
    pub(crate) fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<()> {
        for (file, offset, at, n) in self.host_pieces(gpa, data.len() as u64)? {
            file.write_at(offset, &data[at..at + n])?;
        }
        Ok(())
    }
}

fn too_long(len: u64) -> Error {
    Error::HostAccessTooLong { len }
}
