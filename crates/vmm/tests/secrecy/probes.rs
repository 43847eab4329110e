//! (c) The VMM is non-dumpable (DESIGN D11), so another process of its
//! user without CAP_SYS_PTRACE can neither read its memory through
//! `/proc/PID/mem` nor open its descriptors through `/proc/PID/fd`.
//!
//! Two ways to be "another process of the same user": both root without
//! CAP_SYS_PTRACE (the VMM drops it too, so only dumpability differs
//! between the two), and both uid 65534 (the VMM drops to it after opening
//! /dev/kvm; note that the kernel itself resets dumpability on that uid
//! change, so this variant shows the deployment, the root one shows
//! lendvm's own PR_SET_DUMPABLE). Each has a positive control: the same
//! VMM made dumpable again is readable by the same probe.

use std::collections::HashMap;

use super::child::{MARKER_LEN, Orders, PROBE_ENV};
use super::{Vmm, is_root, rerun, scan, start_vmm};

/// The probe's answers: what -> (ok, detail or errno).
fn run_probe(
    vmm: &Vmm,
    ram: u64,
    fds: &[u32],
    as_: &str,
    seed: u64,
) -> HashMap<String, (bool, String)> {
    let fd_list: Vec<String> = fds.iter().map(u32::to_string).collect();
    let spec = format!(
        "pid={},addr={ram:x},len={MARKER_LEN},seed={seed:x},fds={},{as_}",
        vmm.pid,
        fd_list.join(":")
    );
    let out = rerun(
        "secrecy_probe",
        (PROBE_ENV, spec),
        None,
        as_ == "no-ptrace-cap",
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.find("PROBE ").map(|at| &l[at + 6..]))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (what, res) = (w.next()?, w.next()?);
            Some((
                what.to_string(),
                (res == "ok", w.next().unwrap_or("").to_string()),
            ))
        })
        .collect()
}

/// The child's descriptors (above stdio) and what they are.
fn fds_of(pid: u32) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.to_string_lossy().into_owned()))
        })
        .filter(|(n, _)| *n > 2)
        .collect();
    v.sort();
    v
}

fn denied(answer: Option<&(bool, String)>) -> bool {
    matches!(answer, Some((false, e)) if e == &libc::EACCES.to_string() || e == &libc::EPERM.to_string())
}

// DESIGN D11: no same-user /proc/PID/mem or /proc/PID/fd without
// CAP_SYS_PTRACE.
#[test]
fn a_process_of_the_vmms_user_without_cap_sys_ptrace_cannot_read_its_memory_or_open_its_fds() {
    if testkit::kvm().is_none() {
        return;
    }
    if !is_root() {
        println!("SKIP: switching users and capabilities needs root");
        return;
    }
    for as_ in ["no-ptrace-cap", "nobody"] {
        for redump in [false, true] {
            let orders = Orders {
                no_ptrace_cap: as_ == "no-ptrace-cap",
                nobody: as_ == "nobody",
                redump,
                ..Orders::default()
            };
            let vmm = start_vmm(orders, None);
            let what = format!("probe as {as_}, VMM made dumpable again: {redump}");
            assert_eq!(
                (vmm.ready.before_open, vmm.ready.after_open),
                (1, 0),
                "{what}: Device::open made the process non-dumpable"
            );
            assert_eq!(vmm.ready.now, i32::from(redump), "{what}");
            assert!(
                !vmm.ready.ptrace_cap,
                "{what}: the VMM runs without CAP_SYS_PTRACE"
            );
            let maps = scan::mappings(vmm.pid);
            let ram = maps
                .iter()
                .find(|m| m.path.contains("kvm-gmem"))
                .map(|m| m.start)
                .unwrap();
            let fds = fds_of(vmm.pid);
            let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
            let seed = vmm.seed;
            let answers = run_probe(&vmm, ram, &numbers, as_, seed);
            println!("{what}: {answers:?}");
            if !redump {
                assert!(
                    denied(answers.get("mem-open")),
                    "{what}: /proc/PID/mem opened"
                );
                assert!(!answers.contains_key("mem-read"), "{what}");
                for (n, target) in &fds {
                    assert!(
                        denied(answers.get(&format!("fd-open-{n}"))),
                        "{what}: opened fd {n} ({target})"
                    );
                    assert!(
                        denied(answers.get(&format!("fd-readlink-{n}"))),
                        "{what}: resolved fd {n} ({target})"
                    );
                }
            } else {
                // Positive control: dumpable, the same probe reads the lent
                // RAM through the kernel-facing mapping, and reopens the
                // VMM's memfds.
                assert_eq!(
                    answers.get("mem-read"),
                    Some(&(true, format!("marker-words={}", MARKER_LEN / 8))),
                    "{what}"
                );
                for (n, target) in fds.iter().filter(|(_, t)| t.contains("lendvm-guest-mem")) {
                    assert_eq!(
                        answers.get(&format!("fd-open-{n}")).map(|a| a.0),
                        Some(true),
                        "{what}: fd {n} ({target})"
                    );
                }
            }
            vmm.finish();
        }
    }
}
