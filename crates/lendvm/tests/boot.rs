//! Standard boots through the `lendvm` command: the tiny PVH guest on
//! lendvm and, unchanged, on QEMU; Debian's real cloud kernel to its first
//! console line; bad kernels refused before any VM exists.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::TempFile;

const MARKER: &str = "Hello from a PVH guest\n";

fn have_kvm() -> bool {
    testkit::kvm().is_some()
}

/// Run `cmd` until its stdout contains `want` or `limit` passes; kill it
/// then. Returns what it printed and when `want` appeared.
fn watch(mut cmd: Command, want: &str, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the program starts");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut found = None;
    while start.elapsed() < limit {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(bytes) => seen.extend(bytes),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
        if String::from_utf8_lossy(&seen).contains(want) {
            found = Some(start.elapsed());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (String::from_utf8_lossy(&seen).into_owned(), found)
}

// Issue 5: the tiny PVH guest runs to its marker and exit on lendvm.
#[test]
fn the_tiny_pvh_guest_runs_to_its_marker_and_exits() {
    if !have_kvm() {
        return;
    }
    let image = TempFile::new("pvh.elf", test_guests::images::PVH_HELLO);
    let out = Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(["run", "--image", image.path()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        MARKER,
        "the console is stdout; the report is not"
    );
    assert!(report.contains("guest-reported boot complete"), "{report}");
    assert!(report.contains("Pvh"), "{report}");
    // --serial file=PATH and off.
    let log = std::env::temp_dir().join(format!("lendvm-boot-{}-serial.log", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(["run", "--image", image.path(), "--no-irqchip", "--serial"])
        .arg(format!("file={}", log.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), MARKER);
    let _ = std::fs::remove_file(&log);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Bindings"),
        "report on stdout"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(["run", "--image", image.path(), "--serial", "off", "--json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["exit_code"], 0);
    assert!(j["boot_complete_ms"].as_f64().unwrap() > 0.0);
    assert!(j["peak_rss_kib"].as_u64().unwrap() > 0);
}

// Issue 9 item 7 / DESIGN D12: a kernel's RAM goes below the 32-bit MMIO
// hole and above 4 GiB, so 64 GiB starts on this smaller host; nothing is
// allocated until the guest touches it.
#[test]
fn a_64_gib_pvh_guest_starts_with_ram_above_4_gib() {
    if !have_kvm() {
        return;
    }
    let image = TempFile::new("pvh64.elf", test_guests::images::PVH_HELLO);
    let out = Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(["run", "--image", image.path(), "--memory", "size=64G"])
        .args(["--serial", "off", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(u64, u64)> = j["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["guest_addr"].as_u64().unwrap(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, vec![(0, 3 << 30), (4 << 30, 61 << 30)]);
    let rss = j["peak_rss_kib"].as_u64().unwrap();
    assert!(
        rss < 256 << 10,
        "peak RSS {rss} KiB: RAM was allocated up front"
    );
}

// Issue 5: the same image boots unchanged on QEMU (skipped only when QEMU
// is not installed). microvm has no i8042, so QEMU is stopped after the
// marker.
#[test]
fn the_same_pvh_image_boots_unchanged_on_qemu() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        println!("SKIP: {qemu} is not installed");
        return;
    }
    if !have_kvm() {
        return;
    }
    let image = TempFile::new("qemu-pvh.elf", test_guests::images::PVH_HELLO);
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M",
        "microvm",
        "-accel",
        "kvm",
        "-cpu",
        "host,-arch-capabilities",
        "-m",
        "64M",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-kernel",
    ])
    .arg(image.path());
    let (out, found) = watch(cmd, MARKER, Duration::from_secs(60));
    assert!(
        found.is_some(),
        "QEMU did not print the marker; it printed {out:?}"
    );
}

// Issue 5: Debian's real cloud kernel boots on lendvm until its first
// console line (its vmlinux, through the PVH note: the bzImage's own
// decompressor runs in KVM's emulator on PVM hosts and needs ~110 s, see
// the ignored test below). Allowed 120 s.
#[test]
fn debian_kernel_prints_its_first_console_line() {
    if !have_kvm() {
        return;
    }
    let Some(vmlinux) = testkit::debian_kernel("vmlinux") else {
        return;
    };
    let (out, found) = watch(
        boot_cmd(&vmlinux),
        "Linux version",
        Duration::from_secs(120),
    );
    let Some(t) = found else {
        panic!("no console line within 120 s; got {out:?}")
    };
    println!("first console line after {:.1} s", t.as_secs_f64());
}

// DESIGN D11/D12: on a private guest_memfd the kernel's emulated CPL0
// accesses are completed by the access vCPU, whose read-only access region
// is the only lendvm memory in a kernel's VM. Allowed 120 s.
#[test]
fn debian_kernel_on_private_memory_prints_its_first_console_line() {
    if !have_kvm() {
        return;
    }
    let Some(vmlinux) = testkit::debian_kernel("vmlinux") else {
        return;
    };
    let mut cmd = boot_cmd(&vmlinux);
    cmd.args(["--memory", "size=512M,mode=private"]);
    let (out, found) = watch(cmd, "Linux version", Duration::from_secs(120));
    let Some(t) = found else {
        panic!("no console line within 120 s; got {out:?}")
    };
    println!("first console line after {:.1} s", t.as_secs_f64());
}

// The bzImage path to the first console line: ~110 s on PVM hosts (the
// decompressor is emulated). Run with `cargo test -- --ignored`.
#[test]
#[ignore = "about 110 s on PVM hosts: run with --ignored"]
fn debian_bzimage_prints_its_first_console_line() {
    let Some(vmlinuz) = testkit::debian_kernel("vmlinuz") else {
        return;
    };
    let (out, found) = watch(
        boot_cmd(&vmlinuz),
        "Linux version",
        Duration::from_secs(300),
    );
    assert!(found.is_some(), "no console line; got {out:?}");
}

fn boot_cmd(kernel: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lendvm"));
    cmd.args(["run", "--kernel"]).arg(kernel).args([
        "--memory",
        "size=512M",
        "--cmdline",
        "console=ttyS0 earlyprintk=serial,ttyS0,115200",
    ]);
    cmd
}

// Issue 5: malformed kernels get a clear error naming the file before any
// VM is created.
#[test]
fn bad_kernels_are_refused_naming_the_file() {
    let mut old = vec![0u8; 0x1000];
    old[0x202..0x206].copy_from_slice(b"HdrS");
    old[0x206..0x208].copy_from_slice(&0x0209u16.to_le_bytes());
    let old = TempFile::new("old.bzimage", &old);
    let truncated = TempFile::new("truncated.bzimage", b"\0\0HdrS");
    let native = TempFile::new("native.elf", test_guests::images::HELLO);
    let pvh = TempFile::new("pvh-initrd.elf", test_guests::images::PVH_HELLO);
    for (args, want) in [
        (vec!["run", "--kernel", old.path()], "2.12"),
        (
            vec!["run", "--kernel", truncated.path()],
            "not an ELF file or a Linux bzImage",
        ),
        (vec!["run", "--kernel", native.path()], "no PVH entry note"),
        (
            vec!["run", "--image", native.path(), "--initrd", old.path()],
            "native image takes no --initrd",
        ),
        (
            vec![
                "run",
                "--image",
                pvh.path(),
                "--memory",
                "size=64M,at=0x100000",
            ],
            "address 0",
        ),
        (
            vec!["run", "--image", pvh.path(), "--memory", "size=1M"],
            "needs RAM up to",
        ),
        (
            vec!["run", "--kernel", "/nonexistent/vmlinuz"],
            "cannot read",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lendvm"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} should say {want:?}");
        assert!(err.contains(args[2]), "{args:?}: the error names the file");
        assert!(out.stdout.is_empty());
    }
}
