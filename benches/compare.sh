#!/usr/bin/env bash
# Side-by-side comparison of cairn, restic and borg on one dataset.
#
#   benches/compare.sh DATASET [ROUNDS]
#
# In every round, and alternating which tool goes first, each tool runs with its defaults:
# init, first backup, unchanged re-backup, backup after a ~1 % change, restore, check with a
# full data read. Wall time and peak RSS come from /usr/bin/time, repository size from du.
# WARM rounds read the dataset once before each step; COLD rounds drop the page cache before
# each step (needs root and a writable /proc/sys/vm/drop_caches, else they are skipped).
# The floor `tar -cf - DATASET | zstd -3 -T0 > /dev/null` is timed in the same rounds.
# MODES="warm" (or "cold", default "warm cold") picks the rounds to run.
# Prints a table of medians with ratios cairn/restic and cairn/borg; raw rows go to
# $OUT/results.csv (OUT defaults to a temporary directory, printed at the end).
#
# Restores write into a fresh tmpfs per restore when the script may mount one (root): on
# ext4, creating files shortly after tens of thousands were deleted is several times slower
# (the allocator skips inodes freed in the last minutes), which would charge whichever tool
# restores right after another tool's restore was removed. Without tmpfs, targets stay on disk.
# CAIRN_BEFORE=/path/to/cairn adds a tool `before`: another cairn binary (say, built from the
# commit before a change) run in the same rounds, so a change is measured against its base in
# the same conditions; the table then has a cairn/before ratio. TOOLS="cairn before restic"
# picks the tools (default: cairn, before when CAIRN_BEFORE is set, restic, borg).
# Notes: restic is initialised with --repository-version 2 (compression on, its default in
# later releases); borg uses its defaults (repokey encryption, lz4).
set -euo pipefail
DATASET=$(realpath "${1:?usage: benches/compare.sh DATASET [ROUNDS]}")
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/cairn-compare.XXXXXX)}
mkdir -p "$OUT"

need=()
command -v restic >/dev/null || need+=(restic)
command -v borg >/dev/null || need+=(borgbackup)
command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p repo-cli)
CAIRN="$ROOT/target/release/cairn"

export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export XDG_CACHE_HOME="$OUT/cache" RESTIC_CACHE_DIR="$OUT/cache/restic" BORG_BASE_DIR="$OUT/borgbase"

DATA="$OUT/data"
echo "copying dataset to $DATA" >&2
rm -rf "$DATA"; cp -a "$DATASET" "$DATA"
echo "tool,mode,round,step,seconds,max_rss_kb,repo_bytes" > "$OUT/results.csv"

can_drop=0
if [ "$(id -u)" = 0 ] && sync && echo 3 2>/dev/null > /proc/sys/vm/drop_caches; then can_drop=1; fi

prepare() { # mode
  # Through a pipe: GNU tar skips reading file contents when it writes to /dev/null itself.
  if [ "$1" = warm ]; then tar -cf - "$DATA" 2>/dev/null | cat > /dev/null; else sync; echo 3 > /proc/sys/vm/drop_caches; fi
}

run() { # tool mode round step repo cmd...
  local tool=$1 mode=$2 round=$3 step=$4 repo=$5; shift 5
  prepare "$mode"
  local tf="$OUT/time.txt"
  if ! /usr/bin/time -f "%e %M" -o "$tf" "$@" > "$OUT/last.log" 2>&1; then
    echo "FAILED: $tool $step: $*" >&2; tail -5 "$OUT/last.log" >&2; exit 1
  fi
  local size=0
  [ -n "$repo" ] && [ -e "$repo" ] && size=$(du -sb "$repo" | cut -f1)
  read -r secs rss < "$tf"
  echo "$tool,$mode,$round,$step,$secs,$rss,$size" >> "$OUT/results.csv"
  printf '%-7s %-4s r%d %-16s %8.2fs %8d KiB\n' "$tool" "$mode" "$round" "$step" "$secs" "$rss" >&2
}

