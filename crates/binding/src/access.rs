//! Typed names for what a binding allows: who keeps access (share or lend)
//! and what the guest may do (read, write, execute). Only this module turns
//! them into the `uapi` bit encoding.

use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_RWX,
    GUNYAH_MEM_ALLOW_WRITE, GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND,
    GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP,
};

/// Who may touch the memory while the guest uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// The host loses access once the guest uses the memory (FORCE_LEND).
    Lend,
    /// Host and guest both keep access and see each other's writes (FORCE_SHARE).
    Share,
}

impl Access {
    /// The access value this typed access is encoded as.
    pub const fn bits(self) -> u32 {
        match self {
            Access::Lend => GUNYAH_MEM_FORCE_LEND,
            Access::Share => GUNYAH_MEM_FORCE_SHARE,
        }
    }

    /// The behaviour of a raw access value, if it is a valid one. DEFAULT
    /// behaves as lend (SPEC B-AC-3) although it is a distinct value for
    /// matching on removal (B-RM-2).
    pub const fn from_flags(flags: u32) -> Option<Access> {
        match flags & GUNYAH_MEM_ACCESS_MASK {
            GUNYAH_MEM_DEFAULT_ACCESS | GUNYAH_MEM_FORCE_LEND => Some(Access::Lend),
            GUNYAH_MEM_FORCE_SHARE => Some(Access::Share),
            _ => None,
        }
    }
}

/// What the guest may do with bound memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms {
    /// The guest may read.
    pub read: bool,
    /// The guest may write.
    pub write: bool,
    /// The guest may execute.
    pub exec: bool,
}

impl Perms {
    /// Read only.
    pub const R: Perms = Perms::new(true, false, false);
    /// Read and write.
    pub const RW: Perms = Perms::new(true, true, false);
    /// Read and execute.
    pub const RX: Perms = Perms::new(true, false, true);
    /// Read, write and execute.
    pub const RWX: Perms = Perms::new(true, true, true);

    /// Permissions from three booleans.
    pub const fn new(read: bool, write: bool, exec: bool) -> Perms {
        Perms { read, write, exec }
    }

    /// The permission bits of this set.
    pub const fn bits(self) -> u32 {
        (if self.read { GUNYAH_MEM_ALLOW_READ } else { 0 })
            | (if self.write {
                GUNYAH_MEM_ALLOW_WRITE
            } else {
                0
            })
            | (if self.exec { GUNYAH_MEM_ALLOW_EXEC } else { 0 })
    }

    /// The permission bits found in raw MAP_MEM flags.
    pub const fn from_flags(flags: u32) -> Perms {
        Perms::new(
            flags & GUNYAH_MEM_ALLOW_READ != 0,
            flags & GUNYAH_MEM_ALLOW_WRITE != 0,
            flags & GUNYAH_MEM_ALLOW_EXEC != 0,
        )
    }

    /// True when no permission is granted.
    pub const fn is_empty(self) -> bool {
        !(self.read || self.write || self.exec)
    }
}

impl std::fmt::Display for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x')
        )
    }
}

/// Raw MAP_MEM flags for a typed access and permission set.
pub const fn map_flags(access: Access, perms: Perms) -> u32 {
    access.bits() | perms.bits()
}

/// The flags of one binding in typed form: how the access was asked for
/// and what the guest may do. Stored in the `uapi` (seed 004) encoding,
/// which is what [`BindingInfo::flags`](crate::BindingInfo) records.
///
/// Only [`MapFlags::decode`] turns raw bits into this type, so a value
/// always holds a valid access value and no unknown bits; whether the
/// permission set may be empty is a MAP_MEM rule (SPEC B-ADD-5) that the
/// registry checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapFlags(u32);

impl MapFlags {
    /// Explicit share or lend with `perms`.
    pub const fn new(access: Access, perms: Perms) -> MapFlags {
        MapFlags(map_flags(access, perms))
    }

