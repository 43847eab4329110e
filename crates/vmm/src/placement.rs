//! Where a standard boot puts the kernel, the initrd and the command line:
//! pure arithmetic over values an image or a user controls, checked so
//! that no value can wrap an address (a PVH segment near 2^64, an
//! `init_size` near 4 GiB, an initrd larger than RAM). `boot` applies the
//! results; the command line checks a kernel against its RAM with the same
//! functions before any VM exists; the fuzz target `boot_placement` drives
//! them with arbitrary values.

use std::ops::Range;
/// Kernels get their RAM written in whole 2 MiB pages from address 0.
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// End of the legacy hole (EBDA, VGA, BIOS) below 1 MiB: the kernel's
/// default load address.
pub const HIMEM_START: u64 = 0x10_0000;
const PAGE: u64 = 4096;

/// Why a kernel, initrd or command line cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// An initrd of zero bytes.
    #[error("the initrd is empty (0 bytes)")]
    EmptyInitrd,
    /// The initrd does not fit between the kernel and the end of low RAM.
    #[error(
        "guest RAM [{low_start:#x}, {end:#x}) has no room for a {len}-byte ({len:#x}) initrd above the kernel (which ends at {floor:#x})"
    )]
    NoRoomForInitrd {
        /// Start of low RAM.
        low_start: u64,
        /// Where the initrd must end by (low RAM's end or the kernel's limit).
        end: u64,
        /// The initrd's size.
        len: u64,
        /// The end of the kernel.
        floor: u64,
    },
    /// The command line (with its NUL) is longer than the kernel takes.
    #[error("the command line is {len} bytes; this kernel takes at most {max}")]
    CmdlineTooLong {
        /// Bytes, without the NUL.
        len: u64,
        /// Bytes the kernel takes, without the NUL.
        max: u64,
    },
    /// A NUL inside the command line would cut it short.
    #[error("the command line has a NUL byte at offset {at}")]
    CmdlineNul {
        /// Offset of the first NUL.
        at: usize,
    },
    /// RAM of this size does not fit below the end of the address space
    /// once the 32-bit MMIO hole is skipped.
    #[error("{size:#x} bytes of RAM do not fit in the guest address space around the MMIO hole")]
    RamTooLarge {
        /// Bytes of RAM asked for.
        size: u64,
    },
    /// The kernel's extent passes the end of the address space.
    #[error(
        "the kernel ends at {end}, past the end of the 64-bit address space (rounded up to 2 MiB)"
    )]
    KernelWraps {
        /// Where it ends, as far as it can be said.
        end: String,
    },
}

/// The 32-bit MMIO hole every x86 VMM leaves below 4 GiB (devices, the
/// IOAPIC and LAPIC; lendvm's MMIO window, DESIGN D1).
pub const MMIO_HOLE: Range<u64> = 0xc000_0000..0x1_0000_0000;

/// Where a kernel's RAM of `size` bytes goes (DESIGN D12): from 0 up to
/// the MMIO hole, the rest from 4 GiB, as the e820 / PVH memory map will
/// say. One or two ranges, none empty.
pub fn ram_layout(size: u64) -> Result<Vec<Range<u64>>, PlaceError> {
    let low = size.min(MMIO_HOLE.start);
    let mut ranges = Vec::with_capacity(2);
    if low > 0 {
        ranges.push(0..low);
    }
    let high = size - low;
    if high > 0 {
        let end = MMIO_HOLE
            .end
            .checked_add(high)
            .ok_or(PlaceError::RamTooLarge { size })?;
        ranges.push(MMIO_HOLE.end..end);
    }
    Ok(ranges)
}

/// The RAM a standard boot writes: from 0 to the kernel's end rounded up
/// to [`KERNEL_ALIGN`] (boot structures below 1 MiB, the kernel above).
pub fn boot_ram_end(kernel_end: u64) -> Result<u64, PlaceError> {
    kernel_end
        .checked_next_multiple_of(KERNEL_ALIGN)
        .ok_or_else(|| PlaceError::KernelWraps {
            end: format!("{kernel_end:#x}"),
        })
}

/// The range a bzImage occupies once loaded at 1 MiB: the larger of the
/// file (an upper bound of its protected-mode part) and its header's
/// `init_size` (the room it decompresses in).
pub fn bzimage_extent(init_size: u32, image_len: u64) -> Result<Range<u64>, PlaceError> {
    let len = u64::from(init_size).max(image_len);
    let end = HIMEM_START
        .checked_add(len)
        .ok_or_else(|| PlaceError::KernelWraps {
            end: format!("{HIMEM_START:#x} + {len:#x}"),
        })?;
    Ok(HIMEM_START..end)
}

