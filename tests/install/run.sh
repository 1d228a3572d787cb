#!/usr/bin/env bash
# The install test (issue 13): installs the library with scripts/install.sh into a temporary
# prefix and checks what a user of the installed package gets:
#   - the files, the SONAME and the symlinks, the stripped library and its separate debug info,
#     the exported symbols against include/kharbranth.symbols;
#   - a C program built with `pkg-config --cflags --libs kharbranth`, one linked statically
#     with `pkg-config --static`, a CMake project using find_package(kharbranth CONFIG) (C and
#     C++, shared and static targets, -Wall -Wextra -Wpedantic -Werror), and the C++ program
#     under ASan+UBSan against the static library: each runs against a local feed server
#     (127.0.0.1, c_examples/run_with_server.sh: bounded, the server always stopped);
#   - `scripts/install.sh --uninstall` removes every file it installed.
#
#   bash tests/install/run.sh        # needs cargo, cc/c++, pkg-config, cmake (scripts/deps.sh)
# Every step is bounded (timeout); the programs run with run_with_server.sh's 120 s limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/install-test"
rm -rf "$out"
mkdir -p "$out"
prefix="$out/prefix"
server="$target_dir/release/examples/feed_server"
run=(bash "$root/c_examples/run_with_server.sh" --timeout 120)
fail() { echo "install test: FAIL: $*" >&2; exit 1; }

echo "==> building the feed server"
timeout 1800 cargo build --release --example feed_server
echo "==> scripts/install.sh --prefix $prefix"
timeout 1800 bash scripts/install.sh --prefix "$prefix"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major="${version%%.*}"
lib="$prefix/lib"

echo "==> checking the installed files"
for f in "lib/libkharbranth.so.$version" "lib/libkharbranth.so.$major" lib/libkharbranth.so \
  lib/libkharbranth.a "lib/.debug/libkharbranth.so.$version.debug" include/kharbranth.h \
  include/kharbranth.hpp lib/pkgconfig/kharbranth.pc lib/cmake/kharbranth/kharbranthConfig.cmake \
  lib/cmake/kharbranth/kharbranthConfigVersion.cmake share/kharbranth/install_manifest.txt; do
  [ -e "$prefix/$f" ] || fail "$f was not installed"
done
[ "$(readlink "$lib/libkharbranth.so")" = "libkharbranth.so.$major" ] || fail "libkharbranth.so -> $(readlink "$lib/libkharbranth.so")"
[ "$(readlink "$lib/libkharbranth.so.$major")" = "libkharbranth.so.$version" ] || fail "libkharbranth.so.$major is not a symlink to the real file"
soname=$(readelf -d "$lib/libkharbranth.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libkharbranth.so.$major" ] || fail "SONAME is '$soname'"
if readelf -S "$lib/libkharbranth.so.$version" | grep -q '\.debug_info'; then
  fail "the installed shared library still has debug info"
fi
readelf -S "$lib/.debug/libkharbranth.so.$version.debug" | grep -q '\.debug_info' ||
  fail "the separate debug file has no debug info"
readelf --string-dump=.gnu_debuglink "$lib/libkharbranth.so.$version" | grep -q "libkharbranth.so.$version.debug" ||
  fail "no .gnu_debuglink to the debug file"
grep -q "^#define KH_VERSION_STRING \"$version\"" "$prefix/include/kharbranth.h" || fail "header version"
# The ABI only grows: every listed symbol is exported, and every exported one is listed.
nm -D --defined-only "$lib/libkharbranth.so.$version" | awk '{print $3}' | sort >"$out/exported.txt"
grep -v '^#' include/kharbranth.symbols | sed '/^$/d' | sort >"$out/listed.txt"
if ! diff -u "$out/listed.txt" "$out/exported.txt"; then
  fail "exported symbols differ from include/kharbranth.symbols (- listed only, + exported only)"
