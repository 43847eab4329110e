//! The report `lendvm run` prints: bindings, exits by kind, first-touch
//! rate, what the host could and could not see. Text or one JSON object.

use std::fmt::Write;
use std::time::Duration;

use vmm::{Access, Status, VmMetrics};

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

/// A value a check saw, shown the same way in the text and the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text (quoted in the text report).
    Text(String),
    /// A checksum or address (hexadecimal; a "0x…" string in JSON, where
    /// 64-bit numbers lose precision).
    Hex(u64),
    /// A count.
    Num(u64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Hex(v) => write!(f, "{v:#x}"),
            Value::Num(n) => write!(f, "{n}"),
        }
    }
}

impl Value {
    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(t) => t.as_str().into(),
            Value::Hex(v) => format!("{v:#x}").into(),
            Value::Num(n) => (*n).into(),
        }
    }
}

/// One thing the run showed, and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub what: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was seen, in a few words.
    pub detail: String,
    /// What was seen, value by value: (JSON key, label, value).
    pub facts: Vec<(&'static str, &'static str, Value)>,
}

impl Check {
    /// A check result.
    pub fn new(what: &'static str, ok: bool, detail: String) -> Check {
        Check {
            what,
            ok,
            detail,
            facts: Vec::new(),
        }
    }

    /// Add a value the check saw.
    pub fn fact(mut self, key: &'static str, label: &'static str, value: Value) -> Check {
        self.facts.push((key, label, value));
        self
    }

    /// The guest's and the host's checksum of the same pattern, side by
    /// side (issue 9 item 11: what the check compares, not only its verdict).
    pub fn pattern_checksums(self, guest: u64, host: u64) -> Check {
        self.fact("guest_checksum", "checksum by the guest", Value::Hex(guest))
            .fact(
                "host_checksum",
                "the host's checksum of the pattern",
                Value::Hex(host),
            )
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The VM stopped: the guest exited or crashed, or lendvm stopped it
    /// because its console's reader went away ([`vmm::exit_kind::FORCE_STOPPED`]).
    Vm(Status),
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the run.
    Signal(i32),
}

impl Ending {
    /// This process's exit status for the ending: the guest's code when it
    /// stopped on its own and every check held, 128 + N for signal N, 141
    /// (128 + SIGPIPE) when the console's reader went away, else 1.
    pub fn exit_status(&self, all_ok: bool) -> u8 {
        match self {
            Ending::Signal(s) => (128 + s).clamp(0, 255) as u8,
            Ending::Vm(Status::Exited(e)) if e.kind == vmm::exit_kind::FORCE_STOPPED => {
                (128 + libc::SIGPIPE) as u8
            }
            Ending::Vm(Status::Exited(e)) if all_ok => e.code() as u8,
            _ => 1,
        }
    }

    /// The signal's name, if one ended the run.
    pub fn signal(&self) -> Option<&'static str> {
        match self {
            Ending::Signal(s) => Some(crate::stop::name(*s)),
            Ending::Vm(_) => None,
        }
    }

    /// True when lendvm stopped the VM because its console's reader went away.
    pub fn console_closed(&self) -> bool {
        matches!(self, Ending::Vm(Status::Exited(e)) if e.kind == vmm::exit_kind::FORCE_STOPPED)
    }

    /// "exited with code 0", "stopped by SIGINT (signal 2)", …
    pub fn text(&self) -> String {
        match self {
            Ending::Signal(s) => format!("was stopped by {} (signal {s})", crate::stop::name(*s)),
            Ending::Vm(status) => status_text(status),
        }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone)]
pub struct Report {
    /// The VM's bindings.
    pub bindings: Vec<BindingRow>,
    /// The VM's counters at the end.
    pub metrics: VmMetrics,
    /// How the run ended.
    pub status: Ending,
    /// Bytes the guest touched first, and how long that took.
    pub first_touch: Option<(u64, Duration)>,
    /// What the run showed.
    pub checks: Vec<Check>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Console output, if captured.
    pub console: String,
    /// What the demo shows beyond its checks (None for user guests).
    pub demo: Option<DemoSummary>,
}

/// Figures of the demo that are not a check of their own.
#[derive(Debug, Clone, Copy)]
pub struct DemoSummary {
    /// The demand-paging chunk of the lent RAM binding (DESIGN D2).
    pub chunk: u64,
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

/// Bytes in the largest binary unit that divides them.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// How a VM stopped, in words.
pub fn status_text(s: &Status) -> String {
    match s {
        Status::Exited(e) if e.kind == vmm::exit_kind::FORCE_STOPPED => {
            "was stopped by lendvm: the console's reader went away (EPIPE)".into()
        }
        Status::Exited(e) if e.kind == vmm::exit_kind::RESET => "was reset (exit code 0)".into(),
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
        if let Some(d) = &self.demo {
            let _ = writeln!(
                s,
                "  demand chunk of the lent RAM: {} (DESIGN D2; `lendvm info` gives the rule)",
                size(d.chunk)
            );
        }
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
            for (_, label, value) in &c.facts {
                let _ = writeln!(s, "         {label:<34} {value}");
            }
        }
        if !self.console.is_empty() {
            let _ = writeln!(s, "Console\n{}", self.console.trim_end());
        }
        let _ = writeln!(
            s,
            "The VM {} after {:.1} ms; lendvm's peak resident memory: {} KiB.",
            self.status.text(),
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
            .map(|c| {
                let facts: serde_json::Map<String, serde_json::Value> = c
                    .facts
                    .iter()
                    .map(|(key, _, value)| (key.to_string(), value.json()))
                    .collect();
                serde_json::json!({"what": c.what, "ok": c.ok, "detail": c.detail, "facts": facts})
            })
            .collect();
        let (exit_code, crashed) = match &self.status {
            Ending::Vm(Status::Exited(e)) if e.kind != vmm::exit_kind::FORCE_STOPPED => {
                (Some(e.code()), false)
            }
            Ending::Vm(Status::Crashed(_) | Status::LoadFailed) => (None, true),
            _ => (None, false),
        };
        serde_json::json!({
            "status": self.status.text(),
            "exit_code": exit_code,
            "crashed": crashed,
            "signal": self.status.signal(),
            "console_closed": self.status.console_closed(),
            "exit_status": self.status.exit_status(self.all_ok()),
            "demand_chunk_bytes": self.demo.map(|d| d.chunk),
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
