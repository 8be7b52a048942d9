#!/usr/bin/env bash
# Stops exactly what lab/up.sh started, by the pids it recorded under .lab/, and lab/docker.sh's
# services when that script exists. Data (PostgreSQL cluster, secrets, backups) stays; the S3
# servers keep their objects in memory, so their content is gone until the next seed.
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Sends TERM to the recorded pid, waits (bounded), then KILL; forgets the pid file either way.
stop_pid() {
    local what="$1" pidfile="$2" pid i
    if ! pid="$(lab_live_pid "$pidfile")"; then
        rm -f "$pidfile"
        return
    fi
    lab_log "stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        lab_log "$what did not stop in 10s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# The Docker socket and pid file live in /run, shared by every checkout on the machine: stop the
# daemon only when it is this checkout's (its data root is under this lab's state directory).
docker_ours() {
    local pid
    pid="$(lab_live_pid /run/rat-backup-lab/dockerd.pid)" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF "$RAT_LAB_STATE/docker/data"
}
if [[ -f "$RAT_LAB_REPO/lab/docker.sh" ]] && docker_ours; then
    bash "$RAT_LAB_REPO/lab/docker.sh" down
fi
stop_pid "S3 offsite" "$RAT_LAB_STATE/s3-offsite.pid"
stop_pid "S3 primary" "$RAT_LAB_STATE/s3-primary.pid"

pidfile="$RAT_LAB_STATE/pg.pid"
if pid="$(lab_live_pid "$pidfile")"; then
    datadir="$(lab_pg_datadir)"
    lab_log "stopping PostgreSQL (pid $pid)"
    # pg_ctl stops the postmaster named in the cluster's own postmaster.pid, the one up.sh recorded.
    if ! lab_as_postgres "$RAT_LAB_PG_BIN/pg_ctl" -D "$datadir/data" -m fast -w -t 30 stop >/dev/null; then
        stop_pid PostgreSQL "$pidfile"
    fi
fi
rm -f "$pidfile"
lab_log "lab is down"
