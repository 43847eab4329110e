//! `examples/gunyah_hello.c`, built as a Gunyah developer would and run
//! under the library: it boots lendvm's hello guest through /dev/gunyah
//! and runs it to its exit.

mod common;

#[test]
fn the_example_boots_the_hello_guest_and_prints_its_console() {
    let root = testkit::gunyah::workspace_root();
    let program = testkit::gunyah::compile_c(
        "gunyah_hello",
        &[root.join("examples/gunyah_hello.c")],
        &[common::include_dir()],
    );
    let hello = common::hello_elf();
    let hello = hello.to_str().expect("build paths are UTF-8");
    let Some(out) = common::run_preloaded(&program, &[hello], &[]) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}:\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "gunyah_hello: VM started at 0x100000",
            "hello from lendvm guest vCPU 0",
            "1 MiB of RAM at 0x400000: ok",
            "gunyah_hello: guest exited with code 0",
        ]
    );
}
