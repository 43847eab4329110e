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
        (
            &["run", "--memory", "size=4K"],
            "--memory needs --image or --kernel",
        ),
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
    for want in [
        "Host",
        "D1 ",
        "D10",
        "D11",
        "D12",
        "root / CAP_SYS_PTRACE can read host-mappable lent pages",
        "Enforcement",
        "kernel",
        "lendvm",
        "host access while shared",
        "nothing needs enforcing",
        "Demand paging (DESIGN D2)",
        "clamp(next_pow2(binding size / 64), 2 MiB, 1 GiB)",
        "64 MiB -> 2 MiB",
    ] {
        assert!(s.contains(want), "info lacks {want}:\n{s}");
    }
    if testkit::kvm().is_some() {
        assert!(s.contains("guest_memfd          yes"), "{s}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&lendvm(&["info", "--json"]).stdout).unwrap();
    assert_eq!(json["decisions"].as_array().unwrap().len(), 12);
    // The JSON carries what the text shows.
    let rows = json["enforcement"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["guarantee"] == "host access while shared" && r["memfd"] == "none needed"),
        "{json}"
    );
    assert_eq!(json["demand_chunk"]["min_bytes"], 2 << 20);
    assert!(
        json["demand_chunk"]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["binding_bytes"] == 64 << 20 && e["chunk_bytes"] == 2 << 20)
    );
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
        // Issue 9 item 11: what each step claims, shown.
        "\"Hello from the host: please read me and answer.\"",
        "\"Guest here. You wrote: Hello from the host: please read me and answer.\"",
        "kernel-enforced",
        "page fault at 0x40000000 (-ENOENT)",
        "checksum by the host after reclaim",
        "demand chunk of the lent RAM: 2 MiB",
    ] {
        assert!(s.contains(want), "report lacks {want}:\n{s}");
    }
    let out = lendvm(&["run", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["all_ok"], true, "{j}");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["exit_status"], 0);
    assert_eq!(j["signal"], serde_json::Value::Null);
    assert_eq!(j["bindings"].as_array().unwrap().len(), 5);
    assert!(j["first_touch_pages_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(j["demand_chunk_bytes"], 2 << 20);
    // The checksums side by side: equal where the report says so.
    let facts = |what: &str| {
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["what"].as_str().unwrap().starts_with(what))
            .unwrap_or_else(|| panic!("no check {what}: {j}"))["facts"]
            .clone()
    };
    let shared = facts("shared page");
    assert_eq!(shared["guest_checksum"], shared["host_checksum"]);
    assert!(
        shared["guest_answer"]
            .as_str()
            .unwrap()
            .ends_with(shared["host_message"].as_str().unwrap())
    );
    let lent = facts("lent RAM: the guest filled");
    assert_eq!(lent["guest_checksum"], lent["host_checksum"]);
    assert_eq!(lent["chunks"], 32);
    let private = facts("private region");
    assert_eq!(private["guest_checksum"], private["host_checksum"]);
    let late = facts("late binding");
    assert_eq!(late["fault_addr"], "0x40000000");
    assert_eq!(late["fault_attempt"], "-ENOENT");
    let back = facts("teardown");
    assert_eq!(back["host_checksum"], back["zeros_checksum"]);
    assert_eq!(back["guest_checksum"], lent["guest_checksum"]);
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
