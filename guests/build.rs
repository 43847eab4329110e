//! Links a guest as a static, freestanding ELF executable at the address
//! `guests/link.ld` names (DESIGN §7). Every guest crate uses this script
//! (`build = "../build.rs"`).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        &format!("-Wl,-T{dir}/../link.ld"),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=../link.ld");
}
