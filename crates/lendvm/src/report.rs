//! The report `lendvm run` prints: bindings, exits by kind, first-touch
//! rate, what the host could and could not see. Text or one JSON object.

use std::fmt::Write;
use std::time::Duration;

use binding::Access;
use vmm::{Status, VmMetrics};

/// One binding, for the table.
#[derive(Debug, Clone)]
pub struct BindingRow {
    /// What it is for.
    pub what: &'static str,
    /// Guest address.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Kind of file.
    pub file: &'static str,
    /// Share or lend.
    pub access: Access,
    /// Guest permissions ("rw-").
    pub perms: String,
}

/// One thing the run showed, and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub what: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

impl Check {
    /// A check result.
    pub fn new(what: &'static str, ok: bool, detail: String) -> Check {
        Check { what, ok, detail }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone)]
pub struct Report {
    /// The VM's bindings.
    pub bindings: Vec<BindingRow>,
    /// The VM's counters at the end.
    pub metrics: VmMetrics,
    /// How the VM stopped.
    pub status: Status,
    /// Bytes the guest touched first, and how long that took.
    pub first_touch: Option<(u64, Duration)>,
    /// What the run showed.
    pub checks: Vec<Check>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Console output, if captured.
    pub console: String,
}

/// This process's peak resident memory so far (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

pub fn status_text(s: &Status) -> String {
    match s {
        Status::Exited(e) => format!("exited with code {}", e.code()),
        Status::Crashed(c) => format!("crashed ({c:?})"),
        Status::LoadFailed => "failed to load".into(),
    }
}

impl Report {
    /// True if every check held.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// First-touch rate in MiB/s and pages/s.
    fn rate(&self) -> Option<(f64, f64)> {
        self.first_touch.map(|(bytes, t)| {
            let s = t.as_secs_f64().max(1e-9);
            (
                bytes as f64 / s / (1 << 20) as f64,
                bytes as f64 / 4096.0 / s,
            )
        })
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Bindings");
        for b in &self.bindings {
            let kind = match b.access {
                Access::Lend => "lend",
                Access::Share => "share",
            };
            let _ = writeln!(
                s,
                "  {:<16} {:#012x}  {:>8}  {:<5} {}  {}",
                b.what,
                b.guest_addr,
                size(b.size),
                kind,
                b.perms,
                b.file
            );
        }
        let m = &self.metrics;
        let _ = writeln!(s, "Exits");
        let _ = writeln!(
            s,
            "  to the caller: {} MMIO, {} page fault, {} status; KVM exits handled: {}",
            m.mmio_exits, m.page_fault_exits, m.status_exits, m.kvm_exits
        );
        let _ = writeln!(
            s,
            "  first-touch chunks given: {} ({}), accesses completed for the guest: {}, faults injected: {}",
            m.memory.demand_chunks,
            size(m.memory.demand_bytes),
            m.memory.completed_accesses,
            m.injected_faults
        );
        if let Some((mib, pages)) = self.rate() {
            let _ = writeln!(s, "  first touch: {mib:.0} MiB/s ({pages:.0} pages/s)");
        }
        if let Some(t) = m.boot_complete {
            let _ = writeln!(
                s,
                "  guest-reported boot complete {:.2} ms after the VM was created",
                t.as_secs_f64() * 1e3
            );
        }
        let _ = writeln!(s, "What happened");
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  [{}] {} ({})",
                if c.ok { "ok" } else { "FAILED" },
                c.what,
                c.detail
            );
        }
        if !self.console.is_empty() {
            let _ = writeln!(s, "Console\n{}", self.console.trim_end());
        }
        let _ = writeln!(
            s,
            "The VM {} after {:.1} ms; lendvm's peak resident memory: {} KiB.",
            status_text(&self.status),
            self.elapsed.as_secs_f64() * 1e3,
            peak_rss_kib().map_or("unknown".into(), |k| k.to_string())
        );
        s
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let m = &self.metrics;
        let bindings: Vec<_> = self
            .bindings
            .iter()
            .map(|b| {
                serde_json::json!({
                    "what": b.what,
                    "guest_addr": b.guest_addr,
                    "size": b.size,
                    "file": b.file,
                    "access": match b.access { Access::Lend => "lend", Access::Share => "share" },
                    "perms": b.perms,
                })
            })
            .collect();
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| serde_json::json!({"what": c.what, "ok": c.ok, "detail": c.detail}))
            .collect();
        let (exit_code, crashed) = match &self.status {
            Status::Exited(e) => (Some(e.code()), false),
            _ => (None, true),
        };
        serde_json::json!({
            "status": status_text(&self.status),
            "exit_code": exit_code,
            "crashed": crashed,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "peak_rss_kib": peak_rss_kib(),
            "bindings": bindings,
            "exits": {
                "mmio": m.mmio_exits,
                "page_fault": m.page_fault_exits,
                "status": m.status_exits,
                "kvm": m.kvm_exits,
                "port_io": m.port_io,
                "unknown_port_io": m.unknown_port_io,
                "injected_faults": m.injected_faults,
            },
            "memory": {
                "demand_chunks": m.memory.demand_chunks,
                "demand_bytes": m.memory.demand_bytes,
                "slots_created": m.memory.slots_created,
                "slots_deleted": m.memory.slots_deleted,
                "completed_accesses": m.memory.completed_accesses,
            },
            "boot_complete_ms": m.boot_complete.map(|t| t.as_secs_f64() * 1e3),
            "first_touch_mib_per_s": self.rate().map(|r| r.0),
            "first_touch_pages_per_s": self.rate().map(|r| r.1),
            "checks": checks,
            "all_ok": self.all_ok(),
            "console": self.console,
        })
    }
}
