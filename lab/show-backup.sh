#!/usr/bin/env bash
# Prints where the newest complete backup of the lab host is and how big it is (used by
# `make backup`). Complete = a bare timestamp directory holding manifest.json (DESIGN.md).
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

root="$RAT_LAB_STATE/backups"
latest=""
for dir in "$root"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9][0-9][0-9]; do
    [[ -f "$dir/manifest.json" ]] && latest="$dir"
done
[[ -n "$latest" ]] || lab_die "no complete backup under $root"
count="$(find "$root" -mindepth 1 -maxdepth 1 -name '[0-9]*_[0-9]*' ! -name '*.partial' | wc -l)"
files="$(find "$latest" -type f | wc -l)"
size="$(du -sh --apparent-size "$latest" | cut -f1)"
printf 'Backup: %s\nSize:   %s in %s files\nAll backups of this host (%s): %s\n' \
    "$latest" "$size" "$files" "$count" "$root"
