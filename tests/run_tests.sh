#!/usr/bin/env bash
# The test runner behind `make test` (and `make sanity|units|integration|lint`).
#
#   tests/run_tests.sh [--lab] all|sanity|units|integration|lint|package|ee|sanity-lowest|units-lowest ...
#
# Supported ansible-core is the range in requirements.txt: sanity, units, integration and lint run
# on the highest (the .venv lab/deps.sh fills), sanity-lowest and units-lowest on the lowest
# (.venv-lowest, the same requirements with ansible-core pinned to the range's first minor).
# package builds the release tarball, installs it into an empty path and reads every module,
# role and playbook from there (tests/package.sh); it also lints the changelog and makes the
# execution environment's build context. ee builds the execution environment image on a base made
# from this host's packages and runs the backup playbook inside it (tests/ee_image.sh; lab with Docker).
#
# ansible-test only works on a collection that sits at .../ansible_collections/<ns>/<name> and is
# a git repository, so the runner copies this checkout's files (tracked, plus untracked ones that
# are not ignored: work in progress gets tested too) to a temporary tree, `git init`s it and runs
# the stages there. --lab brings the lab up first (with Docker) and seeds it; the lab services it
# started are stopped at the end unless KEEP_LAB=1. TARGETS="a b" limits the integration targets.
# Any failing stage fails the run; so do units or integration that ran no test at all.
#
# With integration in the run (make test), the other stages (sanity, units, their -lowest runs,
# lint, package, ee) run one after another beside it, at a low CPU priority (nice 10) on a copy of
# their own: integration waits on S3, PostgreSQL, cron, subprocesses and clocks much of its time,
# and they use the CPU it leaves idle instead of adding their minutes to the total (where
# integration needs both cores they get about a tenth, enough not to starve the unit tests that
# time themselves; ee's image build runs in dockerd, unniced, and mostly waits on the package
# index). None of them touches what integration's targets use: ee has its own database, bucket and
# images. Their output is printed after integration's; the summary table has every stage.
# shellcheck disable=SC2317  # the stages run as "run_$stage" and cleanup as a trap, which shellcheck cannot see
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
LOWEST_VENV="$REPO/.venv-lowest"
PYTHON_VERSION=3.11
export PATH="$VENV/bin:$PATH"

log() { printf '[tests] %s\n' "$*" >&2; }
die() { printf '[tests] ERROR: %s\n' "$*" >&2; exit 1; }

with_lab=0
stages=()
for arg in "$@"; do
    case "$arg" in
        --lab) with_lab=1 ;;
        all) stages+=(sanity units sanity-lowest units-lowest integration lint package ee) ;;
        sanity | units | integration | lint | package | ee | sanity-lowest | units-lowest) stages+=("$arg") ;;
        *) die "unknown argument: $arg (usage: tests/run_tests.sh [--lab] all|sanity|units|integration|lint|package|ee|sanity-lowest|units-lowest ...)" ;;
    esac
done
((${#stages[@]})) || die "no stage given (all, sanity, units, integration, lint, package, ee, sanity-lowest, units-lowest)"
[[ -x "$VENV/bin/ansible-test" ]] || die "$VENV/bin/ansible-test missing: run lab/deps.sh all (make deps)"
if [[ " ${stages[*]} " == *-lowest* ]]; then
    [[ -x "$LOWEST_VENV/bin/ansible-test" ]] || die "$LOWEST_VENV/bin/ansible-test missing: run lab/deps.sh all (make deps)"
fi

work="$(mktemp -d /tmp/rat-backup-tests.XXXXXX)"
dest="$work/ansible_collections/rat/backup"
lab_started=0
beside_pid=
declare -A result=() detail=() seconds=()
total_passed=0
total_failed=0

cleanup() {
    local rc=$?
    # Only when the run ends early: the stages beside integration are a process group of their own.
    if [[ -n "$beside_pid" ]] && kill -0 "$beside_pid" 2>/dev/null; then
        kill -TERM -- "-$beside_pid" 2>/dev/null || true
        wait "$beside_pid" 2>/dev/null || true
    fi
    if [[ -d "$dest/tests/output" ]]; then
        rm -rf "$REPO/tests/output"
        cp -a "$dest/tests/output" "$REPO/tests/output"
    fi
    rm -rf "$work"
    if ((lab_started)) && [[ "${KEEP_LAB:-0}" != 1 ]]; then
        log "stopping the lab services this run started (KEEP_LAB=1 keeps them)"
        "$REPO/lab/down.sh" || true
    fi
    exit "$rc"
}
trap cleanup EXIT

# ansible-test bootstraps pip in the virtualenvs it makes with a get-pip script it downloads from
# the internet; this machine has none, so the cache gets a stand-in that uses ensurepip and then
# installs the requested packages from the package index. The file name carries the pip version
# ansible-test asks for.
install_pip_bootstrap() {
    local venv="$1" version cache
    version="$("$venv/bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$PYTHON_VERSION"'"))["pip"])')"
    cache="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
    mkdir -p "$(dirname "$cache")"
    cat >"$cache" <<'EOF'
"""Offline stand-in for get-pip.py, written by rat.backup's tests/run_tests.sh."""
import subprocess
import sys

ARGS = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + ARGS)
EOF
}

