#!/usr/bin/env bash
# Private Docker daemon of the lab and its PostgreSQL image.
#   lab/docker.sh up     start dockerd on unix:///run/rat-backup-lab/docker.sock (if not running),
#                        wait until it answers, build rat-lab/postgres:15 if missing
#   lab/docker.sh image  (re)build rat-lab/postgres:15 from the host's PostgreSQL 15 packages
#   lab/docker.sh ee-base  (re)build rat-lab/ee-base:local, a base for the execution environment,
#                        from the host's Python 3.11 and PostgreSQL 15 client (tests/ee_image.sh)
#   lab/docker.sh down   stop the dockerd this script started (by its pid) and its containers
# The daemon has no bridge and no iptables rules: containers run with --network host only, so
# nothing leaves loopback. Its data lives in .lab/docker/data, its runtime state in
# /run/rat-backup-lab. Re-running `up` is harmless.
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

run_dir=/run/rat-backup-lab
sock="$run_dir/docker.sock"
pidfile="$run_dir/dockerd.pid"
data_root="$RAT_LAB_STATE/docker/data"
log="$RAT_LAB_STATE/docker/dockerd.log"
image_dir="$RAT_LAB_REPO/lab/pg-image"

dk() { docker -H "unix://$sock" "$@"; }
answers() { dk version >/dev/null 2>&1; }

up() {
    local pid
    [[ $EUID -eq 0 ]] || lab_die "lab/docker.sh must run as root (dockerd)"
    command -v dockerd >/dev/null || lab_die "dockerd not found: apt-get install docker.io (make deps)"
    if pid="$(lab_live_pid "$pidfile")" && answers; then
        lab_log "dockerd already running (pid $pid, $sock)"
    else
        install -d -m 0700 "$run_dir" "$RAT_LAB_STATE/docker" "$data_root"
        lab_log "starting dockerd on $sock"
        # setsid: the daemon outlives this script and is not hit by the caller's Ctrl-C.
        setsid dockerd --host "unix://$sock" --data-root "$data_root" --exec-root "$run_dir/exec" \
            --pidfile "$pidfile" --bridge=none --iptables=false --ip6tables=false \
            --ip-masq=false --userland-proxy=false >"$log" 2>&1 </dev/null &
        lab_wait_for "dockerd ($sock, log $log)" 60 answers
    fi
    if ! dk image inspect "$RAT_LAB_PG_IMAGE" >/dev/null 2>&1; then
        image
    fi
}

image() {
    local ctx="$RAT_LAB_STATE/docker/pg-image"
    answers || lab_die "dockerd is not running: lab/docker.sh up"
    lab_log "building $RAT_LAB_PG_IMAGE from the host's PostgreSQL 15"
    rm -rf "$ctx"
    install -d -m 0700 "$ctx"
    "$image_dir/rootfs.sh" "$ctx/rootfs"
    cp "$image_dir/Dockerfile" "$ctx/Dockerfile"
    # The legacy builder needs no registry for FROM scratch; BuildKit may try to reach one.
    DOCKER_BUILDKIT=0 dk build --tag "$RAT_LAB_PG_IMAGE" "$ctx" >"$RAT_LAB_STATE/docker/build.log" 2>&1 \
        || lab_die "image build failed, see $RAT_LAB_STATE/docker/build.log"
    rm -rf "$ctx"
    lab_log "built $RAT_LAB_PG_IMAGE"
}

ee_base() {
    local ctx="$RAT_LAB_STATE/docker/ee-base"
    answers || lab_die "dockerd is not running: lab/docker.sh up"
    lab_log "building rat-lab/ee-base:local from the host's Python 3.11 and PostgreSQL 15 client"
    rm -rf "$ctx"
    install -d -m 0700 "$ctx"
    "$RAT_LAB_REPO/lab/ee-base/rootfs.sh" "$ctx/rootfs"
    cp "$RAT_LAB_REPO/lab/ee-base/Dockerfile" "$ctx/Dockerfile"
    # Its one RUN (a venv) needs no network; there is no bridge, so it gets the host's.
    DOCKER_BUILDKIT=0 dk build --network host --tag rat-lab/ee-base:local "$ctx" >"$RAT_LAB_STATE/docker/ee-base.log" 2>&1 \
        || lab_die "image build failed, see $RAT_LAB_STATE/docker/ee-base.log"
    rm -rf "$ctx"
    lab_log "built rat-lab/ee-base:local"
}

down() {
    local pid ids i
    if ! pid="$(lab_live_pid "$pidfile")"; then
        lab_log "dockerd is not running"
        return
    fi
    ids="$(dk ps -aq 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        dk rm -f $ids >/dev/null 2>&1 || true
    fi
    lab_log "stopping dockerd (pid $pid)"
    kill "$pid"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && lab_die "dockerd (pid $pid) did not stop within 30s"
    rm -f "$pidfile"
}

case "${1:-}" in
    up) up ;;
    image) image ;;
    ee-base) ee_base ;;
    down) down ;;
    *) lab_die "usage: lab/docker.sh up|image|ee-base|down" ;;
esac
