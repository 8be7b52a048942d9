#!/usr/bin/env bash
# Runs every bench/bench_*.py with the virtualenv's python and the running lab's settings in
# the environment (`make bench`). Each prints its own Markdown table. Runs them all, then fails
# if any failed.
set -uo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -s "$RAT_LAB_STATE/env" ]] || lab_die "$RAT_LAB_STATE/env missing: run lab/up.sh first"
repo="$RAT_LAB_REPO"
set -a
# shellcheck source=/dev/null
source "$RAT_LAB_STATE/env"
set +a
unset AWS_CA_BUNDLE
export PYTHONPATH="$repo/collections${PYTHONPATH:+:$PYTHONPATH}"
# Peers the benchmarks compare against (aws CLI, ...) come from the virtualenv first.
PATH="$(dirname "$RAT_LAB_PYTHON"):$PATH"
export PATH

shopt -s nullglob
benches=("$repo"/bench/bench_*.py)
if ((${#benches[@]} == 0)); then
    lab_log "no bench/bench_*.py yet"
    exit 0
fi
failed=()
for bench in "${benches[@]}"; do
    lab_log "running ${bench#"$repo"/}"
    (cd "$repo" && "$RAT_LAB_PYTHON" "$bench") || failed+=("${bench#"$repo"/}")
done
if ((${#failed[@]})); then
    lab_die "benchmarks failed: ${failed[*]}"
fi
lab_log "all ${#benches[@]} benchmarks passed"
