//! Placement of the initrd and the kernel command line
//! (`vmm::placement`) with arbitrary numbers and text: low RAM, the
//! kernel's end, the kernel's initrd limit, the initrd's length, the
//! command line and its limit. Nothing may panic; a placed initrd is
//! page-aligned, exactly as long as asked, above the kernel and inside
//! low RAM and the limit; an accepted command line ends in its only NUL
//! and fits the limit.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmm::placement;

#[derive(Debug, Arbitrary)]
struct Input {
    low_start: u64,
    low_end: u64,
    floor: u64,
    max_end: u64,
    len: u64,
    /// Shift `len` down to plausible sizes most of the time.
    len_shift: u8,
    kernel_end: u64,
    init_size: u32,
    image_len: u64,
    cmdline: String,
    cmdline_max: u64,
}

fuzz_target!(|i: Input| {
    let len = i.len >> (i.len_shift % 64);
    match placement::initrd(i.low_start..i.low_end, i.floor, i.max_end, len) {
        Ok(r) => {
            assert_eq!(r.start % 4096, 0);
            assert_eq!(r.end - r.start, len);
            assert!(len > 0);
            assert!(r.start >= i.floor && r.start >= i.low_start);
            assert!(r.end <= i.low_end && r.end <= i.max_end);
        }
        Err(e) => assert_eq!(len == 0, e == placement::PlaceError::EmptyInitrd),
    }
    match placement::cmdline(&i.cmdline, i.cmdline_max) {
        Ok(b) => {
            assert_eq!(b.last(), Some(&0));
            assert_eq!(b.iter().filter(|&&c| c == 0).count(), 1);
            assert!((b.len() as u64) <= i.cmdline_max);
            assert_eq!(&b[..b.len() - 1], i.cmdline.as_bytes());
        }
        Err(_) => assert!(i.cmdline.contains('\0') || i.cmdline.len() as u64 >= i.cmdline_max),
    }
    if let Ok(end) = placement::boot_ram_end(i.kernel_end) {
        assert!(end >= i.kernel_end && end - i.kernel_end < placement::KERNEL_ALIGN);
    }
    if let Ok(r) = placement::bzimage_extent(i.init_size, i.image_len) {
        assert_eq!(r.end - r.start, u64::from(i.init_size).max(i.image_len));
    }
});
