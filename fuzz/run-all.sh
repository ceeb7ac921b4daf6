#!/usr/bin/env bash
# Runs every fuzz target for a short fixed time (default 15 s each) with a
# seed corpus built from spec/vectors. Usage: fuzz/run-all.sh [SECONDS]
# Needs cargo-fuzz (installed here if missing) and a nightly compiler; on a
# machine with only stable Rust it uses RUSTC_BOOTSTRAP=1, which lets stable
# accept the -Z sanitizer flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-15}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
python3 seed-corpus.py
# A separate assignment, so that a failing `cargo fuzz list` (a broken
# manifest) stops the run instead of looping over nothing.
targets=$("${fuzz[@]}" list)
listed=$(wc -w <<<"$targets")
present=$(find fuzz_targets -name '*.rs' | wc -l)
if [ "$listed" -eq 0 ] || [ "$listed" -ne "$present" ]; then
  echo "cargo fuzz lists $listed targets but fuzz_targets/ holds $present" >&2
  exit 1
fi
for target in $targets; do
  echo "-- fuzz $target for ${secs}s"
  mkdir -p "corpus/$target" "seeds/$target"
  dirs=("corpus/$target" "seeds/$target")
  # Past crashes (see regressions/README.md) are replayed first.
  if [ -d "regressions/$target" ]; then dirs+=("regressions/$target"); fi
  "${fuzz[@]}" run "$target" "${dirs[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|ERROR|panicked|deadly signal"
done