fi
so_size=$(stat -c %s "$lib/libkharbranth.so.$version")
echo "installed: libkharbranth.so.$version $so_size bytes (stripped; build tree: $(stat -c %s "$target_dir/release/libkharbranth.so") bytes)"

export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion kharbranth)" = "$version" ] || fail "pkg-config --modversion"
cc="${CC:-cc}"
cxx="${CXX:-c++}"
warn=(-Wall -Wextra -Wpedantic -Werror)

echo "==> C, shared: cc app.c \$(pkg-config --cflags --libs kharbranth)"
# shellcheck disable=SC2046
timeout 300 "$cc" -std=c11 "${warn[@]}" tests/install/app.c -o "$out/app_shared" \
  $(pkg-config --cflags --libs kharbranth) -Wl,-rpath,"$(pkg-config --variable=libdir kharbranth)" -lpthread
readelf -d "$out/app_shared" | grep -q "NEEDED.*\[libkharbranth.so.$major\]" || fail "app_shared does not need libkharbranth.so.$major"
"${run[@]}" --expect "^install_app: .*PASS" "$server" "$out/app_shared"

echo "==> C, static: cc app.c \$(pkg-config --static --cflags --libs kharbranth), the archive for -lkharbranth"
static_libs=$(pkg-config --static --libs kharbranth)
# shellcheck disable=SC2046,SC2086
timeout 300 "$cc" -std=c11 "${warn[@]}" tests/install/app.c -o "$out/app_static" $(pkg-config --static --cflags kharbranth) \
  ${static_libs/-lkharbranth/-Wl,-Bstatic -lkharbranth -Wl,-Bdynamic}
if readelf -d "$out/app_static" | grep -q "libkharbranth"; then
  fail "app_static depends on the shared library"
fi
"${run[@]}" --expect "^install_app: .*PASS" "$server" "$out/app_static"

echo "==> CMake: find_package(kharbranth CONFIG REQUIRED)"
timeout 300 cmake -S tests/install/cmake -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Debug >"$out/cmake.log" ||
  { cat "$out/cmake.log"; fail "cmake configure"; }
timeout 600 cmake --build "$out/cmake" -j2
"${run[@]}" --expect "^install_app: .*PASS" "$server" "$out/cmake/cmake_app_c"
"${run[@]}" --expect "^install_cpp: PASS" "$server" "$out/cmake/cmake_app_cpp"
"${run[@]}" --expect "^install_cpp: PASS" "$server" "$out/cmake/cmake_app_cpp_static"
# The version file: 0.x is not 1.x.
mkdir -p "$out/cmake_v"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(v NONE)\nfind_package(kharbranth %s CONFIG REQUIRED)\n' \
  "$((major + 1))" >"$out/cmake_v/CMakeLists.txt"
if timeout 300 cmake -S "$out/cmake_v" -B "$out/cmake_v/build" -DCMAKE_PREFIX_PATH="$prefix" >"$out/cmake_v.log" 2>&1; then
  fail "find_package(kharbranth $((major + 1))) accepted version $version"
fi

echo "==> C++ header under ASan+UBSan (static library)"
san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
# shellcheck disable=SC2086
timeout 600 "$cxx" -std=c++17 -g "${warn[@]}" "${san[@]}" tests/install/app.cpp -o "$out/app_cpp_asan" \
  $(pkg-config --static --cflags kharbranth) ${static_libs/-lkharbranth/-Wl,-Bstatic -lkharbranth -Wl,-Bdynamic}
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1" \
  LSAN_OPTIONS="suppressions=$root/tests/c/lsan.supp" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "${run[@]}" --expect "^install_cpp: PASS" "$server" "$out/app_cpp_asan"

echo "==> scripts/install.sh --uninstall --prefix $prefix"
timeout 300 bash scripts/install.sh --uninstall --prefix "$prefix"
left=$(find "$prefix" -mindepth 1 2>/dev/null || true)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "==> install test: all passed"
