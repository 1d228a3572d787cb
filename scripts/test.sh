#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs (cmake, valgrind,
# Python packages), then Rust tests, lints, the C/C++ examples through CMake/ctest, the Python
# ctypes test and the bounded fuzz run. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }

step "installing tools"
bash scripts/deps.sh

step "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "cargo build (the shared and static libraries too) and cargo test (unit, integration, doc tests)"
cargo build
cargo test

step "benchmark code builds (the suite itself runs with bench/run.sh)"
cargo build --release --examples
bash bench/ci-build.sh

if [ -f c_examples/CMakeLists.txt ]; then
  step "C/C++ examples (CMake + ctest)"
  cmake -S c_examples -B target/c_examples -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build target/c_examples -j2
  (cd target/c_examples && ctest --output-on-failure --timeout 300)
fi

step "hostile C caller (ASan+UBSan on the static library, valgrind on the shared one)"
bash tests/c/run.sh

if [ -d tests/python ]; then
  step "Python ctypes tests"
  python3 -m pytest -q tests/python
fi

step "all tests passed"