/// Where an initrd of `len` bytes goes: page-aligned, as high as possible
/// below `min(low.end, max_end)`, at or above `floor` (the kernel's end)
/// and inside `low`.
pub fn initrd(
    low: Range<u64>,
    floor: u64,
    max_end: u64,
    len: u64,
) -> Result<Range<u64>, PlaceError> {
    if len == 0 {
        return Err(PlaceError::EmptyInitrd);
    }
    let end = low.end.min(max_end);
    let no_room = PlaceError::NoRoomForInitrd {
        low_start: low.start,
        end,
        len,
        floor,
    };
    let start = end.checked_sub(len).ok_or(no_room.clone())? & !(PAGE - 1);
    if start < floor || start < low.start {
        return Err(no_room);
    }
    // start + len <= end: start was rounded down from end - len.
    Ok(start..start + len)
}

/// The command line as the kernel reads it: the bytes and a NUL, at most
/// `max` bytes in all.
pub fn cmdline(cmdline: &str, max: u64) -> Result<Vec<u8>, PlaceError> {
    if let Some(at) = cmdline.bytes().position(|b| b == 0) {
        return Err(PlaceError::CmdlineNul { at });
    }
    let len = cmdline.len() as u64;
    if len >= max {
        return Err(PlaceError::CmdlineTooLong {
            len,
            max: max.saturating_sub(1),
        });
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 9 item 3: the 2 MiB round-up of a kernel near 2^64 wrapped to 0.
    #[test]
    fn a_kernel_ending_near_the_top_of_the_address_space_is_refused() {
        assert_eq!(boot_ram_end(0x10_0001), Ok(0x20_0000));
        assert_eq!(boot_ram_end(0x20_0001), Ok(0x40_0000));
        assert_eq!(boot_ram_end(0x20_0000), Ok(0x20_0000));
        assert_eq!(boot_ram_end(0), Ok(0));
        let err = boot_ram_end(0xffff_ffff_ffe0_1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kernel ends at 0xffffffffffe01000, past the end of the 64-bit address space (rounded up to 2 MiB)"
        );
        assert!(boot_ram_end(u64::MAX).is_err());
    }

    #[test]
    fn a_bzimage_takes_the_larger_of_its_file_and_init_size() {
        assert_eq!(bzimage_extent(0x80_0000, 0x1000), Ok(0x10_0000..0x90_0000));
        assert_eq!(bzimage_extent(0x1000, 0x20_0000), Ok(0x10_0000..0x30_0000));
        assert!(bzimage_extent(0, u64::MAX).is_err());
    }

    #[test]
    fn the_initrd_goes_page_aligned_at_the_top_of_low_ram() {
        let low = 0x10_0000..0x400_0000;
        assert_eq!(
            initrd(low.clone(), 0x20_0000, u64::MAX, 0x1800),
            Ok(0x3ff_e000..0x3ff_f800)
        );
        // The kernel's own limit (initrd_addr_max + 1) wins when lower.
        assert_eq!(
            initrd(low.clone(), 0x20_0000, 0x100_0000, 0x1000),
            Ok(0xff_f000..0x100_0000)
        );
    }

    // Issue 9 item 4.
    #[test]
    fn an_empty_or_oversized_initrd_says_which() {
        let low = 0x10_0000..0x400_0000;
        assert_eq!(
            initrd(low.clone(), 0x20_0000, u64::MAX, 0)
                .unwrap_err()
                .to_string(),
            "the initrd is empty (0 bytes)"
        );
        let err = initrd(low.clone(), 0x20_0000, u64::MAX, 0x400_0000).unwrap_err();
        assert!(
            err.to_string().contains("no room for a 67108864-byte"),
            "{err}"
        );
        // Larger than all of memory: no wrap below zero.
        assert!(initrd(low.clone(), 0, u64::MAX, u64::MAX).is_err());
        // Above the kernel, not over it.
        assert!(initrd(low, 0x3ff_f000, u64::MAX, 0x1800).is_err());
    }

    #[test]
    fn the_command_line_gets_its_nul_and_its_limit() {
        assert_eq!(cmdline("quiet", 6), Ok(b"quiet\0".to_vec()));
        assert_eq!(
            cmdline("quiet", 5),
            Err(PlaceError::CmdlineTooLong { len: 5, max: 4 })
        );
        assert_eq!(cmdline("a\0b", 64), Err(PlaceError::CmdlineNul { at: 1 }));
        assert!(cmdline("", 0).is_err());
        assert_eq!(cmdline("", 1), Ok(vec![0]));
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    // DESIGN D12: RAM below the hole, the rest above 4 GiB.
    #[test]
    fn kernel_ram_skips_the_mmio_hole() {
        const G: u64 = 1 << 30;
        assert_eq!(ram_layout(256 << 20).unwrap(), vec![0..256 << 20]);
        assert_eq!(ram_layout(3 * G).unwrap(), vec![0..3 * G]);
        assert_eq!(ram_layout(4 * G).unwrap(), vec![0..3 * G, 4 * G..5 * G]);
        assert_eq!(ram_layout(64 * G).unwrap(), vec![0..3 * G, 4 * G..65 * G]);
        assert_eq!(ram_layout(0).unwrap(), Vec::<Range<u64>>::new());
        assert!(matches!(
            ram_layout(u64::MAX),
            Err(PlaceError::RamTooLarge { .. })
        ));
    }
}
