#!/usr/bin/env bash
# Long test variants, opt-in: crash loops with many iterations (and, as they land, fuzzing and
# large datasets). Usage: bash scripts/long-tests.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
CAIRN_CRASH_ITERATIONS=${1:-50} cargo test --release -p repo-cli --test crash -- --nocapture
# The restore race (an unprivileged user swapping a target directory for a symlink), many rounds.
CAIRN_RACE_ITERATIONS=${RACE_ITERATIONS:-200} cargo test --release -p repo-core --test restore_safety \
  racing_directory_swap -- --nocapture
cargo test --release --workspace -- --ignored
