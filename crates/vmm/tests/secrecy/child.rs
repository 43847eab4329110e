//! The other processes of the secrecy tests, each this test binary run
//! again with one ignored test selected and its orders in the environment:
//! the VMM child (a VM whose guest keeps a marker in lent RAM) and the
//! probe (a process of the VMM's user, without CAP_SYS_PTRACE, that tries
//! to look inside it).

use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;

use test_guests::holding_cell::{Cell, marker_bytes};
use test_guests::testing::{DATA, guest_on};
use vmm::{Access, BindRequest, Device, GuestAddress, Mode, Perms};

/// Orders for a VMM child.
pub const CHILD_ENV: &str = "LENDVM_SECRECY_CHILD";
/// Orders for a probe.
pub const PROBE_ENV: &str = "LENDVM_SECRECY_PROBE";
/// Bytes of marker the guest keeps in lent RAM.
pub const MARKER_LEN: u64 = 64 << 10;
/// Bytes of the child's own secret, kept in its heap: a scan must find it.
pub const CANARY_LEN: u64 = 4 << 10;
/// The unprivileged user the uid variants run as.
pub const NOBODY: u32 = 65534;
const CAP_SYS_PTRACE: u32 = 19;

/// What a VMM child does (its `CHILD_ENV` value, comma-separated words).
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders {
    /// RAM is a private guest_memfd (else host-mappable).
    pub private: bool,
    /// Make itself dumpable again after the marker is computed.
    pub redump: bool,
    /// Drop to uid/gid 65534 after opening /dev/kvm, before making the VM.
    pub nobody: bool,
    /// Run without CAP_SYS_PTRACE (the parent drops it at exec).
    pub no_ptrace_cap: bool,
    /// Dump core (RLIMIT_CORE unlimited, coredump_filter 0x7f, SIGABRT)
    /// instead of waiting.
    pub abort: bool,
    pub seed: u64,
    pub canary: u64,
}

impl Orders {
    pub fn encode(&self) -> String {
        let mut w = vec![
            format!("seed={:x}", self.seed),
            format!("canary={:x}", self.canary),
        ];
        for (on, name) in [
            (self.private, "private"),
            (self.redump, "redump"),
            (self.nobody, "nobody"),
            (self.no_ptrace_cap, "no-ptrace-cap"),
            (self.abort, "abort"),
        ] {
            if on {
                w.push(name.into());
            }
        }
        w.join(",")
    }

    fn decode(s: &str) -> Orders {
        let mut o = Orders::default();
        for w in s.split(',') {
            match w.split_once('=') {
                Some(("seed", v)) => o.seed = u64::from_str_radix(v, 16).unwrap(),
                Some(("canary", v)) => o.canary = u64::from_str_radix(v, 16).unwrap(),
                _ => match w {
                    "private" => o.private = true,
                    "redump" => o.redump = true,
                    "nobody" => o.nobody = true,
                    "no-ptrace-cap" => o.no_ptrace_cap = true,
                    "abort" => o.abort = true,
                    other => panic!("unknown order {other}"),
                },
            }
        }
        o
    }
}

pub fn dumpable() -> i32 {
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }
}

fn check(what: &str, r: libc::c_long) {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Become uid and gid 65534 for good (no supplementary groups).
fn become_nobody() {
    // SAFETY: plain syscalls on this process's credentials; no memory is
    // passed except an empty group list.
    unsafe {
        check("setgroups", libc::setgroups(0, std::ptr::null()).into());
        check("setresgid", libc::setresgid(NOBODY, NOBODY, NOBODY).into());
        check("setresuid", libc::setresuid(NOBODY, NOBODY, NOBODY).into());
    }
}

/// Whether this thread holds CAP_SYS_PTRACE (effective).
pub fn has_cap_sys_ptrace() -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap();
    eff & (1 << CAP_SYS_PTRACE) != 0
}

/// Run `cmd` without CAP_SYS_PTRACE: dropped from the bounding set
/// between fork and exec, so every thread of the new program lacks it
/// (capabilities are per thread: a capset in one thread would not do).
pub fn without_cap_sys_ptrace(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and only makes
    // one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_CAPBSET_DROP,
                CAP_SYS_PTRACE as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Dump core now, with everything the kernel allows in the dump.
fn dump_core() -> ! {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    check("getrlimit", unsafe {
        libc::getrlimit(libc::RLIMIT_CORE, &mut limit).into()
    });
    // Unlimited where allowed (root), else as much as the hard limit.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the structs we own.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &unlimited) == 0 }
        // SAFETY: as above.
        || unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) == 0 };
    assert!(set, "setrlimit: {}", std::io::Error::last_os_error());
    std::fs::write("/proc/self/coredump_filter", "0x7f").unwrap();
    // SAFETY: raise has no memory arguments; SIGABRT ends the process.
    unsafe { libc::raise(libc::SIGABRT) };
    unreachable!("SIGABRT returned");
}

