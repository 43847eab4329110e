//! The `lendvm` command as users run it: the real binary, real KVM.

use std::process::{Command, Output};

fn lendvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lendvm"))
        .args(args)
        .output()
        .expect("the lendvm binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

use testkit::TempFile;

#[test]
fn help_explains_every_option() {
    for args in [&["--help"][..], &["help"], &["run", "-h"]] {
        let out = lendvm(args);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for word in [
            "--image", "--memory", "--vcpus", "--json", "lend", "share", "private", "info",
        ] {
            assert!(help.contains(word), "help lacks {word}");
        }
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    for (args, want) in [
        (&["frobnicate"][..], "unknown command"),
        (&["run", "--vcpus", "zero"], "--vcpus"),
        (&["run", "--memory", "size=3"], "multiple of 4 KiB"),
        (&["run", "--bogus"], "unknown option"),
    ] {
        let out = lendvm(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn info_prints_capabilities_decisions_and_the_enforcement_matrix() {
    let out = lendvm(&["info"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for want in ["Host", "D1 ", "D10", "Enforcement", "kernel", "lendvm"] {
        assert!(s.contains(want), "info lacks {want}:\n{s}");
    }
    if testkit::kvm().is_some() {
        assert!(s.contains("guest_memfd          yes"), "{s}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&lendvm(&["info", "--json"]).stdout).unwrap();
    assert_eq!(json["decisions"].as_array().unwrap().len(), 10);
}

#[test]
fn the_demo_runs_with_no_arguments_and_every_step_holds() {
    if testkit::kvm().is_none() {
        return;
    }
    let out = lendvm(&[]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    assert_eq!(s.matches("[ok]").count(), 8, "{s}");
    assert!(!s.contains("FAILED"), "{s}");
    for want in [
        "shared page",
        "lent RAM",
        "private region",
        "late binding",
        "doorbell",
        "first touch:",
    ] {
        assert!(s.contains(want), "report lacks {want}");
    }
    let out = lendvm(&["run", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["all_ok"], true, "{j}");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["bindings"].as_array().unwrap().len(), 5);
    assert!(j["first_touch_pages_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_image_boots_a_user_elf_with_each_memory_mode() {
    if testkit::kvm().is_none() {
        return;
    }
    let image = TempFile::new("hello.elf", test_guests::images::HELLO);
    for memory in ["size=64M", "size=16M,mode=share", "size=32M,mode=private"] {
        let out = lendvm(&[
            "run",
            "--image",
            image.path(),
            "--memory",
            memory,
            "--vcpus",
            "2",
        ]);
        let s = text(&out.stdout);
        assert!(out.status.success(), "{memory}: {s}\n{}", text(&out.stderr));
        assert!(s.contains("hello from lendvm guest vCPU 0"), "{s}");
        assert!(s.contains("hello from lendvm guest vCPU 1"), "{s}");
        assert!(s.contains("1 MiB of RAM at 0x400000: ok"), "{s}");
    }
}

#[test]
fn bad_images_are_refused_naming_the_file_before_any_vm_exists() {
    let garbage = TempFile::new("garbage.elf", b"this is not an ELF file");
    let hello = TempFile::new("small-ram.elf", test_guests::images::HELLO);
    for (args, want) in [
        (
            vec!["run", "--image", "/nonexistent/guest.elf"],
            "/nonexistent/guest.elf: cannot read",
        ),
        (vec!["run", "--image", garbage.path()], "not an ELF file"),
        (
            vec!["run", "--image", hello.path(), "--memory", "size=1M"],
            "outside guest RAM",
        ),
    ] {
        let out = lendvm(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    assert!(text(&lendvm(&["run", "--image", garbage.path()]).stderr).contains(garbage.path()));
}
