#!/usr/bin/env bash
# A five-host RAT fleet on this machine for the drill tests and benchmark.
#
#   fleet.sh up DIR      start everything, write DIR/fleet.env (ports, addresses, pids)
#   fleet.sh down DIR    stop and remove everything `up` made (by the pids and names it recorded)
#
# Hosts a, b, c: local, each with its own PostgreSQL cluster on 127.0.0.1 (ports BASE+1..3).
# Host d: a network namespace reached over SSH, its PostgreSQL cluster inside the namespace on
# the namespace's own loopback (BASE+4), as a remote host's would be.
# Host e: a network namespace reached over SSH, PostgreSQL in a Docker container (RAT's compose
# layout). The container shares the host's network (the lab's dockerd allows nothing else), so it
# listens on the host's 127.0.0.1:BASE+5, which the namespace cannot reach; host e reaches it only
# through the Docker socket (container mode: pg_dump and psql run inside the container), exactly as
# RAT hosts run pg_dump in their compose container.
# S3: every host has its bucket drill-<x>-rat on the lab's server; the namespaces reach that server
# through a relay on their veth's host-side address (BASE+10).
# Settings from the environment: RAT_LAB_* (.lab/env), FLEET_BASE_PORT (uses BASE+1..BASE+11),
# FLEET_SUBNET (a.b.c), FLEET_HOST_OFFSET, FLEET_PREFIX (names of namespaces, buckets, container),
# FLEET_SEED_SQL, FLEET_S3_FIXTURE, FLEET_BG.
set -euo pipefail

cmd="${1:?usage: fleet.sh up|down DIR}"
DIR="${2:?usage: fleet.sh up|down DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${FLEET_BASE_PORT:?}"
NET="${FLEET_SUBNET:?}"
# Fourth octets used: OFF+1, OFF+2 (host d) and OFF+5, OFF+6 (host e); two fleets need distinct offsets.
OFF="${FLEET_HOST_OFFSET:-0}"
PREFIX="${FLEET_PREFIX:-drill}"
PGBIN="$RAT_LAB_PG_BIN"
DOCKER=(docker -H "$RAT_LAB_DOCKER_HOST")
CONTAINER="rat-$PREFIX-e-pg"
STATE="$DIR/fleet.state"
SEED_SQL="${FLEET_SEED_SQL:?}"
S3_FIXTURE="${FLEET_S3_FIXTURE:?}"
BG="${FLEET_BG:?}"

as_postgres() { (cd / && runuser -u postgres -- "$@"); }
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
record() { printf '%s\n' "$*" >>"$STATE"; }
ns_of() { printf 'rat%s-%s' "$PREFIX" "$1"; }

pg_init_start() {  # NAME PORT [NETNS]
    local name="$1" port="$2" ns="${3:-}" data="$PGROOT/$1"
    mkdir -p "$data" && chown postgres:postgres "$data" && chmod 0700 "$data"
    install -o postgres -m 0600 "$DIR/secrets/admin" "$PGROOT/$name.pw"
    as_postgres "$PGBIN/initdb" -D "$data/data" -U postgres --pwfile="$PGROOT/$name.pw" --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$PGROOT/$name.initdb.log" 2>&1
    rm -f "$PGROOT/$name.pw"
    local start=(runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data/data" -l "$PGROOT/$name.log" -w -t 60
                 -o "-p $port -c listen_addresses=127.0.0.1 -k $PGROOT -c fsync=off" start)
    if [[ -n "$ns" ]]; then (cd / && in_ns "$ns" "${start[@]}") >/dev/null; else (cd / && "${start[@]}") >/dev/null; fi
    record "pg $name $ns"
}

psql_admin() {  # PORT [NETNS] - SQL on stdin, as the cluster's superuser over its socket
    local port="$1" ns="${2:-}"
    local argv=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGROOT" -p "$port" -U postgres -d postgres)
    if [[ -n "$ns" ]]; then (cd / && in_ns "$ns" runuser -u postgres -- "${argv[@]}"); else as_postgres "${argv[@]}"; fi
}

seed_cluster() {  # PORT [NETNS]: role rat (CREATEDB, for the drill's scratch database), database rat, RAT-shaped rows
    local port="$1" ns="${2:-}"
    printf "CREATE ROLE rat LOGIN CREATEDB PASSWORD '%s';\nCREATE DATABASE rat OWNER rat;\n" "$(cat "$DIR/secrets/rat")" \
        | psql_admin "$port" "$ns"
    local argv=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U rat -d rat -f "$SEED_SQL")
    if [[ -n "$ns" ]]; then PGPASSWORD="$(cat "$DIR/secrets/rat")" in_ns "$ns" "${argv[@]}"
    else PGPASSWORD="$(cat "$DIR/secrets/rat")" "${argv[@]}"; fi >/dev/null
}

