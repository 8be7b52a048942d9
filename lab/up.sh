#!/usr/bin/env bash
# Starts the lab: PostgreSQL 15 on 127.0.0.1:15432 and two S3 servers (moto) on 127.0.0.1:19000
# (primary) and 127.0.0.1:19001 (off-site), then writes .lab/env. With --docker it also runs
# lab/docker.sh up (private dockerd + PostgreSQL image) when that script exists.
# Re-running is harmless: a service whose recorded pid is alive and whose port answers is kept.
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

with_docker=0
for arg in "$@"; do
    case "$arg" in
        --docker) with_docker=1 ;;
        *) lab_die "unknown argument: $arg (usage: lab/up.sh [--docker])" ;;
    esac
done

[[ $EUID -eq 0 ]] || lab_die "lab/up.sh must run as root (it runs PostgreSQL as the postgres user)"
[[ -x "$RAT_LAB_PG_BIN/initdb" ]] || lab_die "$RAT_LAB_PG_BIN/initdb not found: install postgresql-15 (make deps)"
[[ -x "$RAT_LAB_PYTHON" ]] || lab_die "$RAT_LAB_PYTHON not found: create the virtualenv (make deps)"
moto_server="$(dirname "$RAT_LAB_PYTHON")/moto_server"
[[ -x "$moto_server" ]] || lab_die "$moto_server not found: pip install -r tests/requirements.txt (make deps)"

# postgres must be able to traverse .lab to reach a data directory inside it; secrets stay in
# the 0700 secrets/ sub-directory.
install -d -m 0711 "$RAT_LAB_STATE"
install -d -m 0700 "$RAT_LAB_STATE/backups"

start_postgres() {
    local datadir pidfile="$RAT_LAB_STATE/pg.pid" pid pwfile
    datadir="$(lab_pg_datadir)"
    if pid="$(lab_live_pid "$pidfile")" && lab_port_open "$RAT_LAB_PG_PORT"; then
        lab_log "PostgreSQL already running (pid $pid, port $RAT_LAB_PG_PORT)"
        return
    fi
    if lab_port_open "$RAT_LAB_PG_PORT"; then
        lab_die "port $RAT_LAB_PG_PORT is taken by a process this lab did not start (another lab checkout?); stop it first"
    fi
    printf '%s\n' "$datadir" >"$RAT_LAB_STATE/pg-data-dir"
    if [[ ! -s "$datadir/data/PG_VERSION" ]]; then
        lab_log "initdb $datadir/data"
        rm -rf "$datadir/data"
        install -d -m 0700 -o postgres -g postgres "$datadir" "$datadir/data" "$datadir/run"
        # The password file is read by initdb as postgres, then removed.
        pwfile="$datadir/initdb.pw"
        (umask 077 && lab_secret pg_admin_password >"$pwfile")
        chown postgres:postgres "$pwfile"
        lab_as_postgres "$RAT_LAB_PG_BIN/initdb" -D "$datadir/data" -U "$RAT_LAB_PG_ADMIN_USER" \
            --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >"$RAT_LAB_STATE/initdb.log" 2>&1 \
            || { rm -f "$pwfile"; lab_die "initdb failed, see $RAT_LAB_STATE/initdb.log"; }
        rm -f "$pwfile"
        # A lab that is rebuilt at will needs no crash safety; skipping fsync makes seeding and the
        # restore tests several times faster. Listening on TCP loopback only.
        cat >>"$datadir/data/postgresql.conf" <<EOF

# rat.backup lab settings
listen_addresses = '$RAT_LAB_PG_HOST'
port = $RAT_LAB_PG_PORT
unix_socket_directories = '$datadir/run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
EOF
    fi
    lab_log "starting PostgreSQL on $RAT_LAB_PG_HOST:$RAT_LAB_PG_PORT"
    lab_as_postgres "$RAT_LAB_PG_BIN/pg_ctl" -D "$datadir/data" -l "$datadir/postgresql.log" \
        -w -t 60 start >/dev/null \
        || lab_die "PostgreSQL did not start, see $datadir/postgresql.log"
    head -n1 "$datadir/data/postmaster.pid" >"$pidfile"
    lab_wait_for "PostgreSQL on port $RAT_LAB_PG_PORT" 30 \
        "$RAT_LAB_PG_BIN/pg_isready" -q -h "$RAT_LAB_PG_HOST" -p "$RAT_LAB_PG_PORT"
}

