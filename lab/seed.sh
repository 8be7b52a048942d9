#!/usr/bin/env bash
# Seeds the running lab with RAT-shaped data: database rat (lab/seed.sql) and buckets rat and
# rat-scratch on the primary S3 server (lab/seed_s3.py), and the empty bucket rat-offsite on the
# off-site server when it is missing (never emptied: it holds off-site copies). Seeding resets: the database is
# recreated and the buckets are emptied of every version first, so each seed gives the same
# content. With --if-needed, a part that still holds exactly what the last seed wrote (same
# fingerprint of rows and objects) is left alone; anything a test changed is re-seeded.
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

# A digest of the seeded database: every row of every seeded table, the large objects, the
# schema objects and the sequence positions. Fails when a table is missing.
pg_fingerprint() {
    psql_as "$RAT_LAB_PG_USER" "$RAT_LAB_PG_PASSWORD" "$RAT_LAB_PG_DATABASE" -At 2>/dev/null <<'SQL'
SELECT md5(string_agg(part, '|' ORDER BY part)) FROM (
    SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM namespaces t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM pipelines t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM runs t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM schedules t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM triggers t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM quality_tests t
    UNION ALL SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM ownership t
    UNION ALL SELECT md5(coalesce(string_agg(oid::text || md5(lo_get(oid)), ',' ORDER BY oid), ''))
                FROM pg_largeobject_metadata
    UNION ALL SELECT md5(string_agg(relname || ':' || relkind::text, ',' ORDER BY relname)) FROM pg_class
               WHERE relnamespace = 'public'::regnamespace
    UNION ALL SELECT md5(string_agg(proname || ':' || md5(prosrc), ',' ORDER BY proname)) FROM pg_proc
               WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT md5(string_agg(sequencename || ':' || coalesce(last_value, 0), ',' ORDER BY sequencename))
                FROM pg_sequences WHERE schemaname = 'public'
) AS parts (part);
SQL
}

pg_seeded() {
    local now
    [[ -s "$state_dir/pg" ]] || return 1
    now="$(pg_fingerprint)" || return 1
    [[ "$now" == "$(cat "$state_dir/pg")" ]]
}

seed_pg() {
    lab_log "seeding database $RAT_LAB_PG_DATABASE"
    psql_as "$RAT_LAB_PG_ADMIN_USER" "$RAT_LAB_PG_ADMIN_PASSWORD" postgres \
        -v db="$RAT_LAB_PG_DATABASE" -v owner="$RAT_LAB_PG_USER" <<'SQL'
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db" OWNER :"owner";
SQL
    psql_as "$RAT_LAB_PG_USER" "$RAT_LAB_PG_PASSWORD" "$RAT_LAB_PG_DATABASE" -f "$RAT_LAB_REPO/lab/seed.sql"
    pg_fingerprint >"$state_dir/pg"
}

# What the last seed produced, to tell later whether a test left the data changed.
state_dir="$RAT_LAB_STATE/seed-state"
mkdir -p "$state_dir"
start=$SECONDS
if ((if_needed)) && pg_seeded; then
    lab_log "database $RAT_LAB_PG_DATABASE already seeded"
else
    seed_pg
fi
s3_args=(--endpoint "$RAT_LAB_S3_ENDPOINT" --state "$state_dir/s3"
    --offsite-endpoint "http://$RAT_LAB_S3_HOST:$RAT_LAB_S3_OFFSITE_PORT")
((if_needed)) && s3_args+=(--if-needed)
"$RAT_LAB_PYTHON" "$RAT_LAB_REPO/lab/seed_s3.py" "${s3_args[@]}"
lab_log "seed done in $((SECONDS - start))s"
