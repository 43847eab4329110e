//! What this library decides for the Gunyah compat profile (DESIGN D13)
//! beyond what lendvm's Gunyah ABI front applies (`gunyah_abi::compat`):
//! which MAP_MEM flag encoding the program speaks, and the size of the
//! run page it maps. Every rule of the API proper comes from `binding`,
//! `gmem` and `vmm`, through `gunyah-abi`.

use std::sync::OnceLock;

use gunyah_abi::FlagEncoding;

/// The environment variable that selects seed 004's encoding.
pub(crate) const ABI_VARIABLE: &str = "LENDVM_GUNYAH_ABI";

/// `android` (any case) selects seed 004's encoding; anything else, or
/// nothing, the upstream one (what Qualcomm's test VMM and upstream Gunyah
/// userspace send). The request number is the same for both, so it cannot
/// be told from the call (GUNYAH-USERSPACE §1.2).
pub(crate) fn encoding_from(value: Option<&str>) -> FlagEncoding {
    match value {
        Some(v) if v.eq_ignore_ascii_case("android") => FlagEncoding::Android,
        _ => FlagEncoding::Upstream,
    }
}

/// The encoding of this process, read once.
pub(crate) fn encoding() -> FlagEncoding {
    static ENCODING: OnceLock<FlagEncoding> = OnceLock::new();
    *ENCODING.get_or_init(|| encoding_from(std::env::var(ABI_VARIABLE).ok().as_deref()))
}

/// What VCPU_MMAP_SIZE answers: one page holds the 40-byte run structure
/// (SPEC F-4).
pub(crate) const VCPU_MMAP_SIZE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_setting_selects_android_only_when_asked() {
        assert_eq!(encoding_from(None), FlagEncoding::Upstream);
        assert_eq!(encoding_from(Some("upstream")), FlagEncoding::Upstream);
        assert_eq!(encoding_from(Some("Android")), FlagEncoding::Android);
    }
}
