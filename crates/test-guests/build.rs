//! Builds lendvm's test guests and leaves their images in `OUT_DIR`, where
//! `src/images.rs` embeds them.
//!
//! The guests are freestanding programs for the host target with their own
//! linker scripts (DESIGN §7). They form a Cargo workspace of their own,
//! `guests/`, because they need `panic = "abort"` and their own rustflags
//! (`guests/.cargo/config.toml`, which Cargo reads only when run from
//! `guests/`). So this script runs a nested `cargo build --release` there,
//! with its own target directory inside `OUT_DIR`, and with none of the
//! outer build's settings (`cargo clippy`, coverage tools and compiler
//! wrappers pass theirs through the environment): the guests come out the
//! same whatever builds lendvm.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest images: (binary in the guests workspace, file in `OUT_DIR`).
const IMAGES: &[(&str, &str)] = &[
    ("holding-cell", "holding_cell.elf"),
    ("hello", "hello.elf"),
    ("pvh-hello", "pvh_hello.elf"),
];

/// The guests are built for the host's own target, named explicitly (as the
/// workspace's `.cargo/config.toml` does), so the image path is the same
/// whichever config files apply.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Environment variables through which the outer build would change how the
/// nested one compiles, removed from its environment.
const OUTER_SETTINGS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Prefixes of further such variables: `CARGO_BUILD_RUSTFLAGS`,
/// `CARGO_BUILD_TARGET`, `CARGO_PROFILE_RELEASE_*`, `CARGO_TARGET_DIR`,
/// `CARGO_TARGET_<triple>_RUSTFLAGS`, ...
const OUTER_SETTING_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_", "CARGO_TARGET_"];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = manifest_dir.join("../../guests");
    // The guests share the boot ABI and mailbox protocol with the host.
    println!("cargo:rerun-if-changed=../guest-abi/src");
    rerun_if_changed_under(&guests);

    let target_dir = out_dir.join("guests-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .current_dir(&guests)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (name, _) in env::vars_os() {
        if is_outer_setting(&name) {
            build.env_remove(name);
        }
    }
    let output = build.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} to build the test guests: {e}",
            cargo.to_string_lossy()
        )
    });
    if !output.status.success() {
        panic!(
            "building the test guests failed: `cargo build --release` in {} exited with {}:\n{}",
            guests.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    for (binary, image) in IMAGES {
        let built = target_dir.join(TARGET).join("release").join(binary);
        fs::copy(&built, out_dir.join(image))
            .unwrap_or_else(|e| panic!("cannot copy the guest image {}: {e}", built.display()));
    }
}

/// Asks Cargo to rerun this script when anything in `guests/` changes, except
/// in its `target/` (where a build run by hand inside `guests/` goes).
fn rerun_if_changed_under(guests: &Path) {
    let entries =
        fs::read_dir(guests).unwrap_or_else(|e| panic!("cannot list {}: {e}", guests.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", guests.display()))
            .path();
        if path.file_name() != Some(OsStr::new("target")) {
            // Cargo scans directories recursively.
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn is_outer_setting(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    OUTER_SETTINGS.contains(&name.as_ref())
        || OUTER_SETTING_PREFIXES.iter().any(|p| name.starts_with(p))
}
