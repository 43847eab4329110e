//! Issue 9 items 6 and 10: a graceful stop. Signals stop a real spinning
//! guest, tear the VM down and print the report naming the signal, with
//! exit status 128 + N; a console whose reader goes away stops the VM too.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::TempFile;

/// Prints "R\n" on the console port, then spins forever.
const SPIN: &[u8] = &[
    0xb0, b'R', // mov al, 'R'
    0xe6, 0xe9, // out 0xe9, al
    0xb0, b'\n', // mov al, '\n'
    0xe6, 0xe9, // out 0xe9, al
    0xeb, 0xfe, // jmp $
];

/// Prints "y\n" on the console port forever, like yes(1).
const YES: &[u8] = &[
    0xb0, b'y', // mov al, 'y'
    0xe6, 0xe9, // out 0xe9, al
    0xb0, b'\n', // mov al, '\n'
    0xe6, 0xe9, // out 0xe9, al
    0xeb, 0xf6, // jmp back to the first instruction
];

fn spawn(image: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(["run", "--image", image, "--vcpus", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lendvm starts")
}

/// Wait for the child with a deadline (a hung lendvm fails the test
/// instead of hanging it).
fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("lendvm did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

// Item 10: each stop signal ends a spinning guest with a report naming it
// and exit status 128 + N.
#[test]
fn a_stop_signal_ends_a_spinning_guest_with_a_report_naming_it() {
    if testkit::kvm().is_none() {
        return;
    }
    let image = TempFile::new("spin.elf", &testkit::elf_image(SPIN, 0x10_0000, false));
    for (signal, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let mut child = spawn(image.path(), &["--json"]);
        // The guest is running once its line is out.
        let mut console = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        console.read_line(&mut line).unwrap();
        assert_eq!(line, "R\n");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = wait(&mut child, Duration::from_secs(20));
        let report = stderr(&mut child);
        assert_eq!(status.code(), Some(128 + signal), "{name}: {report}");
        let j: serde_json::Value = serde_json::from_str(report.trim()).expect("one JSON object");
        assert_eq!(j["signal"], name, "{j}");
        assert_eq!(j["exit_status"], 128 + signal);
        assert_eq!(j["crashed"], false);
        assert!(
            j["status"].as_str().unwrap().contains(name),
            "{}",
            j["status"]
        );
        assert_eq!(j["bindings"].as_array().unwrap().len(), 1);
    }
    // The text report says it too.
    let mut child = spawn(image.path(), &[]);
    let mut console = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    console.read_line(&mut line).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait(&mut child, Duration::from_secs(20));
    let report = stderr(&mut child);
    assert_eq!(status.code(), Some(130), "{report}");
    assert!(
        report.contains("The VM was stopped by SIGINT (signal 2)"),
        "{report}"
    );
}

// Item 6: a console write into a closed pipe ends the run (141, the
// report on stderr) instead of spinning forever.
#[test]
fn a_console_whose_reader_went_away_stops_the_vm() {
    if testkit::kvm().is_none() {
        return;
    }
    let image = TempFile::new("yes.elf", &testkit::elf_image(YES, 0x10_0000, false));
    let mut child = spawn(image.path(), &["--json"]);
    let mut console = child.stdout.take().unwrap();
    let mut first = [0u8; 4];
    console.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\ny\n");
    drop(console);
    let status = wait(&mut child, Duration::from_secs(20));
    let report = stderr(&mut child);
    assert_eq!(status.code(), Some(141), "{report}");
    let j: serde_json::Value = serde_json::from_str(report.trim()).expect("one JSON object");
    assert_eq!(j["console_closed"], true, "{j}");
    assert_eq!(j["signal"], serde_json::Value::Null);
    assert!(
        j["status"]
            .as_str()
            .unwrap()
            .contains("console's reader went away"),
        "{j}"
    );
}

// Item 10 for the demo: a stop asked for before the guest runs gives a
// report of what was done (the teardown check) with the signal.
#[test]
fn the_demo_stops_on_a_signal_with_a_partial_report() {
    if testkit::kvm().is_none() {
        return;
    }
    let stop = lendvm::stop::Stop::new();
    assert!(stop.request(libc::SIGTERM));
    let report = lendvm::demo::run(&stop).expect("a report, not an error");
    assert_eq!(report.status, lendvm::report::Ending::Signal(libc::SIGTERM));
    assert_eq!(report.status.exit_status(report.all_ok()), 143);
    let whats: Vec<_> = report.checks.iter().map(|c| c.what).collect();
    assert_eq!(whats.len(), 1, "{whats:?}");
    assert!(whats[0].starts_with("teardown"), "{whats:?}");
    assert!(report.text().contains("stopped by SIGTERM"));
}
