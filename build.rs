//! Generates the C header `kharbranth.h` from `src/ffi/` with cbindgen (feature `capi` only).
//!
//! The header is written to `OUT_DIR`, never into the source tree: as a dependency this crate
//! may sit read-only in `~/.cargo/registry`, and `cargo package` refuses a build script that
//! changes the sources. `include/kharbranth.h` is refreshed only when asked for with
//! `KHARBRANTH_WRITE_HEADER=1` (what `scripts/gen_header.sh` does); `tests/header.rs` fails
//! while the committed copy differs from the generated one.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    soname();
    #[cfg(feature = "capi")]
    header::generate();
}

/// Gives the shared library the SONAME `libkharbranth.so.MAJOR` (Linux only), so a program
/// linked against it records the major version and an incompatible `libkharbranth.so.1` can be
/// installed next to it (`scripts/install.sh` makes the usual symlinks). MAJOR is the crate's
/// major version: 0 for every 0.x release, like libcurl's long-lived `libcurl.so.4`; a change
/// that breaks the C ABI bumps it (see README, "Install").
///
/// Programs linked against the build tree (`-Ltarget/release -lkharbranth`) then need a
/// `libkharbranth.so.MAJOR` next to `libkharbranth.so` at run time: a symlink is made in the
/// profile directory (cargo itself never makes one), once, pointing at the file cargo writes.
fn soname() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let soname = format!("libkharbranth.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out. Best effort: a layout cargo
    // might use one day, or a read-only directory, only means no symlink.
    let Some(profile_dir) = std::env::var_os("OUT_DIR")
        .map(std::path::PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).map(std::path::Path::to_path_buf))
    else {
        return;
    };
    if profile_dir.join("build").is_dir() {
        let link = profile_dir.join(&soname);
        if std::fs::symlink_metadata(&link).is_err() {
            #[cfg(unix)]
            let _ = std::os::unix::fs::symlink("libkharbranth.so", &link);
        }
    }
}

#[cfg(feature = "capi")]
mod header {
    use std::path::PathBuf;

    const PROLOGUE: &str = r#"/*
 * kharbranth: a WebSocket client connection manager. The header needs C99 (or C++11) or later.
 *
 * THE CONTRACT
 *
 * Ownership. Objects made by a `_new` function are owned by the caller and destroyed exactly
 * once by the matching `_free`. Out-parameters come last and are written only on success.
 * Every pointer + length pair is read during the call only: the library copies what it keeps.
 * `kh_config` is copied by `kh_manager_add`; `kh_hooks` is copied too, and its `user_data` is
 * the caller's until `on_drop` is called for it.
 *
 * Strings. Names, URLs, header names and values, paths and reasons are NUL-terminated UTF-8.
 * Message payloads are pointer + length and need no NUL.
 *
 * Errors. Every fallible function returns a kh_result; KH_OK is 0. kh_last_error() gives the
 * message of the last failed call on the calling thread. NULL pointers, invalid UTF-8, unknown
 * or duplicate names, bad URLs, out-of-range values and oversized messages are refused with an
 * error code, never a crash, and change nothing. No Rust panic crosses into C: one is reported
 * as KH_PANIC.
 *
 * Threads. Every function may be called from any thread, concurrently, except that
 * kh_manager_free must be the last call on its manager and a kh_config must not be used from
 * two threads at once. Callbacks (kh_hooks) run on the manager's runtime threads; the callbacks
 * of one connection never run concurrently and see frames in arrival order.
 *
 * Callbacks. Pointers handed to a callback are valid only until it returns. A callback may call
 * the send, restart, state, stats and close functions and kh_manager_free; from a callback,
 * close and free only start their work and return at once, and kh_manager_wait_open is refused
 * (see each function). A callback must return normally (no C++ exception, no longjmp). A slow
 * callback slows its own socket (TCP backpressure) and never causes a message to be dropped.
 * The live subscription functions (kh_manager_subscribe_*, kh_manager_unsubscribe*,
 * kh_manager_subscription_count) never block and may be called from callbacks too.
 *
 * Lifetime. After kh_manager_close returns (called outside any callback) no callback of that
 * connection runs again. After kh_manager_free returns (called outside any callback) no
 * callback runs at all and every on_drop has been called. Both are bounded in time even when a
 * peer never answers, unless a callback blocks: they wait for a running callback to return.
 *
 * Logging. Off until kh_log_init (stderr) or kh_log_set_callback (the host's logger) is called,
 * once per process. No level logs message payloads, header values or other secrets.
 *
 * Versions. KH_VERSION_* below and kh_version() follow the crate's version; the shared library's
 * SONAME is libkharbranth.so.KH_VERSION_MAJOR. Within a major version the ABI only grows.
 *
 * Not supported: fork() after kh_manager_new (the runtime's threads do not survive it).
 */"#;

    pub fn generate() {
        println!("cargo:rerun-if-changed=src/ffi");
        println!("cargo:rerun-if-changed=cbindgen.toml");
        println!("cargo:rerun-if-env-changed=KHARBRANTH_WRITE_HEADER");
        let root = PathBuf::from(env("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env("OUT_DIR")).join("kharbranth.h");
        let mut config =
            cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
        let major = env("CARGO_PKG_VERSION_MAJOR");
        let minor = env("CARGO_PKG_VERSION_MINOR");
        let patch = env("CARGO_PKG_VERSION_PATCH");
        let version = env("CARGO_PKG_VERSION");
        config.header = Some(PROLOGUE.to_string());
        // The version macros first, then cbindgen.toml's own `after_includes` (the growable
        // structs' initialisers).
        let extra = config.after_includes.take().unwrap_or_default();
        config.after_includes = Some(format!(
            "\n#define KH_VERSION_MAJOR {major}\n#define KH_VERSION_MINOR {minor}\n\
             #define KH_VERSION_PATCH {patch}\n#define KH_VERSION_STRING \"{version}\"\n{extra}"
        ));
        let bindings = match cbindgen::Builder::new()
            .with_crate(&root)
            .with_config(config)
            .generate()
        {
            Ok(b) => b,
            Err(e) => panic!("cbindgen failed: {e}"),
        };
        bindings.write_to_file(&out);
        if std::env::var_os("KHARBRANTH_WRITE_HEADER").is_some_and(|v| v == "1") {
            let committed = root.join("include").join("kharbranth.h");
            let fresh = std::fs::read(&out).expect("header just written");
            // Unchanged content is not rewritten, so the file's mtime stays put.
            if std::fs::read(&committed).ok().as_deref() != Some(&fresh[..]) {
                std::fs::create_dir_all(root.join("include")).expect("include/ can be created");
                std::fs::write(&committed, fresh).expect("include/kharbranth.h can be written");
            }
        }
    }

    fn env(key: &str) -> String {
        std::env::var(key).expect("set by cargo")
    }
}
