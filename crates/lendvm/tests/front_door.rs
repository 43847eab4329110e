//! Issue 9: bad input refused early and clearly, through the real binary.
//! Each test names the item of the issue it covers.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::TempFile;

fn lendvm<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the lendvm binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A failure: the exit status, one line on stderr containing `want`, and
/// nothing on stdout.
fn assert_refused(out: &Output, code: i32, want: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(want), "{err:?} should say {want:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A file with a name that is not UTF-8, removed when dropped.
struct ByteNamedFile(PathBuf);

impl ByteNamedFile {
    fn new(bytes: &[u8]) -> ByteNamedFile {
        let mut name = format!("lendvm-test-{}-", std::process::id()).into_bytes();
        name.extend_from_slice(b"\xff\xfe-guest.elf");
        let path = std::env::temp_dir().join(OsString::from_vec(name));
        std::fs::write(&path, bytes).unwrap();
        ByteNamedFile(path)
    }
}

impl Drop for ByteNamedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// Item 1: arguments are bytes; none makes lendvm panic.
#[test]
fn arguments_that_are_not_utf8_are_refused_or_used_never_a_panic() {
    let bad = OsString::from_vec(b"\xff\xfe".to_vec());
    assert_refused(&lendvm([&bad]), 2, "unknown command \"\\xFF\\xFE\"");
    let mut opt = b"--".to_vec();
    opt.push(0xff);
    assert_refused(&lendvm([OsString::from_vec(opt)]), 2, "unknown option");
    assert_refused(
        &lendvm([
            OsString::from("run"),
            OsString::from("--image"),
            OsString::from("x"),
            OsString::from("--cmdline"),
            bad.clone(),
        ]),
        2,
        "--cmdline: \"\\xFF\\xFE\" is not valid UTF-8",
    );
    // A missing file whose name is not UTF-8 is named, escaped.
    let missing = std::env::temp_dir().join(OsString::from_vec(b"no-such-\xff.elf".to_vec()));
    let out = lendvm([
        OsString::from("run"),
        OsString::from("--image"),
        missing.into(),
    ]);
    assert_refused(&out, 1, "no-such-\\xFF.elf\": cannot read the image");
}

#[test]
fn an_image_whose_name_is_not_utf8_boots() {
    if testkit::kvm().is_none() {
        return;
    }
    let image = ByteNamedFile::new(test_guests::images::HELLO);
    let out = lendvm([
        OsString::from("run"),
        OsString::from("--image"),
        image.0.clone().into(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello from lendvm guest vCPU 0"));
}

// Item 1: usage errors are one line, exit 2, before any work.
#[test]
fn usage_errors_are_one_line_with_exit_status_2() {
    for (args, want) in [
        (&["frobnicate"][..], "unknown command \"frobnicate\""),
        (
            &["run", "--vcpus", "zero"],
            "--vcpus: \"zero\" is not a number",
        ),
        (&["run", "--memory", "size=3"], "multiple of 4 KiB"),
        (&["run", "--bogus"], "unknown option --bogus"),
        (&["run", "--json=1"], "--json takes no value"),
        (
            &["run", "--vcpus", "2"],
            "--vcpus needs --image or --kernel",
        ),
    ] {
        assert_refused(&lendvm(args), 2, want);
    }
}

// Item 3: the range that made a debug build panic ("attempt to add with
// overflow") is a usage error naming it.
#[test]
fn memory_that_wraps_the_address_space_is_a_usage_error_naming_the_range() {
    let out = lendvm([
        "run",
        "--image",
        "/nonexistent",
        "--memory",
        "size=64M,at=0xfffffffffc000000",
    ]);
    assert_refused(
        &out,
        2,
        "--memory: guest RAM [0xfffffffffc000000, +0x4000000) passes the end of the 64-bit address space",
    );
}

// Item 2: special files are refused by stat, before they are opened.
#[test]
fn special_files_are_refused_before_they_are_read() {
    let t = Instant::now();
    assert_refused(
        &lendvm(["run", "--image", "/dev/zero"]),
        1,
        "/dev/zero: the image must be a regular file, this is a character device",
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_refused(
        &lendvm(["run", "--kernel", "/tmp"]),
        1,
        "the kernel must be a regular file, this is a directory",
    );
    let fifo = std::env::temp_dir().join(format!("lendvm-test-{}-fifo", std::process::id()));
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Opening a FIFO for reading would wait for a writer forever.
    let out = lendvm(["run", "--image", fifo.to_str().unwrap()]);
    let _ = std::fs::remove_file(&fifo);
    assert_refused(&out, 1, "the image must be a regular file, this is a FIFO");
}

/// Run `lendvm args` and return its output, wall time and peak RSS (KiB,
/// from wait4: the child's own, whatever it allocated).
fn measured(args: &[&str]) -> (Output, Duration, i64) {
    let t = Instant::now();
    #[allow(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also gives its rusage"
    )]
    let child = Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Read the pipes after the exit: these messages fit in a pipe buffer.
    // SAFETY: `pid` is our child; status and usage are valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    let elapsed = t.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    child.stdout.unwrap().read_to_end(&mut stdout).unwrap();
    child.stderr.unwrap().read_to_end(&mut stderr).unwrap();
    use std::os::unix::process::ExitStatusExt;
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    (out, elapsed, usage.ru_maxrss)
}

// Item 2: "a 2 GiB sparse initrd for 64 MiB of RAM took 9 s and 2 GiB of
// RSS before the refusal".
#[test]
fn an_initrd_larger_than_guest_ram_is_refused_in_milliseconds_without_reading_it() {
    let kernel = TempFile::new("fd-kernel.bin", &[0u8; 4096]);
    let initrd = TempFile::new("fd-sparse-initrd.img", b"");
    std::fs::File::options()
        .write(true)
        .open(initrd.path())
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (out, elapsed, rss_kib) = measured(&[
        "run",
        "--kernel",
        kernel.path(),
        "--initrd",
        initrd.path(),
        "--memory",
        "size=64M",
    ]);
    assert_refused(
        &out,
        1,
        "the initrd is 2147483648 bytes (0x80000000), more than the 67108864 bytes (0x4000000) of guest RAM asked for",
    );
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
    // The kernel itself is held to the same rule.
    let (out, _, _) = measured(&["run", "--kernel", initrd.path()]);
    assert_refused(&out, 1, "the kernel is 2147483648 bytes");
}

// Item 4: an empty initrd says so.
#[test]
fn an_empty_initrd_says_it_is_empty() {
    let kernel = TempFile::new("fd-kernel2.bin", &[0u8; 4096]);
    let initrd = TempFile::new("fd-empty-initrd.img", b"");
    assert_refused(
        &lendvm(["run", "--kernel", kernel.path(), "--initrd", initrd.path()]),
        1,
        "the initrd is empty (0 bytes)",
    );
}

// Item 4: a bzImage problem is called a bzImage problem.
#[test]
fn bzimage_header_errors_say_bzimage_not_elf() {
    let mut old = vec![0u8; 0x1000];
    old[0x202..0x206].copy_from_slice(b"HdrS");
    old[0x206..0x208].copy_from_slice(&0x0209u16.to_le_bytes());
    let old = TempFile::new("fd-old.bzimage", &old);
    let out = lendvm(["run", "--kernel", old.path()]);
    assert_refused(
        &out,
        1,
        "unsupported bzImage: Linux boot protocol 2.09; lendvm needs 2.12 or later",
    );
    assert!(!text(&out.stderr).contains("ELF"));
}

// Item 3: "a PVH segment at 0xffffffffffe00000 makes the 2 MiB round-up of
// the kernel end wrap to 0, so the size check passes and the error comes
// late".
#[test]
fn a_pvh_kernel_at_the_top_of_the_address_space_is_refused_before_any_vm() {
    let top = TempFile::new(
        "fd-top.pvh",
        &testkit::elf_image(&[0xf4], 0xffff_ffff_ffe0_0000, true),
    );
    let out = lendvm(["run", "--kernel", top.path()]);
    assert_refused(
        &out,
        1,
        "the kernel ends at 0xffffffffffe01000, past the end of the 64-bit address space",
    );
}

// Item 5: the serial log must not overwrite an input, whatever its name.
#[test]
fn a_serial_file_that_is_an_input_is_refused_and_left_intact() {
    let image = TempFile::new("fd-serial-image.elf", test_guests::images::HELLO);
    let initrd = TempFile::new("fd-serial-initrd.img", b"initrd bytes");
    let link = format!("{}.link", initrd.path());
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(initrd.path(), &link).unwrap();
    for (out_path, what) in [(image.path(), "the image"), (link.as_str(), "the initrd")] {
        let out = lendvm([
            "run",
            "--image",
            image.path(),
            "--initrd",
            initrd.path(),
            "--serial",
            &format!("file={out_path}"),
        ]);
        assert_refused(&out, 2, &format!("that file is {what}"));
    }
    let _ = std::fs::remove_file(&link);
    assert_eq!(
        std::fs::read(image.path()).unwrap(),
        test_guests::images::HELLO
    );
    assert_eq!(std::fs::read(initrd.path()).unwrap(), b"initrd bytes");
}

// Item 6: more vCPUs than KVM runs in a VM, with both numbers.
#[test]
fn more_vcpus_than_the_host_allows_is_a_usage_error_with_both_numbers() {
    let Some(kvm) = testkit::kvm() else { return };
    let max = kvm.get_max_vcpus();
    let image = TempFile::new("fd-vcpus.elf", test_guests::images::HELLO);
    let asked = (max + 1).to_string();
    let out = lendvm(["run", "--image", image.path(), "--vcpus", &asked]);
    assert_refused(
        &out,
        2,
        &format!("--vcpus {asked}: this host's KVM runs at most {max} vCPUs per VM"),
    );
}
