#!/usr/bin/env bash
# Mutation testing of what changed: runs cargo-mutants on the mutants in the lines of src/ that
# differ from BASE_COMMIT (default HEAD~1, i.e. the last commit; uncommitted changes count too).
# Each surviving mutant needs a test that fails on it, or a line in tests/MUTANTS.md saying why
# it is equivalent.
#
#   scripts/mutants.sh [BASE_COMMIT] [extra cargo-mutants arguments...]
#
# One job, at the lowest priority, with a short per-mutant timeout: a mutant that makes a test
# hang is reported as a timeout instead of stalling the run. MUTANTS_JOBS and MUTANTS_TIMEOUT
# (seconds) override those; the whole test suite runs for each mutant (FUZZ_CASES defaults to
# 300 here). The report goes to target/mutants/mutants.out/ (caught.txt,
# missed.txt, timeout.txt, unviable.txt); the exit code is cargo-mutants' own (0: every mutant
# caught or unviable, 2: some missed, 3: some timed out).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD~1}
shift || true

if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install cargo-mutants --locked
fi

diff=$(mktemp)
trap 'rm -f "$diff"' EXIT
# Only the library's sources hold mutants; test code (#[cfg(test)], tests/) is never mutated.
git diff "$base" -- src >"$diff"
if [ ! -s "$diff" ]; then
  echo "no change under src/ since $base: nothing to mutate"
  exit 0
fi

mkdir -p target/mutants
# The property tests' case count is for finding inputs, not for catching mutants: a few hundred
# cases run every property path, and keep each mutant's test run under a minute.
export FUZZ_CASES=${FUZZ_CASES:-300}
exec nice -n 19 cargo mutants \
  --in-diff "$diff" \
  --jobs "${MUTANTS_JOBS:-1}" \
  --timeout "${MUTANTS_TIMEOUT:-120}" \
  --output target/mutants \
  "$@"