# Role rat (with its password) and database rat owned by it; the seed fills the database. Role
# rat_drill (CREATEDB, nothing else) is the restore drill's user: the drill makes its scratch
# database beside rat, which RAT's own user may not (inventory/lab sets rat_drill_postgres_user).
# Safe to run on a running lab (lab/up.sh does it on every start).
ensure_roles() {
    local admin_pw rat_pw drill_pw
    admin_pw="$(lab_secret pg_admin_password)"
    rat_pw="$(lab_secret pg_password)"
    drill_pw="$(lab_secret pg_drill_password)"
    # Passwords travel in the environment only (\getenv), never in argv.
    PGPASSWORD="$admin_pw" RAT_LAB_NEW_PASSWORD="$rat_pw" RAT_LAB_NEW_DRILL_PASSWORD="$drill_pw" \
        "$RAT_LAB_PG_BIN/psql" -X -q -w -v ON_ERROR_STOP=1 \
        -h "$RAT_LAB_PG_HOST" -p "$RAT_LAB_PG_PORT" -U "$RAT_LAB_PG_ADMIN_USER" -d postgres \
        -v rat_user="$RAT_LAB_PG_USER" -v rat_db="$RAT_LAB_PG_DATABASE" \
        -v drill_user="$RAT_LAB_PG_DRILL_USER" <<'SQL'
\getenv rat_password RAT_LAB_NEW_PASSWORD
\getenv drill_password RAT_LAB_NEW_DRILL_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'rat_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'rat_user') \gexec
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'drill_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'drill_user') \gexec
SET log_statement = 'none';
ALTER ROLE :"rat_user" WITH LOGIN PASSWORD :'rat_password';
ALTER ROLE :"drill_user" WITH LOGIN CREATEDB NOSUPERUSER PASSWORD :'drill_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'rat_db', :'rat_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'rat_db') \gexec
SQL
}

start_s3() {
    local name="$1" port="$2" pidfile="$RAT_LAB_STATE/s3-$1.pid" pid
    if pid="$(lab_live_pid "$pidfile")" && lab_port_open "$port"; then
        lab_log "S3 $name already running (pid $pid, port $port)"
        return
    fi
    if lab_port_open "$port"; then
        lab_die "port $port is taken by a process this lab did not start (another lab checkout?); stop it first"
    fi
    lab_log "starting S3 $name (moto) on 127.0.0.1:$port"
    # setsid: the server must outlive this script and not get the terminal's signals.
    setsid "$moto_server" -H "$RAT_LAB_S3_HOST" -p "$port" \
        </dev/null >"$RAT_LAB_STATE/s3-$name.log" 2>&1 &
    printf '%s\n' "$!" >"$pidfile"
    lab_wait_for "S3 $name on port $port" 30 lab_port_open "$port"
}

write_env() {
    local tmp="$RAT_LAB_STATE/env.tmp"
    (
        umask 077
        cat >"$tmp" <<EOF
# Written by lab/up.sh: the running lab's settings (holds credentials: 0600, never print it).
export RAT_LAB_REPO='$RAT_LAB_REPO'
export RAT_LAB_STATE='$RAT_LAB_STATE'
export RAT_LAB_PYTHON='$RAT_LAB_PYTHON'
export RAT_LAB_PG_HOST='$RAT_LAB_PG_HOST'
export RAT_LAB_PG_PORT='$RAT_LAB_PG_PORT'
export RAT_LAB_PG_BIN='$RAT_LAB_PG_BIN'
export RAT_LAB_PG_ADMIN_USER='$RAT_LAB_PG_ADMIN_USER'
export RAT_LAB_PG_ADMIN_PASSWORD='$(lab_secret pg_admin_password)'
export RAT_LAB_PG_USER='$RAT_LAB_PG_USER'
export RAT_LAB_PG_PASSWORD='$(lab_secret pg_password)'
export RAT_LAB_PG_DATABASE='$RAT_LAB_PG_DATABASE'
export RAT_LAB_PG_DRILL_USER='$RAT_LAB_PG_DRILL_USER'
export RAT_LAB_PG_DRILL_PASSWORD='$(lab_secret pg_drill_password)'
export RAT_LAB_S3_ENDPOINT='http://$RAT_LAB_S3_HOST:$RAT_LAB_S3_PORT'
export RAT_LAB_S3_OFFSITE_ENDPOINT='http://$RAT_LAB_S3_HOST:$RAT_LAB_S3_OFFSITE_PORT'
export RAT_LAB_S3_ACCESS_KEY='$(lab_secret s3_access_key)'
export RAT_LAB_S3_SECRET_KEY='$(lab_secret s3_secret_key)'
export RAT_LAB_DOCKER_HOST='$RAT_LAB_DOCKER_HOST'
export RAT_LAB_PG_IMAGE='$RAT_LAB_PG_IMAGE'
EOF
    )
    mv "$tmp" "$RAT_LAB_STATE/env"
}

start_postgres
ensure_roles
start_s3 primary "$RAT_LAB_S3_PORT"
start_s3 offsite "$RAT_LAB_S3_OFFSITE_PORT"
write_env
if ((with_docker)); then
    if [[ -f "$RAT_LAB_REPO/lab/docker.sh" ]]; then
        bash "$RAT_LAB_REPO/lab/docker.sh" up
    else
        lab_log "lab/docker.sh not present: no Docker in this lab"
    fi
fi
lab_log "lab is up; settings in $RAT_LAB_STATE/env"