change_one_percent() { # apply (1) or revert (0) a ~1 % change: append to every 100th file
  local i=0
  find "$DATA" -type f | sort > "$OUT/files.txt"
  while read -r f; do
    i=$((i + 1))
    if [ $((i % 100)) -eq 0 ]; then
      if [ "$1" = 1 ]; then cp -p "$f" "$f.orig-cairn-bench"; printf 'changed line %d\n' "$i" >> "$f"
      else mv "$f.orig-cairn-bench" "$f"; fi
    fi
  done < <(if [ "$1" = 1 ]; then cat "$OUT/files.txt"; else grep -v 'orig-cairn-bench$' "$OUT/files.txt"; fi)
  # One large file gets a small edit in the middle, too.
  local big; big=$(find "$DATA" -type f -size +64M | sort | head -1)
  if [ -n "$big" ] && [ "$1" = 1 ]; then cp -p "$big" "$big.orig-cairn-bench"; printf 'EDIT' | dd of="$big" bs=1 seek=$(( $(stat -c %s "$big") / 2 )) conv=notrunc status=none; fi
  if [ -n "$big" ] && [ "$1" = 0 ] && [ -e "$big.orig-cairn-bench" ]; then mv "$big.orig-cairn-bench" "$big"; fi
}

fresh_target() { # dir: an empty restore target, on its own tmpfs when possible
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=8g tmpfs "$1" 2>/dev/null; then :; fi
}
drop_target() {
  if mountpoint -q "$1"; then umount "$1"; fi
  rm -rf "$1"
}

if [ -n "${TOOLS:-}" ]; then read -r -a tools <<< "$TOOLS"
elif [ -n "${CAIRN_BEFORE:-}" ]; then tools=(cairn before restic borg)
else tools=(cairn restic borg); fi
for t in "${tools[@]}"; do
  case $t in cairn|restic|borg) ;; before) [ -x "${CAIRN_BEFORE:-}" ] || { echo "tool before needs CAIRN_BEFORE=/path/to/cairn" >&2; exit 2; } ;;
  *) echo "unknown tool $t (cairn, before, restic, borg)" >&2; exit 2 ;; esac
done
[[ " ${tools[*]} " == *" cairn "* ]] || { echo "TOOLS must include cairn (the ratios are against it)" >&2; exit 2; }
ntools=${#tools[@]}
modes=()
for m in ${MODES:-warm cold}; do
  if [ "$m" = cold ] && [ "$can_drop" != 1 ]; then echo "cold rounds skipped: cannot drop the page cache" >&2; continue; fi
  modes+=("$m")
done
for mode in "${modes[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order each round so no tool always runs first.
    order=("${tools[@]:$(( (round - 1) % ntools ))}" "${tools[@]:0:$(( (round - 1) % ntools ))}")
    run floor "$mode" "$round" first_backup "" sh -c "tar -cf - '$DATA' 2>/dev/null | zstd -3 -T0 > /dev/null"
    for tool in "${order[@]}"; do
      repo="$OUT/repo-$tool"; rm -rf "$repo" "$OUT/restore-$tool"
      case $tool in
        cairn|before)
          bin=$CAIRN; [ "$tool" = before ] && bin=$CAIRN_BEFORE
          run "$tool" "$mode" "$round" init "$repo" "$bin" -q -r "$repo" init
          run "$tool" "$mode" "$round" first_backup "$repo" "$bin" -q -r "$repo" backup "$DATA"
          run "$tool" "$mode" "$round" unchanged_backup "$repo" "$bin" -q -r "$repo" backup "$DATA" ;;
        restic)
          run restic "$mode" "$round" init "$repo" restic -q -r "$repo" init --repository-version 2
          run restic "$mode" "$round" first_backup "$repo" restic -q -r "$repo" backup "$DATA"
          run restic "$mode" "$round" unchanged_backup "$repo" restic -q -r "$repo" backup "$DATA" ;;
        borg)
          run borg "$mode" "$round" init "$repo" borg init -e repokey "$repo"
          run borg "$mode" "$round" first_backup "$repo" borg create "$repo::s1" "$DATA"
          run borg "$mode" "$round" unchanged_backup "$repo" borg create "$repo::s2" "$DATA" ;;
      esac
    done
    change_one_percent 1
    for tool in "${order[@]}"; do
      repo="$OUT/repo-$tool"; target="$OUT/restore-$tool"; fresh_target "$target"
      case $tool in
        cairn|before)
          bin=$CAIRN; [ "$tool" = before ] && bin=$CAIRN_BEFORE
          run "$tool" "$mode" "$round" changed_backup "$repo" "$bin" -q -r "$repo" backup "$DATA"
          run "$tool" "$mode" "$round" restore "$repo" "$bin" -q -r "$repo" restore "latest:$DATA" --target "$target"
          run "$tool" "$mode" "$round" check_read_data "$repo" "$bin" -q -r "$repo" check --read-data ;;
        restic)
          run restic "$mode" "$round" changed_backup "$repo" restic -q -r "$repo" backup "$DATA"
          run restic "$mode" "$round" restore "$repo" restic -q -r "$repo" restore latest --target "$target"
          run restic "$mode" "$round" check_read_data "$repo" restic -q -r "$repo" check --read-data ;;
        borg)
          run borg "$mode" "$round" changed_backup "$repo" borg create "$repo::s3" "$DATA"
          run borg "$mode" "$round" restore "$repo" sh -c "cd '$target' && borg extract '$repo::s3'"
          run borg "$mode" "$round" check_read_data "$repo" borg check --verify-data "$repo" ;;
      esac
      drop_target "$target"
    done
    change_one_percent 0
  done
