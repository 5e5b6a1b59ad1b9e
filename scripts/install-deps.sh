#!/usr/bin/env bash
# Installs the system packages the tests and demos use, on Debian, when run as root and
# something is missing. Safe to run repeatedly.
set -euo pipefail
need=()
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
# `script` gives the CLI tests a terminal (progress bar, table width).
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# Time zones for `forget --tz` and its tests.
[ -e /usr/share/zoneinfo/Asia/Tokyo ] || need+=(tzdata)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]}; some optional checks will be skipped" >&2
  fi
fi
