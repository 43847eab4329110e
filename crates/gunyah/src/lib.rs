//! `liblendvm_gunyah.so`: unmodified Gunyah programs on KVM.
//!
//! Gunyah userspace (Qualcomm's test VMM, crosvm's Gunyah backend, ...)
//! drives VMs through ioctls on `/dev/gunyah`, which exists only on
//! Qualcomm's arm64 hardware. Loaded with `LD_PRELOAD` into a dynamically
//! linked program, this library serves `/dev/gunyah` and every object made
//! from it (VMs, vCPUs, guest memory) from lendvm, inside the program's
//! own process, so the program runs unchanged on any KVM host:
//!
//! ```text
//! LD_PRELOAD=liblendvm_gunyah.so ./my-gunyah-vmm
//! ```
//!
//! The library interposes the libc functions Gunyah programs reach the
//! kernel through (`exports`), finds Gunyah objects by the inode of the
//! descriptor (`table`), reads ioctl arguments (`front`), applies the
//! Gunyah compat profile (`compat`, DESIGN D13) and calls lendvm
//! (`backend`, the only module that does). Every other rule of the API is
//! lendvm's own (`binding`, `gmem`, `vmm`).
//!
//! Limits: the program must be dynamically linked against glibc (a static
//! program, or one that makes raw `syscall`s on Gunyah descriptors,
//! bypasses the library); descriptors passed to other processes (over a
//! socket or across exec) are plain memfds there; guest code must be x86-64
//! (Gunyah's own guests are aarch64).

#![deny(clippy::undocumented_unsafe_blocks)]
// Unit tests build without the exported symbols (see `exports`), which
// are what reaches most of the library.
#![cfg_attr(test, allow(dead_code))]

mod backend;
mod compat;
mod descriptors;
mod device;
mod devnode;
#[cfg(not(test))]
mod exports;
mod fdset;
mod front;
mod guard;
mod mappings;
mod mem;
mod next;
mod standin;
mod table;
mod vcpu;
mod vm;