/// The VMM child: a VM whose guest computes the marker of `seed` into
/// lent RAM (the child never computes it), then "ready" and wait.
pub fn vmm_child(spec: &str) {
    let o = Orders::decode(spec);
    let before = dumpable();
    let dev = Device::open().unwrap();
    let after_open = dumpable();
    if o.nobody {
        become_nobody();
    }
    // The child's own secret, in its heap: proof the scans see the heap.
    let canary = std::hint::black_box(marker_bytes(CANARY_LEN, o.canary));
    let g = guest_on(dev);
    g.vm.set_console(vmm::Console::Off);
    let mode = if o.private {
        Mode::Private
    } else {
        Mode::HostMappable
    };
    let ram = g.vm.create_guest_memfd(2 << 20, mode).unwrap();
    g.vm.bind(&BindRequest::whole(
        &ram,
        GuestAddress(DATA),
        Access::Lend,
        Perms::RW,
    ))
    .unwrap();
    let mut vcpu = g.vm.add_vcpu(0).unwrap();
    g.vm.start().unwrap();
    let mut cell = Cell::new(&mut vcpu);
    let hash = cell.marker(DATA, MARKER_LEN, o.seed).unwrap();
    if o.redump {
        // SAFETY: PR_SET_DUMPABLE takes an integer.
        check("prctl(PR_SET_DUMPABLE, 1)", unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0).into()
        });
    }
    println!(
        "LENDVM-READY hash={hash:x} dumpable-before-open={before} dumpable-after-open={after_open} dumpable={} ptrace-cap={}",
        dumpable(),
        i32::from(has_cap_sys_ptrace())
    );
    std::io::stdout().flush().unwrap();
    if o.abort {
        dump_core();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    std::hint::black_box((&canary, &ram, &g));
}

/// The probe: as `NOBODY` or as root without CAP_SYS_PTRACE (dropped at
/// exec by the parent), try to read
/// the target's memory at an address and to open its descriptors; one
/// line per attempt: `PROBE <what> ok <detail>` or `PROBE <what> err <errno>`.
pub fn probe(spec: &str) {
    let mut pid = 0u32;
    let (mut addr, mut len, mut seed) = (0u64, 0u64, 0u64);
    let mut fds: Vec<String> = Vec::new();
    for w in spec.split(',') {
        match w.split_once('=') {
            Some(("pid", v)) => pid = v.parse().unwrap(),
            Some(("addr", v)) => addr = u64::from_str_radix(v, 16).unwrap(),
            Some(("len", v)) => len = v.parse().unwrap(),
            Some(("seed", v)) => seed = u64::from_str_radix(v, 16).unwrap(),
            Some(("fds", v)) => {
                fds = v
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            None if w == "nobody" => become_nobody(),
            None if w == "no-ptrace-cap" => {
                assert!(
                    !has_cap_sys_ptrace(),
                    "the probe runs without CAP_SYS_PTRACE"
                );
            }
            _ => panic!("unknown probe order {w}"),
        }
    }
    let report = |what: &str, r: std::io::Result<String>| match r {
        Ok(detail) => println!("PROBE {what} ok {detail}"),
        Err(e) => println!("PROBE {what} err {}", e.raw_os_error().unwrap_or(0)),
    };
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"));
    report(
        "mem-open",
        mem.as_ref().map(|_| String::new()).map_err(clone_err),
    );
    if let Ok(mem) = mem {
        let mut buf = vec![0u8; len as usize];
        let read = std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, addr).map(|()| {
            let words: std::collections::HashSet<u64> = marker_bytes(len, seed)
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            let hits = buf
                .chunks_exact(8)
                .filter(|c| words.contains(&u64::from_le_bytes((*c).try_into().unwrap_or([0; 8]))))
                .count();
            format!("marker-words={hits}")
        });
        report("mem-read", read);
    }
    report(
        "fd-list",
        std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| format!("entries={}", d.count())),
    );
    for fd in fds {
        let path = format!("/proc/{pid}/fd/{fd}");
        report(
            &format!("fd-open-{fd}"),
            std::fs::File::open(&path).map(|_| String::new()),
        );
        report(
            &format!("fd-readlink-{fd}"),
            std::fs::read_link(&path)
                .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).replace(' ', "_")),
        );
    }
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(0))
}