    /// The resource manager's default access, which lends (SPEC B-AC-3)
    /// but is a value of its own when an UNMAP is matched (B-RM-2).
    pub const fn default_access(perms: Perms) -> MapFlags {
        MapFlags(GUNYAH_MEM_DEFAULT_ACCESS | perms.bits())
    }

    /// Decode raw MAP_MEM flags (`uapi` encoding) into the binding's flags
    /// and the UNMAP bit, in the SPEC's order: unknown bits (B-ADD-4), no
    /// permission (B-ADD-5), invalid access value (B-ADD-6), all EINVAL.
    pub fn decode(raw: u32) -> Result<(MapFlags, bool), crate::Error> {
        let unknown = raw & !KNOWN_MAP_FLAGS;
        if unknown != 0 {
            return Err(crate::Error::UnknownMapFlags(unknown));
        }
        if raw & GUNYAH_MEM_ALLOW_RWX == 0 {
            return Err(crate::Error::NoPermission);
        }
        if Access::from_flags(raw).is_none() {
            return Err(crate::Error::BadAccess(raw & GUNYAH_MEM_ACCESS_MASK));
        }
        Ok((
            MapFlags(raw & !GUNYAH_MEM_UNMAP),
            raw & GUNYAH_MEM_UNMAP != 0,
        ))
    }

    /// Share or lend (DEFAULT lends).
    pub const fn access(self) -> Access {
        match Access::from_flags(self.0) {
            Some(a) => a,
            None => Access::Lend,
        }
    }

    /// True if the access value is DEFAULT.
    pub const fn is_default_access(self) -> bool {
        self.0 & GUNYAH_MEM_ACCESS_MASK == GUNYAH_MEM_DEFAULT_ACCESS
    }

    /// What the guest may do.
    pub const fn perms(self) -> Perms {
        Perms::from_flags(self.0)
    }

    /// The raw bits (UNMAP clear).
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// Every bit MAP_MEM knows about (SPEC B-ADD-4).
pub(crate) const KNOWN_MAP_FLAGS: u32 =
    GUNYAH_MEM_ALLOW_RWX | GUNYAH_MEM_ACCESS_MASK | GUNYAH_MEM_UNMAP;

/// Flags of a guest memory file (SPEC §1.4, GM-1).
pub mod file_flags {
    /// The file descriptor is closed on exec.
    pub const CLOEXEC: u64 = 1 << 0;
    /// Bindings of the file are placed in huge-page (2 MiB) units.
    pub const ALLOW_HUGEPAGE: u64 = 1 << 1;
    /// Every flag a guest memory file accepts.
    pub const ALL: u64 = CLOEXEC | ALLOW_HUGEPAGE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_round_trips_through_bits() {
        for a in [Access::Lend, Access::Share] {
            assert_eq!(Access::from_flags(a.bits()), Some(a));
        }
        // SPEC B-AC-3: DEFAULT behaves as lend.
        assert_eq!(
            Access::from_flags(GUNYAH_MEM_DEFAULT_ACCESS),
            Some(Access::Lend)
        );
        // SPEC B-ADD-6: any other access value is not an access.
        for v in (0..8u32).map(|v| v << 4) {
            let ok = [
                GUNYAH_MEM_DEFAULT_ACCESS,
                GUNYAH_MEM_FORCE_LEND,
                GUNYAH_MEM_FORCE_SHARE,
            ]
            .contains(&v);
            assert_eq!(Access::from_flags(v).is_some(), ok, "access value {v:#x}");
        }
    }

    #[test]
    fn perms_round_trip_through_bits() {
        for bits in 0..8u32 {
            let p = Perms::from_flags(bits);
            assert_eq!(p.bits(), bits);
            assert_eq!(p.is_empty(), bits == 0);
        }
        assert_eq!(Perms::RWX.bits(), GUNYAH_MEM_ALLOW_RWX);
        assert_eq!(Perms::RX.to_string(), "r-x");
        assert_eq!(
            map_flags(Access::Share, Perms::RW),
            GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_READ | GUNYAH_MEM_ALLOW_WRITE
        );
    }
}
