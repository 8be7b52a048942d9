# shellcheck shell=bash
# Shared settings and helpers of the lab scripts (sourced, not executed).
# The ports and names are the lab contract of docs/mechanisms.md: the inventory in inventory/lab
# and the integration tests rely on them, so they are fixed rather than configurable.

# shellcheck disable=SC2034  # the settings are used by the scripts that source this file
RAT_LAB_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAT_LAB_STATE="${RAT_LAB_STATE:-$RAT_LAB_REPO/.lab}"
RAT_LAB_PYTHON="${RAT_LAB_PYTHON:-$RAT_LAB_REPO/.venv/bin/python}"
RAT_LAB_PG_HOST=127.0.0.1
RAT_LAB_PG_PORT=15432
RAT_LAB_PG_BIN=/usr/lib/postgresql/15/bin
RAT_LAB_PG_ADMIN_USER=postgres
RAT_LAB_PG_USER=rat
RAT_LAB_PG_DATABASE=rat
RAT_LAB_PG_DRILL_USER=rat_drill
RAT_LAB_S3_HOST=127.0.0.1
RAT_LAB_S3_PORT=19000
RAT_LAB_S3_OFFSITE_PORT=19001
RAT_LAB_DOCKER_HOST=unix:///run/rat-backup-lab/docker.sock
RAT_LAB_PG_IMAGE=rat-lab/postgres:15
RAT_LAB_SECRETS="$RAT_LAB_STATE/secrets"

lab_log() { printf '[lab] %s\n' "$*" >&2; }
lab_die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
lab_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the pid recorded in $1 when that process is still alive.
lab_live_pid() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(head -n1 "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

# Waits up to $2 seconds (bounded) for the command "${@:3}" to succeed; $1 names it for errors.
lab_wait_for() {
    local what="$1" seconds="$2" i
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    lab_die "$what did not become ready within ${seconds}s"
}

# The secret named $1, generated once (0600) so a lab keeps its credentials across restarts.
lab_secret() {
    local file="$RAT_LAB_SECRETS/$1"
    if [[ ! -s "$file" ]]; then
        install -d -m 0700 "$RAT_LAB_SECRETS"
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$file.tmp" && mv "$file.tmp" "$file")
    fi
    cat "$file"
}

# Runs a command as the postgres user, from / so a checkout it cannot enter is not its cwd.
lab_as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

# PostgreSQL runs as the postgres user, which must be able to reach its data directory. A
# checkout under a private home (0700) is not reachable, so the cluster then lives outside it;
# .lab/pg-data-dir records where, so down.sh and re-runs find the same cluster.
lab_pg_datadir() {
    local pointer="$RAT_LAB_STATE/pg-data-dir"
    if [[ -s "$pointer" ]]; then
        cat "$pointer"
        return
    fi
    if lab_as_postgres test -x "$RAT_LAB_STATE"; then
        printf '%s\n' "$RAT_LAB_STATE/pg"
    else
        printf '/var/lib/rat-backup-lab/%s/pg\n' "$(printf '%s' "$RAT_LAB_STATE" | sha256sum | cut -c1-16)"
    fi
}
