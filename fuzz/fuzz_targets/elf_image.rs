//! The ELF loader (`vmm::loader::ElfImage::parse`, through
//! `vmm::boot::detect`) on arbitrary bytes, with the PVH note. It must
//! never panic, and an image it accepts must keep its promises: every
//! segment's bytes inside the file and its guest range free of wrap and
//! of overlap, the span covering them all, and the boot RAM a kernel
//! needs computable without wrapping or refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::boot::{KernelImage, detect};
use vmm::placement;

fuzz_target!(|data: &[u8]| {
    let Ok(KernelImage::Elf(elf)) = detect(data) else {
        return;
    };
    assert!(!elf.segments.is_empty());
    let span = elf.span();
    for (i, s) in elf.segments.iter().enumerate() {
        let file_end = s
            .file_offset
            .checked_add(s.file_size)
            .expect("file range wraps");
        assert!(
            file_end <= data.len() as u64,
            "segment {} past the file",
            s.index
        );
        assert!(s.file_size <= s.mem_size);
        let end = s
            .guest_addr
            .checked_add(s.mem_size)
            .expect("guest range wraps");
        assert!(span.start <= s.guest_addr && end <= span.end);
        for t in &elf.segments[i + 1..] {
            let t_end = t.guest_addr + t.mem_size;
            assert!(
                end <= t.guest_addr || t_end <= s.guest_addr,
                "segments {} and {} overlap",
                s.index,
                t.index
            );
        }
    }
    // What the command line does with a PVH kernel before any VM exists.
    if let Ok(end) = placement::boot_ram_end(span.end) {
        assert!(end >= span.end && end % placement::KERNEL_ALIGN == 0);
    }
});
