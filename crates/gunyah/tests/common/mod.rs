//! Running programs under `liblendvm_gunyah.so`. The programs speak only
//! the Gunyah ioctl ABI (C compiled here with `cc`) and run as children
//! with LD_PRELOAD; these tests never call lendvm themselves. lendvm's
//! hello guest image is the one thing taken from lendvm's crates: its
//! bytes, written to a file for the programs to load.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use testkit::gunyah::{build_dir, compile_c, preload_library, workspace_root};

/// The directory of the Gunyah header the programs include.
pub fn include_dir() -> PathBuf {
    workspace_root().join("examples")
}

/// lendvm's hello guest as a file (written once per process, atomically).
pub fn hello_elf() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = build_dir();
        std::fs::create_dir_all(&dir).expect("the build directory can be created");
        let path = dir.join("hello.elf");
        let tmp = dir.join(format!("hello.elf.{}", std::process::id()));
        std::fs::write(&tmp, test_guests::images::HELLO).expect("the image can be written");
        std::fs::rename(&tmp, &path).expect("the image can be put in place");
        path
    })
    .clone()
}

/// Run `program args...` with the library preloaded and `env` set. `None`
/// when the test is skipped (no /dev/kvm; see testkit).
pub fn run_preloaded(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    testkit::kvm()?;
    let lib = preload_library();
    let out = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", lib)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Some(out)
}

/// The C program of test cases: every `.c` file in `tests/c`.
pub fn cases_program() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/c is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    compile_c("gunyah-cases", &sources, &[include_dir(), dir])
}

/// Run one case of the C program; it must print `ok <name>` and exit 0.
pub fn case(name: &str, env: &[(&str, &str)]) -> Option<String> {
    let prog = cases_program();
    let hello = hello_elf();
    let hello = hello.to_str().expect("build paths are UTF-8");
    let out = run_preloaded(&prog, &[name, hello], env)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {name}\n")),
        "case {name} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    Some(stdout)
}
