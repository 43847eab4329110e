//! Test support shared by lendvm's crates.
//!
//! Tests that need KVM use the real `/dev/kvm`. Where it is missing they
//! print `SKIP: no /dev/kvm` and pass, unless `LENDVM_REQUIRE_KVM` is set
//! (CI sets it wherever the device exists), in which case they fail: a
//! test must never skip silently where KVM is present.

#![deny(clippy::undocumented_unsafe_blocks)]

use kvm_ioctls::Kvm;

/// Open `/dev/kvm`, or decide the test is skipped. Returns `None` to skip;
/// panics (failing the test) when KVM is required but unusable.
pub fn kvm() -> Option<Kvm> {
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            if std::env::var_os("LENDVM_REQUIRE_KVM").is_some() {
                panic!("LENDVM_REQUIRE_KVM is set but /dev/kvm cannot be opened: {e}");
            }
            println!("SKIP: no /dev/kvm ({e})");
            None
        }
    }
}

/// `let Some(kvm) = testkit::kvm() else { return };` in one line.
#[macro_export]
macro_rules! require_kvm {
    () => {
        match $crate::kvm() {
            Some(kvm) => kvm,
            None => return,
        }
    };
}

/// Memory charged to this process's memory cgroup, in bytes (cgroup v1 or
/// v2), if the host exposes it. Guest memory (memfd or guest_memfd pages)
/// is charged here, so the difference across an operation shows memory
/// really allocated or freed.
pub fn cgroup_memory_bytes() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")
        } else if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.current")
        } else {
            continue;
        };
        if let Some(v) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(v);
        }
    }
    None
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
