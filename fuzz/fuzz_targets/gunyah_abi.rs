//! The raw Gunyah entry points of `gunyah_abi` (CREATE_VM,
//! CREATE_GUEST_MEM, MAP_MEM in both flag encodings, ADD/REMOVE_FUNCTION
//! through user pointers, SET_DTB_CONFIG, SET_FW_CONFIG, SET_BOOT_CONTEXT,
//! START, VCPU_RUN, SET_USER_MEM_REGION / LEND_USER_MEM) on a real lendvm
//! device, driven by a sequence of `arbitrary`-decoded operations.
//!
//! Each call must succeed or fail with an errno SPEC §2.13 allows for its
//! request (exactly the one the SPEC's order of checks names, where the
//! harness can tell), never panic; after each, lendvm's bookkeeping must
//! hold together (see `check.rs`). Everything an input makes is dropped at
//! its end, and the process must have as many descriptors as before.
//!
//! Without a usable /dev/kvm every input is a no-op (said once).
//! `LENDVM_FUZZ_TRACE=1` prints every op and answer (for reproducers);
//! `LENDVM_FUZZ_STATS=<file>` keeps counts of answers and exits there.

#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "gunyah_abi/check.rs"]
mod check;
#[path = "gunyah_abi/functions.rs"]
mod functions;
#[path = "gunyah_abi/harness.rs"]
mod harness;
#[path = "gunyah_abi/ops.rs"]
mod ops;
#[path = "gunyah_abi/run.rs"]
mod run;
#[path = "gunyah_abi/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

use check::Request;
use harness::Harness;
use ops::Op;

/// Ops per input: enough for a VM to be set up, started and run, few
/// enough that an input stays in the milliseconds.
const MAX_OPS: usize = 64;

/// Counts of answers and exits, for `LENDVM_FUZZ_STATS`.
#[derive(Default)]
pub struct Stats {
    inputs: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn bump(&self, key: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    pub fn count(&self, req: Request, errno: Option<i32>) {
        self.bump(match errno {
            None => format!("{req:?} ok"),
            Some(e) => format!("{req:?} errno {e}"),
        });
    }

    pub fn exit(&self, exit: Option<vmm::Exit>) {
        self.bump(match exit {
            Some(vmm::Exit::Mmio { is_write, .. }) => format!("exit mmio write={is_write}"),
            Some(vmm::Exit::PageFault { attempt, .. }) => format!("exit page fault {attempt}"),
            Some(vmm::Exit::Status(vmm::Status::Crashed(c))) => {
                let c = format!("{c:?}");
                format!("exit crashed {}", c.split([' ', '{']).next().unwrap_or(""))
            }
            Some(vmm::Exit::Status(s)) => format!("exit status {s:?}"),
            None => "exit none".into(),
        });
    }

    fn dump(&self) {
        let n = self.inputs.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(500) {
            return;
        }
        if let Some(path) = std::env::var_os("LENDVM_FUZZ_STATS") {
            let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let mut s = format!("inputs {n}\n");
            for (k, v) in counts.iter() {
                s.push_str(&format!("{k}: {v}\n"));
            }
            let _ = std::fs::write(path, s);
        }
    }
}

static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);

fuzz_target!(|data: &[u8]| {
    let Some(w) = world::world() else { return };
    let trace = std::env::var_os("LENDVM_FUZZ_TRACE").is_some();
    let fds = world::open_fds();
    {
        let mut h = Harness::new(w, &STATS, trace);
        let mut u = Unstructured::new(data);
        for _ in 0..MAX_OPS {
            if u.is_empty() {
                break;
            }
            match u.arbitrary::<Op>() {
                Ok(op) => h.step(&op),
                Err(_) => break,
            }
        }
    }
    // Everything the input made is gone: no descriptor outlives it, once
    // the kernel's part of each dropped VM's teardown (run on the device's
    // background thread) is done.
    w.dev.wait_for_teardown();
    assert_eq!(world::open_fds(), fds, "descriptors leaked across an input");
    STATS.dump();
});