netns_up() {  # X N: namespace for host X, veth host side NET.(4N+1), namespace side NET.(4N+2)
    local x="$1" n="$2" ns; ns="$(ns_of "$x")"
    local host_ip="$NET.$((OFF + 4 * n + 1))" ns_ip="$NET.$((OFF + 4 * n + 2))" veth="v$PREFIX$x"
    ip netns add "$ns"; record "netns $ns"
    ip link add "${veth}0" type veth peer name "${veth}1"; record "link ${veth}0"
    ip link set "${veth}1" netns "$ns"
    ip addr add "$host_ip/30" dev "${veth}0"; ip link set "${veth}0" up
    in_ns "$ns" ip addr add "$ns_ip/30" dev "${veth}1"
    in_ns "$ns" ip link set "${veth}1" up
    in_ns "$ns" ip link set lo up
    in_ns "$ns" ip route add default via "$host_ip"
}

sshd_up() {  # X N
    local x="$1" n="$2" ns; ns="$(ns_of "$x")"
    local d="$DIR/sshd-$x"
    mkdir -p "$d" && chmod 0700 "$d"
    ssh-keygen -q -t ed25519 -N "" -C "fleet $x" -f "$d/host_key"
    cat >"$d/sshd_config" <<CFG
ListenAddress $NET.$((OFF + 4 * n + 2))
Port $((BASE + 11))
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $DIR/client_key.pub
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
LogLevel VERBOSE
CFG
    mkdir -p /run/sshd
    /usr/sbin/sshd -t -f "$d/sshd_config"
    local pid; pid="$(python3 "$BG" start "$d/sshd.log" -- ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$d/sshd_config")"
    record "pid $pid sshd"
}

container_up() {
    "${DOCKER[@]}" rm --force "$CONTAINER" >/dev/null 2>&1 || true
    POSTGRES_PASSWORD="$(cat "$DIR/secrets/admin")" "${DOCKER[@]}" run --detach --name "$CONTAINER" --network host \
        --env POSTGRES_PASSWORD --env "PGPORT=$((BASE + 5))" "$RAT_LAB_PG_IMAGE" >/dev/null
    record "container $CONTAINER"
    for _ in $(seq 60); do
        "${DOCKER[@]}" exec "$CONTAINER" pg_isready -q -h 127.0.0.1 -p $((BASE + 5)) && break
        sleep 1
    done
    local psql=("${DOCKER[@]}" exec -i "$CONTAINER" psql -X -q -v ON_ERROR_STOP=1 -p $((BASE + 5)) -U postgres)
    printf "CREATE ROLE rat LOGIN CREATEDB PASSWORD '%s';\nCREATE DATABASE rat OWNER rat;\n" "$(cat "$DIR/secrets/rat")" \
        | "${psql[@]}" -d postgres
    { echo "SET ROLE rat;"; cat "$SEED_SQL"; } | "${psql[@]}" -d rat >/dev/null
}

wait_all() {  # every background job must succeed (plain `wait` would hide a failure)
    local pid rc=0
    for pid in $(jobs -p); do wait "$pid" || rc=1; done
    ((rc == 0)) || { echo "fleet.sh: a setup step failed" >&2; exit 1; }
}

up() {
    mkdir -p "$DIR/secrets" && chmod 0700 "$DIR" "$DIR/secrets"
    : >"$STATE"
    PGROOT="$(mktemp -d "/tmp/rat-$PREFIX-pg.XXXXXX")"; chmod 0755 "$PGROOT"; chown postgres:postgres "$PGROOT"; record "pgroot $PGROOT"
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' >"$DIR/secrets/admin"
     python3 -c 'import secrets; print(secrets.token_hex(16))' >"$DIR/secrets/rat")
    ssh-keygen -q -t ed25519 -N "" -C "fleet client" -f "$DIR/client_key"
    local i=1
    for x in a b c; do pg_init_start "$x" $((BASE + i)) & i=$((i + 1)); done
    netns_up d 0; netns_up e 1
    pg_init_start d $((BASE + 4)) "$(ns_of d)" &
    container_up &
    wait_all
    i=1
    for x in a b c; do seed_cluster $((BASE + i)) & i=$((i + 1)); done
    seed_cluster $((BASE + 4)) "$(ns_of d)" &
    wait_all
    sshd_up d 0; sshd_up e 1
    local pid; pid="$(python3 "$BG" start "$DIR/relay.log" -- "$RAT_LAB_PYTHON" "$HERE/relay.py" --to "${RAT_LAB_S3_ENDPOINT#http://}" \
        "$NET.$((OFF + 1)):$((BASE + 10))" "$NET.$((OFF + 5)):$((BASE + 10))")"
    record "pid $pid python"
    for x in a b c d e; do
        "$RAT_LAB_PYTHON" "$S3_FIXTURE" create "$PREFIX-$x-rat" --versioned --objects 20 >/dev/null
        record "bucket $PREFIX-$x-rat"
    done
    inventory
}

