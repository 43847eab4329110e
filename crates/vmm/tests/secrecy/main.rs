//! DESIGN D11 (issue 8 item 7): no byte of lent memory exists anywhere in
//! the VMM process except in guest memory itself, and nobody without
//! CAP_SYS_PTRACE can look there.
//!
//! A child process (this test binary run again, `child.rs`) runs a VM
//! whose guest computes 64 KiB of a marker stream into lent RAM from a
//! seed the parent picked; only the parent knows the marker bytes. The
//! parent then (a) scans every readable mapping of the child except guest
//! memory, at every byte offset, for any 8-byte word of the marker (and,
//! for private RAM, the guest mappings too); (b) checks that guest memory
//! mappings are MADV_DONTDUMP and MADV_DONTFORK; (c) checks the child is
//! non-dumpable and that a process of its user without CAP_SYS_PTRACE can
//! neither read its memory nor open its descriptors; (d) forces core dumps.
//! Each negative result has a positive control: a canary the child keeps
//! in its heap must be found, and a child that makes itself dumpable again
//! must be readable by the same probe.

mod child;
mod cores;
mod probes;
mod scan;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use child::{CANARY_LEN, CHILD_ENV, MARKER_LEN, Orders, PROBE_ENV};
use scan::{Found, Mapping, Scanner};
use test_guests::holding_cell::{fnv1a, marker_bytes};

// ----- the other processes ------------------------------------------------------

#[test]
#[ignore = "the VMM child of the secrecy tests (they run it with orders)"]
fn secrecy_child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child::vmm_child(&spec);
    }
}

#[test]
#[ignore = "the probe of the secrecy tests (they run it with orders)"]
fn secrecy_probe() {
    if let Ok(spec) = std::env::var(PROBE_ENV) {
        child::probe(&spec);
    }
}

/// This test binary running one ignored test, with orders in `env`.
fn rerun(test: &str, env: (&str, String), cwd: Option<&Path>, no_ptrace_cap: bool) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        test,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env.0, env.1)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        c.current_dir(dir);
    }
    if no_ptrace_cap {
        child::without_cap_sys_ptrace(&mut c);
    }
    c
}

fn random() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// What the VMM child said when ready.
#[derive(Debug)]
struct Ready {
    hash: u64,
    before_open: i32,
    after_open: i32,
    now: i32,
    ptrace_cap: bool,
}

/// A running VMM child and its secrets.
struct Vmm {
    child: Child,
    pid: u32,
    ready: Ready,
    seed: u64,
    marker: Vec<u8>,
    canary: Vec<u8>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Start a VMM child with fresh seeds and wait for its ready line.
fn start_vmm(mut o: Orders, cwd: Option<&Path>) -> Vmm {
    o.seed = random() | 1;
    o.canary = random() | 1;
    let mut child = rerun(
        "secrecy_child",
        (CHILD_ENV, o.encode()),
        cwd,
        o.no_ptrace_cap,
    )
    .spawn()
    .unwrap();
    let pid = child.id();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let ready = loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                // The harness may have started the line ("test ... ").
                if let Some(at) = line.find("LENDVM-READY ") {
                    break parse_ready(&line[at + "LENDVM-READY ".len()..]);
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the VMM child ({}) never got ready ({e}): {}",
                    o.encode(),
                    stderr.join().unwrap_or_default()
                );
            }
        }
    };
    let marker = marker_bytes(MARKER_LEN, o.seed);
    assert_eq!(
        ready.hash,
        fnv1a(&marker),
        "the guest stored the marker (child {})",
        o.encode()
    );
    Vmm {
        child,
        pid,
        ready,
        seed: o.seed,
        marker,
        canary: marker_bytes(CANARY_LEN, o.canary),
        lines,
        stderr,
    }
}

fn parse_ready(s: &str) -> Ready {
    let kv: HashMap<&str, &str> = s
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let int = |k: &str| kv[k].parse::<i32>().unwrap();
    Ready {
        hash: u64::from_str_radix(kv["hash"], 16).unwrap(),
        before_open: int("dumpable-before-open"),
        after_open: int("dumpable-after-open"),
        now: int("dumpable"),
        ptrace_cap: int("ptrace-cap") == 1,
    }
}

