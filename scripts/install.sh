#!/usr/bin/env bash
# Installs kharbranth like a system C library, or removes what it installed.
#
#   scripts/install.sh                         # builds (cargo, release) and installs into /usr/local
#   PREFIX=$HOME/.local scripts/install.sh     # or: scripts/install.sh --prefix DIR
#   DESTDIR=/tmp/stage scripts/install.sh      # staged (packaging): files go to $DESTDIR$PREFIX
#   scripts/install.sh --uninstall             # removes exactly the files the install wrote
#   scripts/install.sh --no-build              # installs what target/release holds already
#   scripts/install.sh --build-only            # builds only: then `sudo scripts/install.sh
#                                              #   --no-build` for a root-owned prefix
#
# What it installs under PREFIX:
#   lib/libkharbranth.so.X.Y.Z (SONAME libkharbranth.so.X), lib/libkharbranth.so.X and
#     lib/libkharbranth.so (symlinks), lib/libkharbranth.a: debug info stripped; the shared
#     library's is kept in lib/.debug/libkharbranth.so.X.Y.Z.debug (its .gnu_debuglink names
#     it, and gdb looks in the library's .debug/ directory by itself)
#   include/kharbranth.h, include/kharbranth.hpp (C++17 wrapper)
#   lib/pkgconfig/kharbranth.pc (Libs.private: the system libraries the static library needs)
#   lib/cmake/kharbranth/kharbranthConfig.cmake + kharbranthConfigVersion.cmake
#     (find_package(kharbranth CONFIG): kharbranth::kharbranth, kharbranth::kharbranth_static)
#   share/kharbranth/install_manifest.txt: every file above, read by --uninstall
#
# X is the crate's major version (0 for every 0.x release); see README, "Install".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

prefix="${PREFIX:-/usr/local}"
destdir="${DESTDIR:-}"
action=install
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --uninstall) action=uninstall; shift ;;
    --no-build) build=0; shift ;;
    --build-only) action=build; shift ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: the prefix must be an absolute path (got $prefix)" >&2; exit 2 ;;
esac
prefix="${prefix%/}"
stage="$destdir$prefix"
manifest_rel="share/kharbranth/install_manifest.txt"

