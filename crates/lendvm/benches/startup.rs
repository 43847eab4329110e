//! Start-up benchmark (issue 5): the tiny PVH guest under the real
//! `lendvm` binary, 20 runs per configuration. For each run: process start
//! to the first byte the guest writes on COM1 (read from lendvm's stdout),
//! process start to process exit, and lendvm's peak resident memory
//! (VmHWM, from its JSON report: a child's rusage would include this
//! process's memory inherited at exec).
//!
//! Run with `cargo bench -p lendvm --bench startup`. Reference figures
//! measured on this project's hosts with the same kind of guest (issue 5):
//! Firecracker v1.16.1 reaches the marker in 7.9 / 11.4 / 17.0 ms with
//! 4.2 MiB peak RSS, cloud-hypervisor v53.0 in 5.9 / 9.6 / 68 ms with
//! 8.5 MiB, QEMU microvm in ~3 s with 42 MiB.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

const RUNS: usize = 20;

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], median, v[v.len() - 1])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::fs::metadata("/dev/kvm").is_err() {
        println!("SKIP: no /dev/kvm");
        return;
    }
    let image = std::env::temp_dir().join(format!("lendvm-startup-{}.elf", std::process::id()));
    std::fs::write(&image, test_guests::images::PVH_HELLO).expect("write the PVH image");
    let lendvm = env!("CARGO_BIN_EXE_lendvm");
    println!("lendvm start-up, tiny PVH guest, {RUNS} runs each (min / median / max)");
    for (name, extra) in [
        ("default", &[][..]),
        ("--no-irqchip", &["--no-irqchip"][..]),
    ] {
        let (mut first, mut exit, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let start = Instant::now();
            let mut child = Command::new(lendvm)
                .args(["run", "--image"])
                .arg(&image)
                .args(extra)
                .arg("--json")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("lendvm starts");
            let mut out = child.stdout.take().expect("piped stdout");
            let mut byte = [0u8; 1];
            out.read_exact(&mut byte).expect("the guest prints");
            first.push(start.elapsed().as_secs_f64() * 1e3);
            let mut rest = Vec::new();
            out.read_to_end(&mut rest).expect("read the console");
            let mut err = String::new();
            child
                .stderr
                .take()
                .expect("piped stderr")
                .read_to_string(&mut err)
                .expect("read the report");
            let status = child.wait().expect("lendvm ends");
            exit.push(start.elapsed().as_secs_f64() * 1e3);
            assert!(status.success(), "lendvm failed: {err}");
            assert_eq!(&byte, b"H", "the marker starts with H");
            assert!(String::from_utf8_lossy(&rest).contains("from a PVH guest"));
            let report: serde_json::Value =
                serde_json::from_str(err.trim()).expect("one JSON object");
            rss.push(report["peak_rss_kib"].as_f64().expect("peak RSS reported"));
        }
        let (f0, f1, f2) = stats(&mut first);
        let (e0, e1, e2) = stats(&mut exit);
        let (r0, r1, r2) = stats(&mut rss);
        println!(
            "{name:>13}: first COM1 byte {f0:.2} / {f1:.2} / {f2:.2} ms, exit {e0:.2} / {e1:.2} / {e2:.2} ms, peak RSS {:.2} / {:.2} / {:.2} MiB",
            r0 / 1024.0,
            r1 / 1024.0,
            r2 / 1024.0
        );
        println!(
            "{:>13}  goals: median first byte < 6 ms: {}; peak RSS < 2.1 MiB: {}",
            "",
            if f1 < 6.0 { "met" } else { "NOT met" },
            if r2 < 2.1 * 1024.0 { "met" } else { "NOT met" }
        );
    }
    let _ = std::fs::remove_file(&image);
}