inventory() {  # DIR/fleet.yml: the five hosts, secrets read from 0600 files
    (umask 077; printf '%s\n' "$RAT_LAB_S3_SECRET_KEY" >"$DIR/secrets/s3")
    local ssh_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    cat >"$DIR/fleet.yml" <<INV
# Written by fleet.sh: five RAT hosts, three local and two over SSH in network namespaces.
all:
  vars:
    ansible_python_interpreter: $RAT_LAB_PYTHON
    rat_postgres_host: 127.0.0.1
    rat_postgres_user: rat
    rat_postgres_password: "{{ lookup('ansible.builtin.file', '$DIR/secrets/rat') }}"
    rat_postgres_database: rat
    rat_minio_access_key: $RAT_LAB_S3_ACCESS_KEY
    rat_minio_secret_key: "{{ lookup('ansible.builtin.file', '$DIR/secrets/s3') }}"
    rat_minio_region: us-east-1
    rat_backup_root: $DIR/{{ inventory_hostname }}/backups
  children:
    local:
      vars:
        ansible_connection: local
        rat_minio_endpoint: $RAT_LAB_S3_ENDPOINT
      hosts:
        $PREFIX-a: {rat_postgres_port: $((BASE + 1)), rat_minio_buckets: [$PREFIX-a-rat]}
        $PREFIX-b: {rat_postgres_port: $((BASE + 2)), rat_minio_buckets: [$PREFIX-b-rat]}
        $PREFIX-c: {rat_postgres_port: $((BASE + 3)), rat_minio_buckets: [$PREFIX-c-rat]}
    ssh:
      vars:
        ansible_connection: ssh
        ansible_port: $((BASE + 11))
        ansible_user: root
        ansible_ssh_private_key_file: $DIR/client_key
        ansible_ssh_common_args: $ssh_args
        ansible_remote_tmp: $DIR/remote-tmp
      hosts:
        $PREFIX-d:
          ansible_host: $NET.$((OFF + 2))
          rat_postgres_port: $((BASE + 4))
          rat_minio_endpoint: http://$NET.$((OFF + 1)):$((BASE + 10))
          rat_minio_buckets: [$PREFIX-d-rat]
        $PREFIX-e:
          ansible_host: $NET.$((OFF + 6))
          rat_postgres_port: $((BASE + 5))
          rat_postgres_container: $CONTAINER
          rat_postgres_docker_host: $RAT_LAB_DOCKER_HOST
          rat_minio_endpoint: http://$NET.$((OFF + 5)):$((BASE + 10))
          rat_minio_buckets: [$PREFIX-e-rat]
INV
    chmod 0600 "$DIR/fleet.yml"
}

# Ends what still runs in namespace $1 (all of it started by `up` or by the tests through it): an
# sshd session outlives its listener, and once the namespace's link is gone its client's FIN never
# arrives, so it would wait forever.
ns_empty() {
    local pids tries=50
    pids="$(ip netns pids "$1" 2>/dev/null)" || return 0
    [[ -n "$pids" ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    while ((tries-- > 0)) && [[ -n "$(ip netns pids "$1" 2>/dev/null)" ]]; do sleep 0.1; done
    pids="$(ip netns pids "$1" 2>/dev/null)" || return 0
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
}

down() {
    [[ -f "$STATE" ]] || return 0
    local kind a b pgroot=""
    pgroot="$(awk '$1 == "pgroot" {print $2}' "$STATE")"
    # Reverse order: what started last stops first.
    tac "$STATE" | while read -r kind a b; do
        case "$kind" in
            pid) if [[ "$(cat "/proc/$a/comm" 2>/dev/null)" == "$b" || "$(cat "/proc/$a/comm" 2>/dev/null)" == ip ]]; then
                     kill -TERM -- "-$a" 2>/dev/null || kill -TERM "$a" 2>/dev/null || true
                 fi ;;
            bucket) "$RAT_LAB_PYTHON" "$S3_FIXTURE" remove "$a" >/dev/null || true ;;
            container) "${DOCKER[@]}" rm --force "$a" >/dev/null 2>&1 || true ;;
            pg) if [[ -n "$b" ]]; then (cd / && in_ns "$b" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgroot/$a/data" -m immediate -w stop) >/dev/null 2>&1 || true
                else as_postgres "$PGBIN/pg_ctl" -D "$pgroot/$a/data" -m immediate -w stop >/dev/null 2>&1 || true; fi ;;
            link) ip link del "$a" 2>/dev/null || true ;;
            netns) ns_empty "$a"; ip netns del "$a" 2>/dev/null || true ;;
            pgroot) rm -rf "$a" ;;
        esac
    done
    rm -f "$STATE"
}

"$cmd"
