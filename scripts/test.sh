#!/usr/bin/env bash
# The whole default test suite (what README.md calls "the test command").
# Long variants (crash loops, fuzzing, large datasets) are opt-in: see scripts/long-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