if [ "$action" = uninstall ]; then
  manifest="$stage/$manifest_rel"
  if [ ! -f "$manifest" ]; then
    echo "install.sh: no $manifest: nothing to uninstall" >&2
    exit 1
  fi
  # Only what the manifest lists, and only below the prefix.
  while IFS= read -r f; do
    case "$f" in
      "$prefix"/*) ;;
      *) echo "install.sh: skipping $f (outside $prefix)" >&2; continue ;;
    esac
    if [ -L "$destdir$f" ] || [ -f "$destdir$f" ]; then
      rm -f "$destdir$f"
      echo "removed $f"
    fi
  done <"$manifest"
  rm -f "$manifest"
  # The directories the install made, when nothing else is left in them.
  for d in share/kharbranth lib/cmake/kharbranth lib/cmake lib/.debug lib/pkgconfig share include lib; do
    rmdir "$stage/$d" 2>/dev/null || true
  done
  case "$prefix" in
    /usr | /usr/local)
      if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
        ldconfig
      fi
      ;;
  esac
  echo "kharbranth uninstalled from $prefix"
  exit 0
fi

for tool in objcopy strip; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install.sh: $tool is missing (binutils)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major="${version%%.*}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
rel="$target_dir/release"

# The system libraries a program linking the static library needs, as rustc reports them. The
# query compiles the library once more (cargo rustc with other arguments), so its answer is
# kept next to the build, keyed by the compiler and the lock file, and asked again only when
# either changes.
native_static_libs() {
  local key cache
  if ! command -v rustc >/dev/null 2>&1; then
    # e.g. under sudo without the user's toolchain: the answer of the last build.
    cache=$(ls -t "$rel"/kharbranth-native-static-libs.* 2>/dev/null | head -n1)
    [ -n "$cache" ] || { echo "install.sh: no rustc, and no earlier build to read (--build-only first)" >&2; return 1; }
    cat "$cache"
    return 0
  fi
  key="$( (rustc -vV; cat Cargo.lock) | sha256sum | cut -c1-16)"
  cache="$rel/kharbranth-native-static-libs.$key"
  if [ ! -s "$cache" ]; then
    mkdir -p "$rel"
    cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs 2>&1 |
      sed -n 's/^note: native-static-libs: //p' | tail -n1 >"$cache.tmp"
    if [ ! -s "$cache.tmp" ]; then
      rm -f "$cache.tmp"
      echo "install.sh: rustc printed no native-static-libs line" >&2
      return 1
    fi
    mv "$cache.tmp" "$cache"
  fi
  cat "$cache"
}

if [ "$build" = 1 ]; then
  # First the query (it may rebuild the library with other crate types), then the build proper.
  libs_private=$(native_static_libs)
  echo "==> cargo build --release --lib"
  cargo build --release --lib
else
  libs_private=$(native_static_libs)
fi
if [ "$action" = build ]; then
  echo "built; install with: scripts/install.sh --no-build${prefix:+ --prefix $prefix}"
  exit 0
fi
for f in "$rel/libkharbranth.so" "$rel/libkharbranth.a" include/kharbranth.h include/kharbranth.hpp; do
  [ -f "$f" ] || { echo "install.sh: $f is missing (cargo build --release --lib)" >&2; exit 1; }
done

soname="libkharbranth.so.$major"
real="libkharbranth.so.$version"
if command -v readelf >/dev/null 2>&1; then
  got=$(readelf -d "$rel/libkharbranth.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$got" != "$soname" ]; then
    echo "install.sh: $rel/libkharbranth.so has SONAME '$got', expected $soname" >&2
    exit 1
  fi
fi

echo "==> installing kharbranth $version into ${destdir:+$destdir (staged) }$prefix"
manifest_tmp=$(mktemp)
trap 'rm -f "$manifest_tmp"' EXIT
installed() { echo "$prefix/$1" >>"$manifest_tmp"; echo "installed $prefix/$1"; }
put() { # put MODE SOURCE DEST_REL
  install -D -m "$1" "$2" "$stage/$3"
  installed "$3"
}

mkdir -p "$stage/lib/.debug" "$stage/include" "$stage/lib/pkgconfig" "$stage/lib/cmake/kharbranth" \
  "$stage/share/kharbranth"

# The shared library: its debug info goes to lib/.debug (the release profile keeps it for
# profiling; an installed library does not need to carry 30 MB of it), the rest is stripped
# and points at that file.
tmp_so="$stage/lib/.$real.tmp"
cp "$rel/libkharbranth.so" "$tmp_so"
objcopy --only-keep-debug "$tmp_so" "$stage/lib/.debug/$real.debug"
chmod 0644 "$stage/lib/.debug/$real.debug"
installed "lib/.debug/$real.debug"
strip --strip-debug --strip-unneeded "$tmp_so"
(cd "$stage/lib" && objcopy --add-gnu-debuglink=".debug/$real.debug" ".$real.tmp")
chmod 0755 "$tmp_so"
mv -f "$tmp_so" "$stage/lib/$real"
installed "lib/$real"
ln -sfn "$real" "$stage/lib/$soname"
installed "lib/$soname"
ln -sfn "$soname" "$stage/lib/libkharbranth.so"
installed "lib/libkharbranth.so"

tmp_a="$stage/lib/.libkharbranth.a.tmp"
cp "$rel/libkharbranth.a" "$tmp_a"
strip --strip-debug "$tmp_a"
chmod 0644 "$tmp_a"
mv -f "$tmp_a" "$stage/lib/libkharbranth.a"
installed "lib/libkharbranth.a"

put 0644 include/kharbranth.h include/kharbranth.h
put 0644 include/kharbranth.hpp include/kharbranth.hpp

# pkg-config: the prefix is written out so a staged install (DESTDIR) still names its final
# place; pkgconf's --define-prefix can relocate it.
cat >"$stage/lib/pkgconfig/kharbranth.pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: kharbranth
Description: WebSocket client connection manager (C ABI)
Version: $version
Libs: -L\${libdir} -lkharbranth
Libs.private: $libs_private
Cflags: -I\${includedir}
EOF
installed "lib/pkgconfig/kharbranth.pc"

# CMake: the targets are found relative to this file, so the package can be moved.
cmake_libs=""
for l in $libs_private; do
  case "$l" in
    -lpthread) cmake_libs="$cmake_libs;Threads::Threads" ;;
    -l*) cmake_libs="$cmake_libs;${l#-l}" ;;
    *) cmake_libs="$cmake_libs;$l" ;;
  esac
done
cmake_libs="${cmake_libs#;}"
cat >"$stage/lib/cmake/kharbranth/kharbranthConfig.cmake" <<EOF
# kharbranth $version: find_package(kharbranth CONFIG REQUIRED) gives
#   kharbranth::kharbranth         the shared library (SONAME $soname)
#   kharbranth::kharbranth_static  the static library, with the system libraries it needs
# Both carry the include directory (kharbranth.h, kharbranth.hpp). Written by scripts/install.sh.
get_filename_component(_kh_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_dependency(Threads)

if(NOT TARGET kharbranth::kharbranth)
  add_library(kharbranth::kharbranth SHARED IMPORTED)
  set_target_properties(kharbranth::kharbranth PROPERTIES
    IMPORTED_LOCATION "\${_kh_prefix}/lib/$real"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_kh_prefix}/include")
endif()
if(NOT TARGET kharbranth::kharbranth_static)
  add_library(kharbranth::kharbranth_static STATIC IMPORTED)
  set_target_properties(kharbranth::kharbranth_static PROPERTIES
    IMPORTED_LOCATION "\${_kh_prefix}/lib/libkharbranth.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_kh_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$cmake_libs")
endif()
set(kharbranth_VERSION "$version")
unset(_kh_prefix)
EOF
installed "lib/cmake/kharbranth/kharbranthConfig.cmake"

# SameMajorVersion: any installed version >= the one asked for, with the same major (the
# SONAME's), since within a major the ABI only grows.
cat >"$stage/lib/cmake/kharbranth/kharbranthConfigVersion.cmake" <<EOF
# kharbranth $version, compatible with requests for the same major version (SameMajorVersion).
set(PACKAGE_VERSION "$version")
if(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL "" AND NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL "$major")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
# A 64-bit library is of no use to a 32-bit project.
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "" AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (64bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
EOF
installed "lib/cmake/kharbranth/kharbranthConfigVersion.cmake"

echo "$prefix/$manifest_rel" >>"$manifest_tmp"
install -D -m 0644 "$manifest_tmp" "$stage/$manifest_rel"
echo "installed $prefix/$manifest_rel (read by: scripts/install.sh --uninstall${prefix:+ --prefix $prefix})"
# The dynamic loader's cache must learn about the new library in the system prefixes; a private
# prefix is found through an RPATH or LD_LIBRARY_PATH instead.
case "$prefix" in
  /usr | /usr/local)
    if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
      ldconfig
    fi
    ;;
esac
