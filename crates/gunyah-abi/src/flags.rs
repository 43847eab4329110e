//! MAP_MEM flags: the two encodings Gunyah userspace sends with the same
//! request number (SPEC §1.3), decoded into one typed [`MapFlags`].

use uapi::upstream as up;
use vmm::{Access, MapFlags, Perms};

use crate::{Error, Result};

/// Which bit layout MAP_MEM flags use. The request number is the same for
/// both, so the caller must know which one its programs were built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagEncoding {
    /// Android's `gunyah.h` (seed 004): lendvm's own `uapi` encoding.
    #[default]
    Android,
    /// The upstream Gunyah patches (and Qualcomm's test VMM): LEND = 1,
    /// SHARE = 2, R/W/X = 0x10/0x20/0x40.
    Upstream,
}

/// Decode raw MAP_MEM flags into the binding's flags and the UNMAP bit,
/// checking in the SPEC's order: unknown bits (B-ADD-4), no permission
/// (B-ADD-5), a bad access value (B-ADD-6), all EINVAL.
pub fn decode_map_flags(raw: u32, encoding: FlagEncoding) -> Result<(MapFlags, bool)> {
    match encoding {
        FlagEncoding::Android => Ok(MapFlags::decode(raw)?),
        FlagEncoding::Upstream => {
            let known =
                up::GUNYAH_MEM_ALLOW_RWX | up::GUNYAH_MEM_ACCESS_MASK | up::GUNYAH_MEM_UNMAP;
            if raw & !known != 0 {
                return Err(Error::Binding(vmm::BindingError::UnknownMapFlags(
                    raw & !known,
                )));
            }
            let perms = Perms::new(
                raw & up::GUNYAH_MEM_ALLOW_READ != 0,
                raw & up::GUNYAH_MEM_ALLOW_WRITE != 0,
                raw & up::GUNYAH_MEM_ALLOW_EXEC != 0,
            );
            if perms.is_empty() {
                return Err(Error::Binding(vmm::BindingError::NoPermission));
            }
            let flags = match raw & up::GUNYAH_MEM_ACCESS_MASK {
                up::GUNYAH_MEM_DEFAULT_ACCESS => MapFlags::default_access(perms),
                up::GUNYAH_MEM_FORCE_LEND => MapFlags::new(Access::Lend, perms),
                up::GUNYAH_MEM_FORCE_SHARE => MapFlags::new(Access::Share, perms),
                v => return Err(Error::Binding(vmm::BindingError::BadAccess(v))),
            };
            Ok((flags, raw & up::GUNYAH_MEM_UNMAP != 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC §1.3, GUNYAH-USERSPACE §1.2: the values Qualcomm's test VMM sends.
    #[test]
    fn upstream_values_decode_to_the_same_bindings_as_android_ones() {
        let share_rwx = up::GUNYAH_MEM_FORCE_SHARE | up::GUNYAH_MEM_ALLOW_RWX;
        let (f, unmap) = decode_map_flags(share_rwx, FlagEncoding::Upstream).unwrap();
        assert_eq!(f, MapFlags::new(Access::Share, Perms::RWX));
        assert!(!unmap);
        let (f, unmap) =
            decode_map_flags(share_rwx | up::GUNYAH_MEM_UNMAP, FlagEncoding::Upstream).unwrap();
        assert_eq!(f, MapFlags::new(Access::Share, Perms::RWX));
        assert!(unmap);
        let (f, _) = decode_map_flags(up::GUNYAH_MEM_ALLOW_RWX, FlagEncoding::Upstream).unwrap();
        assert!(f.is_default_access() && f.access() == Access::Lend);
        let android = uapi::GUNYAH_MEM_FORCE_LEND | uapi::GUNYAH_MEM_ALLOW_RWX;
        let (a, _) = decode_map_flags(android, FlagEncoding::Android).unwrap();
        let (u, _) = decode_map_flags(
            up::GUNYAH_MEM_FORCE_LEND | up::GUNYAH_MEM_ALLOW_RWX,
            FlagEncoding::Upstream,
        )
        .unwrap();
        assert_eq!(a, u);
    }

    // SPEC B-ADD-4..6 in either encoding.
    #[test]
    fn bad_flags_are_einval_in_both_encodings() {
        for enc in [FlagEncoding::Android, FlagEncoding::Upstream] {
            for raw in [1 << 12, 0] {
                let e = decode_map_flags(raw, enc).unwrap_err();
                assert_eq!(e.errno(), libc::EINVAL, "{raw:#x} {enc:?}");
            }
        }
        // The upstream access value 3 is not an access.
        let e =
            decode_map_flags(3 | up::GUNYAH_MEM_ALLOW_READ, FlagEncoding::Upstream).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        // TV's DEFAULT|RWX (0x70) read as Android: no permission bit.
        let e = decode_map_flags(0x70, FlagEncoding::Android).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }
}