done

python3 - "$OUT/results.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = ["init", "first_backup", "unchanged_backup", "changed_backup", "restore", "check_read_data"]
def med(tool, mode, step, key):
    v = [float(r[key]) for r in rows if r["tool"] == tool and r["mode"] == mode and r["step"] == step]
    return statistics.median(v) if v else None
for mode in sorted({r["mode"] for r in rows}, reverse=True):
    print(f"\n### {mode} page cache (medians of {len({r['round'] for r in rows if r['mode']==mode})} rounds)\n")
    tools = [t for t in ("cairn", "before", "restic", "borg") if any(r["tool"] == t for r in rows)]
    others = [t for t in tools if t != "cairn"]
    print("| step | " + " | ".join(f"{t} s" for t in tools) + " | " + " | ".join(f"cairn/{t}" for t in others)
          + " | " + " | ".join(f"{t} RSS MiB" for t in tools) + " |")
    print("|---" * (1 + 2 * len(tools) + len(others)) + "|")
    f = lambda x: "-" if x is None else f"{x:.2f}"
    ratio = lambda a, b: "-" if not a or not b else f"{a / b:.2f}"
    mib = lambda x: "-" if x is None else f"{x / 1024:.0f}"
    for s in steps:
        secs = {t: med(t, mode, s, "seconds") for t in tools}
        rss = {t: med(t, mode, s, "max_rss_kb") for t in tools}
        print(f"| {s} | " + " | ".join(f(secs[t]) for t in tools) + " | "
              + " | ".join(ratio(secs["cairn"], secs[t]) for t in others) + " | "
              + " | ".join(mib(rss[t]) for t in tools) + " |")
    fl = med("floor", mode, "first_backup", "seconds")
    c = med("cairn", mode, "first_backup", "seconds")
    if fl:
        print(f"\nfloor `tar | zstd -3 -T0`: {fl:.2f} s; cairn first backup / floor = {c / fl:.2f}")
    sizes = {t: med(t, mode, "check_read_data", "repo_bytes") for t in tools}
    print("\nrepository size after 3 backups (MiB): " + ", ".join(f"{t} {v / 2**20:.0f}" for t, v in sizes.items() if v))
PY
echo "raw results: $OUT/results.csv" >&2
