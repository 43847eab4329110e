//! lendvm's test guests and what drives them, for tests, benchmarks and
//! the demo: the guest images (built from `guests/` by this crate's build
//! script), the host side of the holding cell's mailbox protocol, and the
//! setup lendvm's KVM tests share. Using lendvm as a library needs none of
//! it.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod holding_cell;
pub mod images;
pub mod testing;
