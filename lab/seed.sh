#!/usr/bin/env bash
# Seeds the running lab with RAT-shaped data: database rat (lab/seed.sql) and buckets rat and
# rat-scratch on the primary S3 server (lab/seed_s3.py). Seeding resets: the database is
# recreated and the buckets are emptied of every version first, so each seed gives the same
# content. With --if-needed, a part that already holds the current seed is left alone (the S3
# servers lose everything when they stop, PostgreSQL keeps its data).
set -euo pipefail
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if_needed=0
for arg in "$@"; do
    case "$arg" in
        --if-needed) if_needed=1 ;;
        *) lab_die "unknown argument: $arg (usage: lab/seed.sh [--if-needed])" ;;
    esac
done
[[ -s "$RAT_LAB_STATE/env" ]] || lab_die "$RAT_LAB_STATE/env missing: run lab/up.sh first"
# shellcheck source=/dev/null
source "$RAT_LAB_STATE/env"
# The lab's endpoints are plain http on loopback; a CA bundle from the environment only gets in the way.
unset AWS_CA_BUNDLE

psql_as() {
    local user="$1" password="$2" db="$3"
    shift 3
    PGPASSWORD="$password" "$RAT_LAB_PG_BIN/psql" -X -q -w -v ON_ERROR_STOP=1 \
        -h "$RAT_LAB_PG_HOST" -p "$RAT_LAB_PG_PORT" -U "$user" -d "$db" "$@"
}

pg_seeded() {
    local marker
    marker="$(psql_as "$RAT_LAB_PG_USER" "$RAT_LAB_PG_PASSWORD" "$RAT_LAB_PG_DATABASE" -At -c \
        "SELECT obj_description('public.runs'::regclass, 'pg_class') || ':' || (SELECT count(*) FROM public.runs)" \
        2>/dev/null)" || return 1
    [[ "$marker" == "RAT run history (rat-lab seed v1):40000" ]]
}

seed_pg() {
    lab_log "seeding database $RAT_LAB_PG_DATABASE"
    psql_as "$RAT_LAB_PG_ADMIN_USER" "$RAT_LAB_PG_ADMIN_PASSWORD" postgres \
        -v db="$RAT_LAB_PG_DATABASE" -v owner="$RAT_LAB_PG_USER" <<'SQL'
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db" OWNER :"owner";
SQL
    psql_as "$RAT_LAB_PG_USER" "$RAT_LAB_PG_PASSWORD" "$RAT_LAB_PG_DATABASE" -f "$RAT_LAB_REPO/lab/seed.sql"
}

start=$SECONDS
if ((if_needed)) && pg_seeded; then
    lab_log "database $RAT_LAB_PG_DATABASE already seeded"
else
    seed_pg
fi
s3_args=(--endpoint "$RAT_LAB_S3_ENDPOINT")
((if_needed)) && s3_args+=(--if-needed)
"$RAT_LAB_PYTHON" "$RAT_LAB_REPO/lab/seed_s3.py" "${s3_args[@]}"
lab_log "seed done in $((SECONDS - start))s"
