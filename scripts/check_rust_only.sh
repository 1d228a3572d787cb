#!/usr/bin/env bash
# A Rust program that depends on kharbranth with `default-features = false` gets neither the C
# ABI (feature `capi`) nor cbindgen, and compiling it writes nothing into this repository (as a
# dependency the crate may sit in a read-only ~/.cargo/registry).
#
# The program is made under target/ and checked (`cargo check`: build scripts run, nothing is
# linked) in this repository's target directory with its Cargo.lock, so after the clippy pass
# without default features only kharbranth itself is checked (seconds). Not `cargo build`:
# cargo gives a cdylib no hash in its file name, so the no-capi libkharbranth.so would replace
# target/debug/libkharbranth.so while the repository's own fingerprint still says fresh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir="$root/target/rust-only-check"
rm -rf "$dir"
mkdir -p "$dir/src"
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "rust-only-user"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
kharbranth = { path = "$root", default-features = false }

# Its own workspace: it lies inside kharbranth's directory but is not a member.
[workspace]
TOML
cat >"$dir/src/main.rs" <<'RS'
fn main() {
    let config = kharbranth::Config::builder("ws://127.0.0.1:9001/").build();
    assert!(config.is_ok(), "{:?}", config.err());
}
RS
cp Cargo.lock "$dir/"
manifest=(--manifest-path "$dir/Cargo.toml")

fail() { echo "check_rust_only: FAILED: $*" >&2; exit 1; }
if cargo tree "${manifest[@]}" -e normal,build --prefix none | grep -q '^cbindgen '; then
  fail "cbindgen is in the dependency tree of a default-features = false user"
fi
if cargo tree "${manifest[@]}" -e features -i kharbranth --prefix none | grep -q 'feature "capi"'; then
  fail "kharbranth's capi feature is on for a default-features = false user"
fi
stamp="$dir/stamp"
touch "$stamp"
status_before=$(git status --porcelain 2>/dev/null || true)
CARGO_TARGET_DIR="$root/target" cargo check "${manifest[@]}" --quiet
written=$(find "$root" -path "$root/target" -prune -o -path "$root/.git" -prune -o \
  -newer "$stamp" -type f -print)
[ -z "$written" ] || fail "the build wrote into the repository: $written"
[ "$(git status --porcelain 2>/dev/null || true)" = "$status_before" ] ||
  fail "git status changed during the build"
echo "check_rust_only: ok (no capi, no cbindgen, nothing written outside target/)"
