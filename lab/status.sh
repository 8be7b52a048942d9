#!/usr/bin/env bash
# Prints the state of each lab service; exits 0 only when all of them run (recorded pid alive and
# port answering). Docker is reported by lab/docker.sh itself and not counted here.
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

all_up=0
check() {
    local what="$1" pidfile="$2" port="$3" pid
    if pid="$(lab_live_pid "$pidfile")" && lab_port_open "$port"; then
        printf '%-12s up   (pid %s, 127.0.0.1:%s)\n' "$what" "$pid" "$port"
    else
        printf '%-12s down\n' "$what"
        all_up=1
    fi
}
check postgresql "$RAT_LAB_STATE/pg.pid" "$RAT_LAB_PG_PORT"
check s3-primary "$RAT_LAB_STATE/s3-primary.pid" "$RAT_LAB_S3_PORT"
check s3-offsite "$RAT_LAB_STATE/s3-offsite.pid" "$RAT_LAB_S3_OFFSITE_PORT"
exit "$all_up"
