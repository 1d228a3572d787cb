//! The shared library exports only `kh_` symbols, exactly those of the committed list
//! `include/kharbranth.symbols`, and the header declares the same functions: the ABI only
//! grows, so a symbol that disappears, or a new one that is not added to the list, fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The cdylib `cargo test` builds next to the test binary's deps directory, built here when
/// missing.
fn shared_library() -> PathBuf {
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
    lib
}

#[test]
fn shared_library_exports_only_kh_symbols() {
    let lib = shared_library();
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

    let exported: BTreeSet<&str> = symbols.into_iter().collect();
    let listed = listed_symbols();
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let gone: Vec<&&str> = listed.difference(&exported).collect();
    assert!(
        gone.is_empty(),
        "symbols of include/kharbranth.symbols no longer exported (the ABI only grows): {gone:?}"
    );
    let unlisted: Vec<&&str> = exported.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "exported symbols missing from include/kharbranth.symbols (add them): {unlisted:?}"
    );
}

/// The committed list: one symbol a line, `#` comments.
fn listed_symbols() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/kharbranth.symbols");
    std::fs::read_to_string(path)
        .expect("include/kharbranth.symbols exists")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn header_declares_exactly_the_listed_functions() {
    let header = include_str!("../include/kharbranth.h");
    // A declaration's name is followed by `(`, at the start of a line or after its return type.
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter_map(|l| {
            let name = l.split('(').next()?.split_whitespace().last()?;
            let name = name.trim_start_matches('*');
            (name.starts_with("kh_") && l.contains('(')).then(|| name.to_string())
        })
        .collect();
    let listed: BTreeSet<String> = listed_symbols().into_iter().collect();
    assert_eq!(
        declared, listed,
        "include/kharbranth.h and include/kharbranth.symbols disagree"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn shared_library_has_the_soname_of_the_major_version() {
    let lib = shared_library();
    let Ok(out) = Command::new("readelf").arg("-d").arg(&lib).output() else {
        eprintln!("skipping: readelf is not available");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "Library soname: [libkharbranth.so.{}]",
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert!(text.contains(&want), "{want} not in:\n{text}");
}
