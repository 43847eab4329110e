//! `lendvm info`: what this host offers, how lendvm settles the questions
//! the SPEC leaves open on KVM, and who enforces each guarantee.

use std::fmt::Write;

use vmm::Enforcer;

/// The demand chunk of a lend binding of `size` bytes, as the VM manager
/// cuts it (DESIGN D2), clipped to a binding smaller than one chunk.
pub fn demand_chunk(size: u64) -> u64 {
    vmm::demand_chunk(size).min(size)
}

/// The rule, in words.
pub const CHUNK_RULE: &str = "a chunk is the piece of a lend binding one KVM slot installs on the guest's first touch: size = clamp(next_pow2(binding size / 64), 2 MiB, 1 GiB), an aligned window around the touch, clipped to the binding";

/// Binding sizes the chunk rule is shown for.
const CHUNK_EXAMPLES: [u64; 5] = [1 << 20, 64 << 20, 1 << 30, 16 << 30, 256 << 30];

/// The row lendvm adds to gmem's enforcement matrix: shared pages are
/// meant to be reached by both sides.
const SHARED_ROW: &str = "host access while shared";
/// Its cells: host-mappable guest_memfd, private guest_memfd, memfd.
const SHARED_CELLS: [&str; 3] = ["none needed", "n/a (D6)", "none needed"];
const SHARED_NOTE: &str = "host and guest both read and write shared pages and see each other's writes (one coherent page): nothing needs enforcing; a private guest_memfd cannot be shared at all (D6)";

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
                yes(g.flags & vmm::GUEST_MEMFD_FLAG_MMAP != 0),
                yes(g.flags & vmm::GUEST_MEMFD_FLAG_INIT_SHARED != 0),
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
    for g in vmm::ENFORCEMENT {
        let _ = writeln!(
            s,
            "  {:<52} {:<14} {:<14} {}",
            g.what,
            short(g.host_mappable),
            short(g.private),
            short(g.memfd)
        );
    }
    let _ = writeln!(
        s,
        "  {SHARED_ROW:<52} {:<14} {:<14} {}",
        SHARED_CELLS[0], SHARED_CELLS[1], SHARED_CELLS[2]
    );
    let _ = writeln!(s, "\n  {SHARED_ROW}: {SHARED_NOTE}.");
    let _ = writeln!(s, "\n  Where not enforced:");
    let mut seen = Vec::new();
    for g in vmm::ENFORCEMENT {
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
    let _ = writeln!(s, "\nDemand paging (DESIGN D2)\n  {CHUNK_RULE}.");
    let examples: Vec<String> = CHUNK_EXAMPLES
        .iter()
        .map(|&b| {
            format!(
                "{} -> {}",
                crate::report::size(b),
                crate::report::size(demand_chunk(b))
            )
        })
        .collect();
    let _ = writeln!(s, "  binding -> chunk: {}", examples.join(", "));
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
    let mut matrix: Vec<_> = vmm::ENFORCEMENT
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
    matrix.push(serde_json::json!({
        "guarantee": SHARED_ROW,
        "guest_memfd_mappable": SHARED_CELLS[0],
        "guest_memfd_private": SHARED_CELLS[1],
        "memfd": SHARED_CELLS[2],
        "note": SHARED_NOTE,
    }));
    let examples: Vec<_> = CHUNK_EXAMPLES
        .iter()
        .map(|&b| serde_json::json!({"binding_bytes": b, "chunk_bytes": demand_chunk(b)}))
        .collect();
    serde_json::json!({
        "host": host,
        "decisions": decisions,
        "enforcement": matrix,
        "demand_chunk": {"rule": CHUNK_RULE, "min_bytes": vmm::MIN_CHUNK, "max_bytes": vmm::MAX_CHUNK, "examples": examples},
    })
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
        for g in vmm::ENFORCEMENT {
            assert!(text.contains(g.what), "{}", g.what);
        }
        assert!(text.contains("/dev/kvm unusable: test"));
        // Issue 9 item 11: the shared row and the chunk rule, in both forms.
        assert!(text.contains("host access while shared") && text.contains("none needed"));
        assert!(text.contains("nothing needs enforcing"));
        assert!(text.contains(CHUNK_RULE) && text.contains("64 MiB -> 2 MiB"));
        for limit in GUNYAH_LIMITS {
            assert!(text.contains(limit), "{limit}");
        }
        let j = json(Err("x".into()));
        assert_eq!(
            j["decisions"].as_array().unwrap().len(),
            vmm::DECISIONS.len()
        );
        let rows = j["enforcement"].as_array().unwrap();
        assert_eq!(rows.len(), vmm::ENFORCEMENT.len() + 1);
        assert_eq!(rows.last().unwrap()["guarantee"], SHARED_ROW);
        assert_eq!(j["demand_chunk"]["rule"], CHUNK_RULE);
    }

    #[test]
    fn demand_chunks_follow_the_rule() {
        assert_eq!(
            demand_chunk(1 << 20),
            1 << 20,
            "a small binding is one chunk"
        );
        assert_eq!(demand_chunk(64 << 20), 2 << 20);
        assert_eq!(demand_chunk(1 << 30), 16 << 20);
        assert_eq!(demand_chunk(3 << 30), 64 << 20, "next power of two");
        assert_eq!(demand_chunk(1 << 40), 1 << 30, "at most 1 GiB");
        assert_eq!(demand_chunk(!0xfff), 1 << 30);
    }
}
