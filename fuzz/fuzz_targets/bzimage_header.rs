//! The bzImage path on arbitrary bytes: recognition (`vmm::boot::detect`),
//! the setup header checks (`bzimage_header`), and the placement the
//! header drives: the kernel's extent from `init_size`, its 2 MiB-rounded
//! RAM, the command line limit from `cmdline_size` and the initrd below
//! `initrd_addr_max`. Nothing may panic or wrap; what is placed must lie
//! where it was asked to.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::boot::{HIMEM_START, KernelImage, bzimage_header, detect};
use vmm::placement;

fuzz_target!(|data: &[u8]| {
    // Both the detected images and anything else go through the header
    // check: the command line calls it for every bzImage it is given.
    if let Ok(KernelImage::Elf(_)) = detect(data) {
        return;
    }
    let Ok(hdr) = bzimage_header(data) else {
        return;
    };
    let (init_size, cmdline_size, initrd_max) =
        (hdr.init_size, hdr.cmdline_size, hdr.initrd_addr_max);
    let Ok(kernel) = placement::bzimage_extent(init_size, data.len() as u64) else {
        return;
    };
    assert_eq!(kernel.start, HIMEM_START);
    assert!(kernel.end - kernel.start >= data.len() as u64);
    let Ok(ram_end) = placement::boot_ram_end(kernel.end) else {
        return;
    };
    assert!(ram_end >= kernel.end);
    // The command line the header allows, and one byte more.
    let max = u64::from(cmdline_size).max(255) + 1;
    let fits = "x".repeat((max - 1).min(1 << 16) as usize);
    if max - 1 <= 1 << 16 {
        assert_eq!(
            placement::cmdline(&fits, max).map(|b| b.len() as u64),
            Ok(max)
        );
        let longer = format!("{fits}y");
        assert!(placement::cmdline(&longer, max).is_err());
    }
    // An initrd at the top of 64 MiB of low RAM, below the kernel's limit.
    let low = HIMEM_START..64 << 20;
    let len = u64::from(data.first().copied().unwrap_or(1)) << 12;
    if let Ok(r) = placement::initrd(low.clone(), kernel.end, u64::from(initrd_max) + 1, len) {
        assert!(r.start >= kernel.end && r.end <= low.end && r.end <= u64::from(initrd_max) + 1);
        assert_eq!(r.end - r.start, len);
    }
});
