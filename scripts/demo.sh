#!/usr/bin/env bash
# Builds cairn, backs up a sample directory into a local repository, restores it and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p repo-cli
cairn=target/release/cairn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sample/docs" "$work/sample/src"
printf 'hello from cairn\n' > "$work/sample/docs/readme.txt"
for i in $(seq 1 50); do printf 'fn f%d() -> u32 { %d }\n' "$i" "$i" > "$work/sample/src/f$i.rs"; done
head -c 3000000 /dev/urandom > "$work/sample/random.bin"
ln -s docs/readme.txt "$work/sample/link"
export CAIRN_REPOSITORY="$work/repo" CAIRN_PASSWORD=demo-password
"$cairn" init
"$cairn" backup "$work/sample"
"$cairn" snapshots
"$cairn" restore "latest:$work/sample" --target "$work/restored" --verify
diff -r "$work/sample" "$work/restored" && echo "demo: restored tree is identical to the source"
"$cairn" check --read-data
# Man pages and shell completions, generated from the same definitions as the parser.
"$cairn" generate --man target/man
"$cairn" completion bash > target/cairn.bash
echo "demo: man pages in target/man (man -l target/man/cairn.1); bash completion: source target/cairn.bash"
