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
cargo fuzz build -s none
for t in $targets; do
  mkdir -p "work/$t" "corpus/$t"
  echo "== $t for ${SECONDS_PER_TARGET}s"
  cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::|#[0-9]+ *DONE|==|SUMMARY|Done)" || true
done
