//! (d) Core dumps (DESIGN D11): a non-dumpable VMM leaves none, even with
//! RLIMIT_CORE unlimited and coredump_filter 0x7f; one made dumpable again
//! (the second layer) dumps without guest memory (MADV_DONTDUMP).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use super::child::Orders;
use super::scan::Found;
use super::{Vmm, start_vmm};

/// Where cores go, if this test can find them: `core_pattern` must name a
/// file in the dumping process's working directory (no pipe, no path).
fn plain_core_pattern() -> Option<String> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").ok()?;
    let pattern = pattern.trim().to_string();
    if pattern.starts_with('|') || pattern.contains('/') || pattern.is_empty() {
        println!("SKIP: core_pattern is {pattern:?}: cores do not land in the working directory");
        return None;
    }
    Some(pattern)
}

/// A fresh empty directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("lendvm-secrecy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        TempDir(d)
    }

    fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a VMM child that dumps core in `dir`; it must die of SIGABRT.
fn abort_in(orders: Orders, dir: &TempDir) -> (Vmm, bool) {
    let mut vmm = start_vmm(orders, Some(&dir.0));
    let status = vmm.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    (vmm, status.core_dumped())
}

// DESIGN D11: non-dumpable, so no core dump at all.
#[test]
fn a_non_dumpable_vmm_leaves_no_core_dump() {
    if testkit::kvm().is_none() || plain_core_pattern().is_none() {
        return;
    }
    for private in [false, true] {
        let dir = TempDir::new(&format!("nodump-{private}"));
        let orders = Orders {
            private,
            abort: true,
            ..Orders::default()
        };
        let (vmm, dumped) = abort_in(orders, &dir);
        assert_eq!(vmm.ready.now, 0, "the VMM is non-dumpable");
        assert!(!dumped, "the kernel reports a core dump");
        assert_eq!(dir.files(), Vec::<PathBuf>::new(), "no core file");
    }
}

/// The second layer: a core of a VMM made dumpable again holds no guest
/// memory; the child's canary proves the core holds its heap.
fn dumpable_core_holds_no_guest_data(private: bool) {
    if testkit::kvm().is_none() || plain_core_pattern().is_none() {
        return;
    }
    let dir = TempDir::new(&format!("dump-{private}"));
    let orders = Orders {
        private,
        redump: true,
        abort: true,
        ..Orders::default()
    };
    let (vmm, dumped) = abort_in(orders, &dir);
    assert!(dumped, "a dumpable process dumps core");
    let files = dir.files();
    assert_eq!(files.len(), 1, "one core file: {files:?}");
    let size = std::fs::metadata(&files[0]).unwrap().len();
    let found: Found = vmm.scanner().scan_file(&files[0]);
    println!(
        "core {} ({} KiB): {} marker words, {} canary words; first hits (offset, secret, word) {:x?}",
        files[0].display(),
        size >> 10,
        found.hits[0],
        found.hits[1],
        found.examples
    );
    assert!(
        found.hits[1] > 0,
        "the core holds the child's heap (canary)"
    );
    assert_eq!(found.hits[0], 0, "guest data in the core dump");
}

// DESIGN D11: guest mappings are MADV_DONTDUMP.
#[test]
fn a_core_dump_of_a_vmm_made_dumpable_again_holds_no_lent_data() {
    dumpable_core_holds_no_guest_data(false);
}

// DESIGN D11, with private RAM.
#[test]
fn a_core_dump_of_a_vmm_made_dumpable_again_holds_no_private_data() {
    dumpable_core_holds_no_guest_data(true);
}
