#!/usr/bin/env bash
# Compiles the Python package's C extension beside its sources (python/kharbranth/_speedups*.so)
# for the benchmark clients, with the flags python/setup.py uses and without setuptools. Exits
# non-zero when it does not build: the package then runs its ctypes fallback and its clients
# say so in their names.
set -eu
cd "$(dirname "$0")/.."
py_inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
py_ext=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
${CC:-cc} -shared -fPIC -O2 -std=c11 -Wall -Wextra -I"$py_inc" \
  -o "python/kharbranth/_speedups$py_ext" python/kharbranth/_speedups.c -lpthread
