#!/usr/bin/env bash
# lab/show-backup.sh [ROOT]: where the newest complete backup of the lab host (or under ROOT) is
# and how big it is (used by `make backup`). Complete = a bare timestamp directory holding
# manifest.json (docs/layout.md).
# Sizes as the backup's summary line and list_backups give them, from the manifest: what the
# backup holds (dump + objects) and what it added to the disk (files not hard-linked from the
# previous backup).
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

root="${1:-$RAT_LAB_STATE/backups}"
latest=""
for dir in "$root"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9][0-9][0-9]; do
    [[ -f "$dir/manifest.json" ]] && latest="$dir"
done
[[ -n "$latest" ]] || lab_die "no complete backup under $root"
count="$(find "$root" -mindepth 1 -maxdepth 1 -name '[0-9]*_[0-9]*' ! -name '*.partial' | wc -l)"
size="$(PYTHONPATH="$RAT_LAB_REPO/collections" "$RAT_LAB_PYTHON" - "$latest" <<'PY'
import sys

from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest

s = manifest.summary(manifest.read(sys.argv[1]))
mib = lambda n: "%.1f MiB" % (n / 1048576.0)
new = "unknown (made before it was recorded)" if s["new_bytes"] is None else (
    "%s (%d files copied, %d hard-linked from the previous backup)" % (mib(s["new_bytes"]), s["copied"], s["linked"]))
print("%s (%d bytes: dump and %d objects); new on disk: %s" % (mib(s["bytes"]), s["bytes"], s["objects"], new))
if s["best_effort_buckets"]:
    print("Consistency: best-effort, unversioned bucket(s) %s: enable versioning on them for a "
          "snapshot-consistent backup" % ", ".join(s["best_effort_buckets"]))
PY
)"
printf 'Backup: %s\nSize:   %s\nAll backups of this host (%s): %s\n' "$latest" "$size" "$count" "$root"
