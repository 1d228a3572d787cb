#!/usr/bin/env bash
# Regenerates include/kharbranth.h from src/ffi/ (cbindgen, through build.rs). Run it after
# changing the C ABI and commit the header; tests/header.rs fails until the two agree.
# A plain build never writes into the source tree: only KHARBRANTH_WRITE_HEADER=1 makes
# build.rs copy the header it generates into include/.
set -euo pipefail
cd "$(dirname "$0")/.."
KHARBRANTH_WRITE_HEADER=1 cargo build --lib --quiet
if git diff --quiet -- include/kharbranth.h 2>/dev/null; then
  echo "include/kharbranth.h is up to date"
else
  echo "include/kharbranth.h regenerated:"
  git diff --stat -- include/kharbranth.h
fi
