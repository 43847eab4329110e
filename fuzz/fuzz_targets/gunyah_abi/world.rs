//! What the `gunyah_abi` target keeps for the whole process (the device,
//! an eventfd, a regular file, the argument page between two unreadable
//! pages) and what it makes per input and unmaps after it (memory for
//! legacy user regions).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use vmm::Device;

use crate::ops::PAGE;

/// Per-process resources. `None` when /dev/kvm is unusable.
pub struct World {
    pub dev: Device,
    event: OwnedFd,
    regular: std::fs::File,
    /// KVM's vCPU id limit; lendvm keeps the last id for itself.
    pub max_vcpu_id: u32,
    /// Address of the readable, writable argument page; the pages before
    /// and after it are PROT_NONE.
    arg_page: usize,
}

impl World {
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    pub fn regular_fd(&self) -> RawFd {
        self.regular.as_raw_fd()
    }

    pub fn arg_page(&self) -> u64 {
        self.arg_page as u64
    }

    /// Clear the argument page and put `bytes` at `at` (clipped to it).
    pub fn fill_arg_page(&self, at: usize, bytes: &[u8]) {
        // SAFETY: `arg_page` is a readable, writable page this process
        // mapped for the harness alone and never unmaps; no reference into
        // it outlives this call.
        let page =
            unsafe { std::slice::from_raw_parts_mut(self.arg_page as *mut u8, PAGE as usize) };
        page.fill(0);
        let at = at.min(page.len());
        let n = bytes.len().min(page.len() - at);
        page[at..at + n].copy_from_slice(&bytes[..n]);
    }
}

/// The process's world, made on first use; says once if it cannot be.
pub fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| match make() {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("gunyah_abi: no usable /dev/kvm ({e}): every input is a no-op");
                None
            }
        })
        .as_ref()
}

fn make() -> Result<World, String> {
    let dev = Device::open().map_err(|e| e.to_string())?;
    let max_vcpu_id = u32::try_from(dev.capabilities().max_vcpu_id).unwrap_or(u32::MAX);
    // SAFETY: eventfd takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: see above.
    let event = unsafe { OwnedFd::from_raw_fd(raw) };
    let path = std::env::temp_dir().join(format!("lendvm-fuzz-gunyah-abi-{}", std::process::id()));
    let regular = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    // SAFETY: a fresh anonymous mapping of three pages at an address the
    // kernel picks; nothing else uses it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            3 * PAGE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let arg_page = base as usize + PAGE as usize;
    // SAFETY: the middle page of the mapping just made.
    if unsafe {
        libc::mprotect(
            arg_page as *mut libc::c_void,
            PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } != 0
    {
        return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
    }
    Ok(World {
        dev,
        event,
        regular,
        max_vcpu_id,
        arg_page,
    })
}

/// Pages of this process for legacy user regions: one anonymous mapping
/// per input, handed out page by page and never twice, unmapped only after
/// every VM of the input is gone (the regions' contract).
pub struct UserMemory {
    base: usize,
    next: u64,
}

/// Pages per input.
pub const USER_PAGES: u64 = 64;

impl UserMemory {
    pub fn new() -> Option<UserMemory> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (USER_PAGES * PAGE) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(UserMemory {
            base: base as usize,
            next: 0,
        })
    }

    /// `n` pages never handed out before, if that many are left.
    pub fn take(&mut self, n: u64) -> Option<u64> {
        if self.next + n > USER_PAGES {
            return None;
        }
        let at = self.base as u64 + self.next * PAGE;
        self.next += n;
        Some(at)
    }
}

impl Drop for UserMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new` (parts of it may since have been
        // replaced by lendvm's lend mappings, which munmap removes too);
        // the harness drops this only after every VM that used it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, (USER_PAGES * PAGE) as usize) };
    }
}

/// True if `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Number of open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
