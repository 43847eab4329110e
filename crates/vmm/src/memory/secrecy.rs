//! DESIGN D11 in code: what lendvm does so that no copy of guest data
//! outlives its use outside guest memory. Buffers and registers that
//! carried guest data are overwritten with volatile stores (the compiler
//! may not drop them as dead), the stack a completed access used is laid
//! over, and vCPU run pages stay out of core dumps and children.

use kvm_bindings::kvm_regs;

/// Overwrite bytes that held guest data (DESIGN D11), in a way the
/// compiler cannot drop as a dead store.
pub(crate) fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, exclusively borrowed byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

/// Bytes of stack [`scrub_stack`] overwrites: more than the deepest call
/// chain below `guest_read` / `guest_writes` in a debug build (the access
/// vCPU's stub run through kvm-ioctls).
const SCRUB_BYTES: usize = 32 << 10;

/// Overwrite the stack below the caller (DESIGN D11). A completed guest
/// access leaves copies of the guest's bytes in the frames it returned
/// from (spilled arguments and temporaries, in debug builds especially)
/// that no [`wipe`] can name; this frame is laid over them.
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut area = [0u64; SCRUB_BYTES / 8];
    for word in area.iter_mut() {
        // SAFETY: `word` is a valid, exclusively borrowed u64; the volatile
        // write keeps the compiler from dropping the dead stores.
        unsafe { std::ptr::write_volatile(word, 0) };
    }
    std::hint::black_box(&area);
}

/// DESIGN D11: a vCPU's run structure carries guest data in transit (MMIO
/// data, the access vCPU's port exits): keep it out of core dumps and
/// children.
pub(crate) fn keep_run_private(fd: &mut kvm_ioctls::VcpuFd, mmap_size: usize) {
    let run: *mut kvm_bindings::kvm_run = fd.get_kvm_run();
    // SAFETY: `run` is the start of the vCPU's kvm_run mapping of
    // `mmap_size` bytes; advice does not change its contents.
    unsafe {
        libc::madvise(run.cast(), mmap_size, libc::MADV_DONTDUMP);
        libc::madvise(run.cast(), mmap_size, libc::MADV_DONTFORK);
    }
}

/// Overwrite registers lendvm copied out of a vCPU (they may hold guest data).
pub(crate) fn wipe_regs(regs: &mut kvm_regs) {
    // SAFETY: `regs` is a valid, aligned, exclusively borrowed plain-data
    // struct; a volatile write of its zero value cannot be elided.
    unsafe { std::ptr::write_volatile(regs, kvm_regs::default()) };
}
