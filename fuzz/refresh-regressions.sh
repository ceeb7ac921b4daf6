#!/usr/bin/env bash
# Refreshes the minimized corpus kept under fuzz/regressions/<target>/ and
# replayed by tests/fuzz_regressions.rs. For each target: fuzz for SECONDS
# (default 30) from the seeds, the local corpus and the kept inputs, merge
# all of them into a set that covers the same features (libFuzzer
# -set_cover_merge), and keep the smallest of those files up to BUDGET bytes
# (default 8192) in place of the old corpus files. Crash inputs
# (crash-<what-it-broke>) are never removed. A crash stops the run: fix it,
# then add the input as regressions/<target>/crash-<what-it-broke>.
# Usage: fuzz/refresh-regressions.sh [SECONDS] [BUDGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
budget="${2:-8192}"
shift $(( $# > 2 ? 2 : $# ))
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
if [ "$#" -gt 0 ]; then
  targets="$*"
else
  targets=$("${fuzz[@]}" list)
fi
for target in $targets; do
  mkdir -p "corpus/$target" "seeds/$target" "regressions/$target"
  inputs=("corpus/$target" "seeds/$target" "regressions/$target")
  echo "-- fuzz $target for ${secs}s"
  log=$(mktemp)
  if ! "${fuzz[@]}" run "$target" "${inputs[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E "ERROR|panicked|deadly signal|Test unit written" "$log" >&2 || true
    echo "$target crashed: see fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$log" || true
  rm -f "$log"
  merged=$(mktemp -d)
  "${fuzz[@]}" run "$target" "$merged" "${inputs[@]}" -- \
    -set_cover_merge=1 -rss_limit_mb=2048 >/dev/null 2>&1
  find "regressions/$target" -type f ! -name 'crash-*' -delete
  used=0
  kept=0
  # Smallest first, so the budget keeps as many covering inputs as it can.
  while IFS= read -r f; do
    size=$(stat -c %s "$f")
    if [ $((used + size)) -gt "$budget" ]; then
      continue
    fi
    cp "$f" "regressions/$target/"
    used=$((used + size))
    kept=$((kept + 1))
  done < <(find "$merged" -type f -printf '%s %p\n' | sort -n | cut -d' ' -f2-)
  total=$(find "$merged" -type f | wc -l)
  echo "   kept $kept of $total covering inputs, $used bytes"
  rm -rf "$merged"
done
