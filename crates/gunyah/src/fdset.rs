//! Which descriptor numbers may name a Gunyah object: a superset, kept as
//! an atomic bitmap so `close`, `dup`, `mmap`, `fallocate` and `ftruncate`
//! on every other descriptor pass through after one load and a bit test.
//!
//! A bit is set for every descriptor the library hands out and for every
//! copy made of a candidate through the interposed `dup*`/`fcntl`; it is
//! cleared when the descriptor is closed through the interposed calls.
//! Stale bits are harmless: the object table (by inode) decides.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Descriptors below this have a bit of their own.
const TRACKED: usize = 1 << 16;
static BITS: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];
/// Set once any descriptor at or above `TRACKED` became a candidate: from
/// then on every such descriptor is one.
static HIGH: AtomicBool = AtomicBool::new(false);

fn slot(fd: i32) -> Option<(usize, u64)> {
    let fd = usize::try_from(fd).ok()?;
    (fd < TRACKED).then(|| (fd / 64, 1u64 << (fd % 64)))
}

/// Could `fd` name a Gunyah object?
#[inline]
pub(crate) fn may_be_ours(fd: i32) -> bool {
    match slot(fd) {
        Some((i, bit)) => BITS[i].load(Ordering::Relaxed) & bit != 0,
        None => fd >= 0 && HIGH.load(Ordering::Relaxed),
    }
}

/// `fd` now names (or may name) a Gunyah object.
pub(crate) fn add(fd: i32) {
    match slot(fd) {
        Some((i, bit)) => {
            BITS[i].fetch_or(bit, Ordering::Relaxed);
        }
        None if fd >= 0 => HIGH.store(true, Ordering::Relaxed),
        None => {}
    }
}

/// `fd` was closed.
pub(crate) fn remove(fd: i32) {
    if let Some((i, bit)) = slot(fd) {
        BITS[i].fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Every candidate in `[first, last]` (close_range).
pub(crate) fn in_range(first: u32, last: u32) -> Vec<i32> {
    let last = (last as usize).min(TRACKED - 1);
    let mut out = Vec::new();
    let mut fd = first as usize;
    while fd <= last {
        let word = BITS[fd / 64].load(Ordering::Relaxed);
        if word == 0 {
            fd = (fd / 64 + 1) * 64;
            continue;
        }
        if word & (1u64 << (fd % 64)) != 0 {
            out.push(fd as i32);
        }
        fd += 1;
    }
    out
}

/// True if high descriptors may be candidates (close_range must look
/// beyond the bitmap).
pub(crate) fn high_candidates() -> bool {
    HIGH.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_add_and_remove_and_ranges_list_them() {
        assert!(!may_be_ours(700));
        add(700);
        add(701);
        add(900);
        assert!(may_be_ours(700) && may_be_ours(701) && !may_be_ours(702));
        assert_eq!(in_range(690, 800), vec![700, 701]);
        remove(700);
        assert!(!may_be_ours(700));
        assert_eq!(in_range(0, u32::MAX), vec![701, 900]);
        assert!(!may_be_ours(-1));
        add(-5);
        assert!(!may_be_ours(-5));
    }
}
