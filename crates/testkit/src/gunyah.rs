//! Building what the Gunyah preload library's tests run: the library
//! itself (`liblendvm_gunyah.so`) and C programs that use it.
//!
//! The workspace links glibc statically, and rustc drops the cdylib crate
//! type under crt-static, so the library is built by a nested
//! `cargo rustc --crate-type cdylib` with empty RUSTFLAGS into its own
//! target directory (`target/preload`). Test binaries call this in
//! parallel, so a file lock serialises the builds and each process builds
//! once; cargo itself skips the work when nothing changed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the library and the C programs are built.
pub fn build_dir() -> PathBuf {
    workspace_root().join("target/preload")
}

/// Hold an exclusive lock on `<build dir>/<name>.lock` while `f` runs.
fn locked<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let dir = build_dir();
    std::fs::create_dir_all(&dir).expect("the build directory can be created");
    let lock = File::create(dir.join(format!("{name}.lock"))).expect("a lock file can be created");
    lock.lock().expect("the build lock can be taken");
    let out = f();
    drop(lock);
    out
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build `liblendvm_gunyah.so` (once per process) and return its path.
pub fn preload_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        locked("library", || {
            let target = build_dir();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root())
                .args(["rustc", "-p", "lendvm-gunyah", "--release", "--lib"])
                .args(["--crate-type", "cdylib", "--target-dir"])
                .arg(&target)
                // An explicitly empty RUSTFLAGS replaces the workspace's
                // crt-static target flags; wrappers of the outer build
                // (coverage, caching) must not apply either.
                .env("RUSTFLAGS", "")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTC_WORKSPACE_WRAPPER");
            run(&mut cmd, "building liblendvm_gunyah.so");
            let lib = target.join("x86_64-unknown-linux-gnu/release/liblendvm_gunyah.so");
            assert!(lib.exists(), "{} was not built", lib.display());
            lib
        })
    })
    .clone()
}

/// Compile C `sources` (with `include` directories) into an executable
/// named `name` in the build directory, once per process, and return its
/// path. Warnings are errors.
pub fn compile_c(name: &str, sources: &[PathBuf], include: &[PathBuf]) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let out = build_dir().join("c").join(name);
    locked(&format!("c-{name}"), || {
        std::fs::create_dir_all(out.parent().expect("the output has a directory"))
            .expect("the C output directory can be created");
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let mut cmd = Command::new(cc);
        cmd.args(["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"]);
        for dir in include {
            cmd.arg("-I").arg(dir);
        }
        cmd.args(sources).arg("-o").arg(&out);
        run(&mut cmd, &format!("compiling {name}"));
    });
    built.push((name.to_string(), out.clone()));
    out
}
