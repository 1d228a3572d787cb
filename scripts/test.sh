#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs (cmake, valgrind,
# pkg-config, the Python packages in target/venv), then Rust tests, lints, the C/C++ examples
# through CMake/ctest, the install test (tests/install/run.sh), the Python ctypes test, the
# Python package and the bounded fuzz run. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }

step "installing tools"
bash scripts/deps.sh
# Every `python3` below, also the one tests/interop_python.rs spawns, is the venv's.
export PATH="$root/target/venv/bin:$PATH"

step "cargo fmt / clippy (with and without the C ABI)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Without `capi`, crate-internal helpers that only the C ABI calls are unused; the pass above
# already catches code that is dead in every build.
cargo clippy --all-targets --no-default-features -- -D warnings -A dead_code

step "cargo build (the shared and static libraries too) and cargo test (unit, integration, doc tests)"
cargo build
cargo test

step "a Rust user without the C ABI (default-features = false)"
bash scripts/check_rust_only.sh

# First: the benchmark package builds kharbranth against other tokio-tungstenite features
# into the same target/release slot (a cdylib's file name carries no hash), so a library build
# after it compiles kharbranth again. In this order that happens once, and the CMake, hostile
# and Python steps below find the release library fresh.
step "benchmark code builds (the suite itself runs with bench/run.sh)"
bash bench/ci-build.sh

step "release build of the library and the examples"
cargo build --release --lib --examples

if [ -f c_examples/CMakeLists.txt ]; then
  step "C/C++ examples (CMake + ctest, then again under ASan+UBSan)"
  cmake -S c_examples -B target/c_examples -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build target/c_examples -j2
  (cd target/c_examples && ctest --output-on-failure --timeout 300)
  # The same examples, the C++ wrapper header among them, under ASan+UBSan (static library).
  cmake -S c_examples -B target/c_examples_asan -DCMAKE_BUILD_TYPE=Debug -DKH_SANITIZE=ON >/dev/null
  cmake --build target/c_examples_asan -j2
  (cd target/c_examples_asan && ctest --output-on-failure --timeout 300)
fi

step "install: scripts/install.sh into a temporary prefix, then C (pkg-config, static), CMake (find_package) and C++ (ASan) programs against it"
bash tests/install/run.sh

step "hostile C caller (ASan+UBSan on the static library, valgrind on the shared one)"
bash tests/c/run.sh

if [ -d tests/python ]; then
  step "Python ctypes tests"
  python3 -m pytest -q tests/python
fi

if [ -d python ]; then
  # A separate pytest run: tests/python has a module of the same name as the package.
  step "Python package (pip install ./python bundles the release library; pytest python/tests)"
  python3 -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
  KH_EXPECT_SPEEDUPS=1 python3 -m pytest -q python/tests
  # Again through the ctypes fallback; the first run checks the C extension was built and used.
  KH_NO_SPEEDUPS=1 python3 -m pytest -q python/tests
fi

step "all tests passed"