copy_collection() {
    local list="$work/files"
    mkdir -p "$dest"
    # The collections/ symlink points back at the checkout: copying it would nest the tree.
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) \
        | while IFS= read -r -d '' f; do
            [[ "$f" == collections/* || "$f" == collections ]] && continue
            [[ -e "$REPO/$f" || -L "$REPO/$f" ]] && printf '%s\0' "$f"
        done >"$list"
    tar -C "$REPO" --null -T "$list" -cf - | tar -C "$dest" -xf -
    git -C "$dest" init -q
    git -C "$dest" add -A
    log "collection copied to $dest ($(tr -cd '\0' <"$list" | wc -c) files)"
}

# Every variable of the running lab (.lab/env) reaches the integration targets as rat_lab_*.
write_integration_config() {
    local env_file="$REPO/.lab/env"
    [[ -s "$env_file" ]] || die "$env_file missing: the lab is not up (run with --lab or lab/up.sh)"
    (
        set -a
        # shellcheck source=/dev/null
        source "$env_file"
        "$VENV/bin/python" - "$dest/tests/integration/integration_config.yml" <<'EOF'
import os
import sys

import yaml

lab = {k.lower(): v for k, v in sorted(os.environ.items()) if k.startswith('RAT_LAB_')}
# The roles' typo guard accepts only the rat_* names the collection reads; these are the tests'.
lab['rat_vars_ignore'] = ['rat_lab_*']
with open(sys.argv[1], 'w', encoding='utf-8') as out:
    os.fchmod(out.fileno(), 0o600)
    yaml.safe_dump(lab, out, default_flow_style=False)
EOF
    )
}

# Sums tests, failures, errors and skips of the JUnit files pytest wrote.
junit_counts() {
    "$VENV/bin/python" - "$@" <<'EOF'
import sys
import xml.etree.ElementTree as ET

tests = failed = skipped = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == 'testsuite' else root.iter('testsuite')):
        tests += int(suite.get('tests', 0))
        failed += int(suite.get('failures', 0)) + int(suite.get('errors', 0))
        skipped += int(suite.get('skipped', 0))
print(tests, failed, skipped)
EOF
}

# ANSIBLE_TEST_VENV selects the ansible-core under test (the highest unless a -lowest stage says).
ANSIBLE_TEST_VENV="$VENV"
ansible_test() {
    (cd "$dest" && PATH="$ANSIBLE_TEST_VENV/bin:$PATH" \
        "$ANSIBLE_TEST_VENV/bin/ansible-test" "$@" --local --python "$PYTHON_VERSION" --requirements --color no)
}

run_sanity() {
    local stage="${1:-sanity}" out="$work/sanity.log" rc=0 ran failed
    ansible_test sanity 2>&1 | tee "$out" || rc=$?
    ran="$(grep -c '^Running sanity test "' "$out" || true)"
    # A finished run names the number of failed tests; a crashed test ends the run early with a
    # different "FATAL:", after the "ERROR: Found N ..." of the tests that failed before it.
    failed="$(sed -n 's/^FATAL: The \([0-9]*\) sanity test(s) listed below.*/\1/p' "$out" | tail -n1)"
    if [[ -z "$failed" ]]; then
        failed="$(grep -cE '^(ERROR: Found [0-9]+ .* issue|FATAL: )' "$out" || true)"
    fi
    if ((rc != 0 && failed == 0)); then
        failed=1
    fi
    detail[$stage]="$ran tests run, $failed with issues"
    total_passed=$((total_passed + ran - failed))
    total_failed=$((total_failed + failed))
    return "$rc"
}

run_units() {
    local stage="${1:-units}" rc=0 counts tests failed skipped
    rm -rf "$dest/tests/output/junit"
    ansible_test units || rc=$?
    shopt -s nullglob
    local files=("$dest"/tests/output/junit/*.xml)
    shopt -u nullglob
    if ((${#files[@]} == 0)); then
        detail[$stage]="no test ran"
        total_failed=$((total_failed + 1))
        return 1
    fi
    counts="$(junit_counts "${files[@]}")"
    read -r tests failed skipped <<<"$counts"
    detail[$stage]="$tests tests, $failed failed, $skipped skipped"
    total_passed=$((total_passed + tests - failed - skipped))
    total_failed=$((total_failed + failed))
    if ((tests == 0)); then
        total_failed=$((total_failed + 1))
        detail[$stage]="no test ran"
        return 1
    fi
    return "$rc"
}

run_integration() {
    local out="$work/integration.log" rc=0 ran failed
    local -a targets=()
    write_integration_config
    read -r -a targets <<<"${TARGETS:-}"
    # destructive: the targets may start daemons and change system state; this machine is the
    # disposable test machine. --continue-on-error: one run reports every failing target.
    ansible_test integration --allow-destructive --continue-on-error "${targets[@]}" 2>&1 \
        | tee "$out" || rc=$?
    ran="$(grep -cE '^Running [^ ]+ integration test (role|script)' "$out" || true)"
    failed="$(sed -n 's/^[A-Z]*: The \([0-9]*\) integration test(s) listed below .* failed.*/\1/p' "$out" | tail -n1)"
    failed="${failed:-0}"
    if ((rc != 0 && failed == 0)); then
        failed=1
    fi
    detail[integration]="$ran targets run, $failed failed"
    total_passed=$((total_passed + ran - failed))
    total_failed=$((total_failed + failed))
    if ((ran == 0)); then
        detail[integration]="no target ran"
        total_failed=$((total_failed + 1))
        return 1
    fi
    return "$rc"
}

run_lint() {
    local rc=0 out="$work/lint.log"
    # The copy has no collections/ symlink: the tree above ansible_collections/ is where rat.backup is found.
    (cd "$dest" && NO_COLOR=1 ANSIBLE_COLLECTIONS_PATH="$work" ansible-lint --offline) 2>&1 | tee "$out" || rc=$?
    # Warning-level rules (jinja[spacing]) exit 0 with "... but 'min' profile passed": not clean.
    if ((rc == 0)) && ! grep -q "Profile 'production' was required, and it passed" "$out"; then
        rc=1
    fi
    if ((rc == 0)); then
        detail[lint]="production profile clean"
        total_passed=$((total_passed + 1))
    else
        detail[lint]="violations (see above)"
        total_failed=$((total_failed + 1))
    fi
    return "$rc"
}

# A stage again on the lowest supported ansible-core: "$1" is sanity or units.
run_on_lowest() {
    local stage="$1-lowest" rc=0
    ANSIBLE_TEST_VENV="$LOWEST_VENV"
    "run_$1" "$stage" || rc=$?
    ANSIBLE_TEST_VENV="$VENV"
    detail[$stage]="ansible-core $("$LOWEST_VENV/bin/python" -c 'import ansible; print(ansible.__version__)'): ${detail[$stage]}"
    return "$rc"
}

run_sanity_lowest() { run_on_lowest sanity; }

run_units_lowest() { run_on_lowest units; }

# A stage run by a script that prints "<stage>: N passed, N failed" last (tests/package.sh, tests/ee_image.sh).
run_counted() {
    local stage="$1" script="$2" out="$work/$1.log" rc=0 passed failed
    "$REPO/tests/$script" "$dest" "$work/$stage" 2>&1 | tee "$out" || rc=$?
    read -r passed failed < <(sed -n "s/^$stage: \\([0-9]*\\) passed, \\([0-9]*\\) failed\$/\\1 \\2/p" "$out" | tail -n1)
    passed="${passed:-0}"
    failed="${failed:-1}"
    if ((rc != 0 && failed == 0)); then
        failed=1
    fi
    detail[$stage]="$passed checks passed, $failed failed"
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    return "$rc"
}

run_package() { run_counted package package.sh; }

run_ee() { run_counted ee ee_image.sh; }

if ((with_lab)); then
    if ! "$REPO/lab/status.sh" >/dev/null; then
        lab_started=1
    fi
    "$REPO/lab/up.sh" --docker
    "$REPO/lab/seed.sh" --if-needed
fi

install_pip_bootstrap "$VENV"
if [[ " ${stages[*]} " == *-lowest* ]]; then
    install_pip_bootstrap "$LOWEST_VENV"
fi
copy_collection

overall=0
run_stage() {
    local stage="$1" start=$SECONDS
    log "=== $stage ==="
    if "run_${stage//-/_}"; then
        result[$stage]=PASS
    else
        result[$stage]=FAIL
        overall=1
    fi
    seconds[$stage]=$((SECONDS - start))
}

# The stages other than integration, run in this subshell beside it: one line per stage
# (stage, result, seconds, passed, failed, detail; tab-separated) to "$1", output to stdout.
run_beside() {
    local results="$1" stage passed failed
    shift
    renice -n 10 -p "$BASHPID" >/dev/null
    work="$work/beside"
    dest="$work/ansible_collections/rat/backup"
    for stage in "$@"; do
        passed=$total_passed
        failed=$total_failed
        run_stage "$stage"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$stage" "${result[$stage]}" "${seconds[$stage]}" \
            $((total_passed - passed)) $((total_failed - failed)) "${detail[$stage]:-}" >>"$results"
    done
}

beside=()
ahead=()
for stage in "${stages[@]}"; do
    if [[ " ${stages[*]} " == *" integration "* && "$stage" != integration ]]; then
        beside+=("$stage")
    else
        ahead+=("$stage")
    fi
done

run_start=$SECONDS
if ((${#beside[@]})); then
    log "running beside integration at nice 10 (their output follows integration's): ${beside[*]}"
    # Their own copy: units empty tests/output/junit and ansible-test keeps its state in tests/output.
    mkdir -p "$work/beside/ansible_collections/rat"
    cp -a "$dest" "$work/beside/ansible_collections/rat/"
    # A process group of its own (set -m), so that cleanup can stop it with everything it started.
    set -m
    run_beside "$work/beside.results" "${beside[@]}" >"$work/beside.log" 2>&1 &
    beside_pid=$!
    set +m
fi
for stage in "${ahead[@]}"; do
    run_stage "$stage"
done
if ((${#beside[@]})); then
    wait "$beside_pid" || true
    beside_pid=
    log "=== output of the stages run beside integration: ${beside[*]} ==="
    cat "$work/beside.log"
    if [[ -d "$work/beside/ansible_collections/rat/backup/tests/output/junit" ]]; then
        mkdir -p "$dest/tests/output/junit"
        cp -a "$work/beside/ansible_collections/rat/backup/tests/output/junit/." "$dest/tests/output/junit/"
    fi
    # A stage that wrote no result line did not finish: it counts as a failure.
    for stage in "${beside[@]}"; do
        result[$stage]=FAIL
        detail[$stage]="did not finish (see its output above)"
        seconds[$stage]=-
    done
    touch "$work/beside.results"
    while IFS=$'\t' read -r stage res secs passed failed text; do
        result[$stage]="$res"
        seconds[$stage]="$secs"
        detail[$stage]="$text"
        total_passed=$((total_passed + passed))
        total_failed=$((total_failed + failed))
    done <"$work/beside.results"
    for stage in "${beside[@]}"; do
        if [[ "${seconds[$stage]}" == - ]]; then
            total_failed=$((total_failed + 1))
        fi
        if [[ "${result[$stage]}" != PASS ]]; then
            overall=1
        fi
    done
fi

printf '\n%-14s %-5s %6s  %s\n' stage result time detail
for stage in "${stages[@]}"; do
    printf '%-14s %-5s %5ss  %s\n' "$stage" "${result[$stage]}" "${seconds[$stage]}" "${detail[$stage]:-}"
done
if ((${#beside[@]})); then
    printf '(%s ran beside integration; the whole run took %ss)\n' "${beside[*]}" $((SECONDS - run_start))
fi
printf 'rat.backup: %d passed, %d failed\n' "$total_passed" "$total_failed"
exit "$overall"
