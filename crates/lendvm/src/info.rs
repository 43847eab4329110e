//! `lendvm info`: what this host offers, how lendvm settles the questions
//! the SPEC leaves open on KVM, and who enforces each guarantee.

use std::fmt::Write;

use gmem::Enforcer;

fn cell(e: Enforcer) -> String {
    match e {
        Enforcer::Kernel => "kernel".into(),
        Enforcer::Lendvm => "lendvm".into(),
        Enforcer::NotEnforced(why) => format!("no: {why}"),
    }
}

/// The report as text. `caps` is `None` when /dev/kvm cannot be used.
pub fn render(caps: Result<&vmm::Capabilities, String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Host");
    match caps {
        Ok(c) => {
            let g = c.guest_memfd;
            let _ = writeln!(s, "  KVM API version      {}", c.api_version);
            let _ = writeln!(
                s,
                "  KVM backend          {}",
                if c.pvm {
                    "PVM (no VMX/SVM): CPL0 guest code is emulated, CPL3 long mode runs natively"
                } else {
                    "hardware virtualisation"
                }
            );
            let _ = writeln!(
                s,
                "  guest_memfd          {} (flags {:#x}: MMAP {}, INIT_SHARED {})",
                if g.available {
                    "yes"
                } else {
                    "no (memfd files only)"
                },
                g.flags,
                yes(g.flags & gmem::GUEST_MEMFD_FLAG_MMAP != 0),
                yes(g.flags & gmem::GUEST_MEMFD_FLAG_INIT_SHARED != 0),
            );
            let _ = writeln!(s, "  memslots per VM      {}", c.memslots);
            let _ = writeln!(
                s,
                "  vCPUs per VM         {} (ids below {})",
                c.max_vcpus, c.max_vcpu_id
            );
            let _ = writeln!(s, "  read-only memslots   {}", yes(c.readonly_memslots));
        }
        Err(why) => {
            let _ = writeln!(s, "  /dev/kvm unusable: {why}");
        }
    }
    let _ = writeln!(s, "\nDecisions (DESIGN.md §4)");
    for (id, question, answer) in vmm::DECISIONS {
        let _ = writeln!(s, "  {id:<4} {question}\n       -> {answer}");
    }
    let _ = writeln!(
        s,
        "\nEnforcement (who makes each guarantee hold)\n  {:<52} {:<14} {:<14} memfd",
        "guarantee", "gmem mappable", "gmem private"
    );
    for g in gmem::ENFORCEMENT {
        let _ = writeln!(
            s,
            "  {:<52} {:<14} {:<14} {}",
            g.what,
            short(g.host_mappable),
            short(g.private),
            short(g.memfd)
        );
    }
    let _ = writeln!(s, "\n  Where not enforced:");
    let mut seen = Vec::new();
    for g in gmem::ENFORCEMENT {
        for e in [g.host_mappable, g.private, g.memfd] {
            if let Enforcer::NotEnforced(why) = e
                && !seen.contains(&why)
            {
                seen.push(why);
                let _ = writeln!(s, "  - {}: {why}", g.what);
            }
        }
    }
    let _ = writeln!(
        s,
        "\n  \"lendvm\" holds for every access made through lendvm; a process that takes a\n  file's descriptor and calls mmap/read/fallocate on it itself bypasses it.\n  \"kernel\" holds even then."
    );
    gunyah_limits(&mut s);
    s
}

/// What `liblendvm_gunyah.so` (DESIGN D13) cannot serve.
pub const GUNYAH_LIMITS: &[&str] = &[
    "statically linked programs (no LD_PRELOAD; Gunyah calls reach the kernel directly)",
    "raw system calls on Gunyah descriptors (the syscall instruction or glibc's syscall())",
    "descriptors passed to other processes (over a socket or across exec): plain memfds there",
    "aarch64 guest code: guests must be x86-64 (lendvm's native ABI, PVH or Linux)",
];

fn gunyah_limits(s: &mut String) {
    let _ = writeln!(
        s,
        "\nGunyah programs under LD_PRELOAD=liblendvm_gunyah.so (DESIGN D13): not served are"
    );
    for limit in GUNYAH_LIMITS {
        let _ = writeln!(s, "  - {limit}");
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn short(e: Enforcer) -> String {
    match e {
        Enforcer::NotEnforced(_) => "no".into(),
        other => cell(other),
    }
}

/// The report as one JSON object.
pub fn json(caps: Result<&vmm::Capabilities, String>) -> serde_json::Value {
    let host = match caps {
        Ok(c) => serde_json::json!({
            "api_version": c.api_version,
            "pvm": c.pvm,
            "guest_memfd": c.guest_memfd.available,
            "guest_memfd_flags": c.guest_memfd.flags,
            "memslots": c.memslots,
            "max_vcpus": c.max_vcpus,
            "readonly_memslots": c.readonly_memslots,
        }),
        Err(why) => serde_json::json!({ "error": why }),
    };
    let decisions: Vec<_> = vmm::DECISIONS
        .iter()
        .map(|(id, q, a)| serde_json::json!({"id": id, "question": q, "answer": a}))
        .collect();
    let matrix: Vec<_> = gmem::ENFORCEMENT
        .iter()
        .map(|g| {
            serde_json::json!({
                "guarantee": g.what,
                "guest_memfd_mappable": cell(g.host_mappable),
                "guest_memfd_private": cell(g.private),
                "memfd": cell(g.memfd),
            })
        })
        .collect();
    serde_json::json!({"host": host, "decisions": decisions, "enforcement": matrix})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_decision_and_guarantee() {
        let text = render(Err("test".into()));
        for (id, _, _) in vmm::DECISIONS {
            assert!(text.contains(id), "{id}");
        }
        for g in gmem::ENFORCEMENT {
            assert!(text.contains(g.what), "{}", g.what);
        }
        assert!(text.contains("/dev/kvm unusable: test"));
        for limit in GUNYAH_LIMITS {
            assert!(text.contains(limit), "{limit}");
        }
        let j = json(Err("x".into()));
        assert_eq!(
            j["decisions"].as_array().unwrap().len(),
            vmm::DECISIONS.len()
        );
    }
}
