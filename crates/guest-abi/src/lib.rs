//! What lendvm and the guests it enters natively agree on, shared by both
//! sides: the host crates depend on it, and so do the freestanding guests
//! in `guests/` (built for bare metal, hence `no_std` and constants only).

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod holding_cell;
pub mod native;