impl Vmm {
    /// Let the child end, and check it ended well.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        let err = self.stderr.join().unwrap_or_default();
        assert!(status.success(), "the VMM child failed ({status}): {err}");
        drop(self.lines);
    }

    fn scanner(&self) -> Scanner {
        Scanner::new(&[("marker", &self.marker), ("canary", &self.canary)])
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ----- (a) no lent byte outside guest memory ---------------------------------------------

/// Scan `mappings` of the child: totals, and what each mapping held.
fn scan_all(vmm: &Vmm, mappings: &[&Mapping]) -> (Found, Vec<(Mapping, Found)>) {
    let mem = std::fs::File::open(format!("/proc/{}/mem", vmm.pid)).unwrap();
    let scanner = vmm.scanner();
    let mut total = Found {
        hits: vec![0, 0],
        ..Found::default()
    };
    let mut per = Vec::new();
    for m in mappings {
        let mut f = Found::default();
        scanner.scan_mapping(&mem, m, &mut f);
        total.bytes += f.bytes;
        total.unreadable_pages += f.unreadable_pages;
        for (t, h) in total.hits.iter_mut().zip(&f.hits) {
            *t += h;
        }
        per.push(((*m).clone(), f));
    }
    (total, per)
}

/// The mappings that held marker words, with where and which words.
fn marker_hits(per: &[(Mapping, Found)]) -> Vec<String> {
    per.iter()
        .filter(|(_, f)| f.hits[0] > 0)
        .map(|(m, f)| {
            format!(
                "{} marker words in {m}; (address, word index): {:x?}",
                f.hits[0],
                f.examples
                    .iter()
                    .map(|(at, _, i)| (at, i))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

fn reading_needs_root() -> bool {
    if testkit::kvm().is_none() {
        return true;
    }
    if !is_root() {
        println!("SKIP: reading a non-dumpable process's memory needs root");
        return true;
    }
    false
}

/// Every readable mapping of a VMM child except guest memory holds no
/// word of the marker its guest keeps in lent RAM.
fn marker_stays_in_guest_memory(private: bool) {
    if reading_needs_root() {
        return;
    }
    let vmm = start_vmm(
        Orders {
            private,
            ..Orders::default()
        },
        None,
    );
    let maps = scan::mappings(vmm.pid);
    let (guest, host): (Vec<&Mapping>, Vec<&Mapping>) =
        maps.iter().partition(|m| m.is_guest_memory());
    for m in &guest {
        println!("excluded as guest memory: {m}");
    }
    let ram: Vec<&Mapping> = guest
        .iter()
        .copied()
        .filter(|m| m.path.contains("kvm-gmem"))
        .collect();
    assert_eq!(ram.len(), 1, "one guest_memfd mapping, the RAM: {guest:#?}");
    let readable: Vec<&Mapping> = host
        .into_iter()
        .filter(|m| m.perms.starts_with('r'))
        .collect();
    let (found, per) = scan_all(&vmm, &readable);
    println!(
        "scanned {} mappings, {} KiB outside guest memory ({} pages unreadable): {} marker words, {} canary words",
        readable.len(),
        found.bytes >> 10,
        found.unreadable_pages,
        found.hits[0],
        found.hits[1]
    );
    for (m, f) in per.iter().filter(|(_, f)| f.unreadable_pages > 0) {
        println!("could not read {} pages of {m}", f.unreadable_pages);
    }
    // Positive control: the scan reads the child's heap.
    assert!(found.hits[1] > 0, "the scan found the child's canary");
    if !private {
        // Positive control: host-mappable lent RAM holds the marker, for
        // root to read (the residual DESIGN D11 states).
        let (inside, _) = scan_all(&vmm, &ram);
        assert!(
            inside.hits[0] >= (MARKER_LEN / 8) as usize,
            "the marker is in the guest's RAM"
        );
    }
    let leaks = marker_hits(&per);
    assert!(
        leaks.is_empty(),
        "guest data outside guest memory:\n{}",
        leaks.join("\n")
    );
    vmm.finish();
}

// DESIGN D11: no copy of lent data outside guest memory.
#[test]
fn lent_marker_is_nowhere_in_the_vmm_outside_guest_memory() {
    marker_stays_in_guest_memory(false);
}

// DESIGN D11: no copy of private data outside guest memory.
#[test]
fn private_marker_is_nowhere_in_the_vmm_outside_guest_memory() {
    marker_stays_in_guest_memory(true);
}

// DESIGN §2, D11: private RAM is refused to the host by the kernel, even
// to root through /proc/PID/mem, and lendvm's own system region holds no
// guest data. (The guest's own stack lives in its image binding, a
// host-mappable memfd: what the guest keeps there is readable by root.)
#[test]
fn private_marker_cannot_be_read_through_private_memory_or_the_system_region() {
    if reading_needs_root() {
        return;
    }
    let vmm = start_vmm(
        Orders {
            private: true,
            ..Orders::default()
        },
        None,
    );
    let maps = scan::mappings(vmm.pid);
    let guest: Vec<&Mapping> = maps.iter().filter(|m| m.is_guest_memory()).collect();
    let (_, per) = scan_all(&vmm, &guest);
    let system = vmm::native_abi::SYSTEM_REGION_SIZE;
    let mut seen = (false, false);
    for (m, f) in &per {
        println!(
            "{m}: {} marker words, {} of {} pages unreadable",
            f.hits[0],
            f.unreadable_pages,
            m.len() / 4096
        );
        if m.path.contains("kvm-gmem") {
            seen.0 = true;
            assert_eq!(f.hits[0], 0, "private RAM read through {m}");
            assert_eq!(f.unreadable_pages, m.len() / 4096, "the kernel refuses {m}");
        } else if m.len() == system {
            seen.1 = true;
            assert_eq!(f.hits[0], 0, "guest data in lendvm's system region {m}");
        }
    }
    assert_eq!(seen, (true, true), "found the RAM and the system region");
    vmm.finish();
}

// ----- (b) guest mappings are kept out of core dumps and children ----------------------

/// The smaps VmFlags letters this kernel uses for MADV_DONTDUMP and
/// MADV_DONTFORK, found on mappings of this process.
fn dontdump_dontfork_letters() -> (String, String) {
    let map = |advice: Option<i32>| {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        if let Some(a) = advice {
            // SAFETY: advice on the mapping just made.
            assert_eq!(unsafe { libc::madvise(p, 4096, a) }, 0);
        }
        p as u64
    };
    let (plain, dd, dc) = (
        map(None),
        map(Some(libc::MADV_DONTDUMP)),
        map(Some(libc::MADV_DONTFORK)),
    );
    let maps = scan::mappings(std::process::id());
    let flags = |addr: u64| -> Vec<String> {
        maps.iter()
            .find(|m| m.start <= addr && addr < m.end)
            .map(|m| m.flags.clone())
            .unwrap_or_default()
    };
    let extra = |addr: u64| -> Vec<String> {
        let base = flags(plain);
        flags(addr)
            .into_iter()
            .filter(|f| !base.contains(f))
            .collect()
    };
    let (dd_letters, dc_letters) = (extra(dd), extra(dc));
    for p in [plain, dd, dc] {
        // SAFETY: unmapping the page mapped above, which nothing uses.
        unsafe { libc::munmap(p as *mut libc::c_void, 4096) };
    }
    assert_eq!(
        dd_letters.len(),
        1,
        "MADV_DONTDUMP adds one flag: {dd_letters:?}"
    );
    assert_eq!(
        dc_letters.len(),
        1,
        "MADV_DONTFORK adds one flag: {dc_letters:?}"
    );
    (dd_letters[0].clone(), dc_letters[0].clone())
}

// DESIGN D11: every guest memory mapping is MADV_DONTDUMP and MADV_DONTFORK.
#[test]
fn every_guest_memory_mapping_is_dontdump_and_dontfork() {
    let (dd, dc) = dontdump_dontfork_letters();
    assert_eq!(
        (dd.as_str(), dc.as_str()),
        ("dd", "dc"),
        "this kernel's letters"
    );
    if testkit::kvm().is_none() {
        return;
    }
    for private in [false, true] {
        let vmm = start_vmm(
            Orders {
                private,
                ..Orders::default()
            },
            None,
        );
        let maps = scan::mappings(vmm.pid);
        let guest: Vec<&Mapping> = maps.iter().filter(|m| m.is_guest_memory()).collect();
        assert!(guest.len() >= 3, "system region, image and RAM: {guest:#?}");
        for m in &guest {
            println!("guest mapping: {m}");
            assert!(m.has_flag(&dd) && m.has_flag(&dc), "not {dd} and {dc}: {m}");
        }
        // The run structures carry guest data in transit (MMIO data, the
        // access vCPU's port exits): every vCPU's, the hidden one's too.
        let runs: Vec<&Mapping> = maps
            .iter()
            .filter(|m| m.path.contains("kvm-vcpu"))
            .collect();
        assert!(!runs.is_empty(), "no vCPU run mapping found");
        for m in runs {
            assert!(
                m.has_flag(&dd) && m.has_flag(&dc),
                "vCPU run mapping not {dd} and {dc}: {m}"
            );
        }
        vmm.finish();
    }
}
