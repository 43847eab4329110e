//! Test support shared by lendvm's crates.
//!
//! Tests that need KVM use the real `/dev/kvm`. Where it is missing they
//! print `SKIP: no /dev/kvm` and pass, unless `LENDVM_REQUIRE_KVM` is set
//! (CI sets it wherever the device exists), in which case they fail: a
//! test must never skip silently where KVM is present.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod gunyah;

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

/// A file in the temporary directory, removed when dropped.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    /// Create `<tmp>/lendvm-test-<pid>-<name>` holding `bytes`.
    pub fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("lendvm-test-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("the temporary directory is writable");
        TempFile(path)
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("temporary paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Debian's cloud kernel file `name` ("vmlinuz" or "vmlinux") as
/// `scripts/fetch-debian-kernel.sh --vmlinux` leaves it (in
/// `LENDVM_DEBIAN_KERNEL_DIR`, else `target/debian-kernel`). `None` (and a
/// SKIP line) when it was not fetched, unless `LENDVM_REQUIRE_KERNEL` is
/// set, which CI does: then a missing kernel fails the test.
pub fn debian_kernel(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("LENDVM_DEBIAN_KERNEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debian-kernel")
        });
    let prefix = format!("{name}-");
    let found = std::fs::read_dir(&dir).ok().and_then(|packages| {
        packages
            .flatten()
            .filter_map(|p| std::fs::read_dir(p.path().join("boot")).ok())
            .flatten()
            .flatten()
            .map(|f| f.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
    });
    if found.is_none() {
        if std::env::var_os("LENDVM_REQUIRE_KERNEL").is_some() {
            panic!(
                "LENDVM_REQUIRE_KERNEL is set but no Debian {name} is in {}",
                dir.display()
            );
        }
        println!("SKIP: no Debian {name} (run scripts/fetch-debian-kernel.sh --vmlinux)");
    }
    found
}

/// An ELF64 x86-64 executable with one PT_LOAD of `code` at `paddr` (4 KiB
/// in memory, entry there), and a Xen PVH entry note (entry 1 MiB) if `pvh`
/// is set: hand-made images for the loaders' and the CLI's tests.
pub fn elf_image(code: &[u8], paddr: u64, pvh: bool) -> Vec<u8> {
    let phnum: u16 = if pvh { 2 } else { 1 };
    let code_off = 64 + 56 * u64::from(phnum);
    let mut note = Vec::new();
    note.extend(4u32.to_le_bytes());
    note.extend(4u32.to_le_bytes());
    note.extend(18u32.to_le_bytes());
    note.extend(b"Xen\0");
    note.extend(0x10_0000u32.to_le_bytes());
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&paddr.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&phnum.to_le_bytes());
    let mut ph = |ty: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&ty.to_le_bytes());
        p[4..8].copy_from_slice(&5u32.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&addr.to_le_bytes());
        p[24..32].copy_from_slice(&addr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        b.extend(p);
    };
    ph(1, code_off, paddr, code.len() as u64, 0x1000);
    if pvh {
        ph(4, code_off + code.len() as u64, 0, note.len() as u64, 0);
    }
    b.extend_from_slice(code);
    if pvh {
        b.extend(note);
    }
    b
}
