#!/bin/sh
# Entrypoint of rat-lab/postgres:15: a first start initialises $PGDATA (scram-sha-256 over TCP,
# trust on the container's own socket, like the official postgres image), then PostgreSQL runs as
# the postgres user. The image has no PAM, so privileges are dropped with setpriv, not runuser.
# Settings come from the environment: POSTGRES_PASSWORD (required on first start),
# PGPORT (5432), PGDATA (/var/lib/postgresql/data). Containers share the host's network, so the
# server listens on 127.0.0.1 only.
set -eu
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PGPORT="${PGPORT:-5432}"
export PGDATA PGPORT
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "entrypoint: POSTGRES_PASSWORD must be set to initialise $PGDATA" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -p "$PGPORT" -c listen_addresses=127.0.0.1 "$@"
