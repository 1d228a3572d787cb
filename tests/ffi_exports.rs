//! The shared library exports only `kh_` symbols.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn shared_library_exports_only_kh_symbols() {
    // The cdylib is built next to the test binary's deps directory by `cargo test`.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .expect("target dir");
    let lib = dir.join("libkharbranth.so");
    if !lib.exists() {
        // `cargo test` builds the library as an rlib only; build the shared one it ships.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--lib"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --lib failed");
    }
    assert!(lib.exists(), "{} was not built", lib.display());
    let out = match Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("skipping: nm is not available");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let symbols: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(symbols.contains(&"kh_manager_new"), "{symbols:?}");
    let foreign: Vec<&&str> = symbols.iter().filter(|s| !s.starts_with("kh_")).collect();
    assert!(foreign.is_empty(), "non-kh_ exports: {foreign:?}");
}
