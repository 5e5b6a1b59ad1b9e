#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) with cargo-fuzz on stable Rust
# (no sanitizer: `-s none`; coverage instrumentation still guides libFuzzer).
# New inputs go to fuzz/work/<target>/ (not committed); seeds come from fuzz/corpus/<target>/.
# A crash leaves its input in fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/
# so the normal test run replays it forever (repo-core/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-600}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
python3 seed-corpus.py
targets=$(sed -n 's/^name = "\(decode_[a-z_]*\|roundtrip_[a-z_]*\)"$/\1/p' Cargo.toml)
# A build error stops the script here (set -e): a fuzz run that silently ran nothing is worse
# than none.
cargo fuzz build -s none
failed=()
for t in $targets; do
  mkdir -p "work/$t" "corpus/$t"
  echo "== $t for ${SECONDS_PER_TARGET}s"
  log="work/$t.log"
  if cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
    >"$log" 2>&1; then
    grep -E "^(stat::number_of_executed_units|#[0-9]+ *DONE|Done)" "$log" || true
  else
    # A crash, leak, timeout or out-of-memory: show libFuzzer's report and go on with the rest.
    tail -n 40 "$log"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/work/<target>.log)" >&2
  exit 1
fi
echo "all targets ran ${SECONDS_PER_TARGET}s without a finding"
