#!/usr/bin/env bash
# The execution environment built and used, run by `tests/run_tests.sh ee` (needs the lab with
# Docker: lab/up.sh --docker):
#
#   tests/ee_image.sh COLLECTION_DIR WORK_DIR
#
# quay.io/centos/centos:stream9 cannot be pulled here, so the base image is made locally from this
# Debian host's packages (lab/docker.sh ee-base, as the lab makes its PostgreSQL image). The EE is
# then built by ansible-builder from execution-environment.yml with only what a local base needs
# changed (base image, its Python, no package manager to call: the base already has the PostgreSQL
# client bindep asks for); ansible-core, ansible-runner, boto3 and docker come from PyPI during the
# build. The backup playbook runs inside the image (uid 1000, as AWX runs it) against a database
# and a bucket of this test on the lab, and the backup it writes is checked from the host: every
# file against its manifest, rows and objects against the live database and bucket.
# Prints one "ok"/"FAIL" line per check and "ee: N passed, N failed" last; exits 1 on failure.
set -euo pipefail

src="$(cd "$1" && pwd)"
work="$2"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(dirname "$(command -v ansible-builder)")"
image=rat-backup-ee:test
db=ee_image
bucket=ee-image
# shellcheck source=/dev/null
source "$repo/.lab/env"
export DOCKER_HOST="$RAT_LAB_DOCKER_HOST"
fixtures="$src/tests/integration/targets/setup_backup_lab/files"

# shellcheck source=tests/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

psql_as() {
    local user="$1" password="$2" database="$3"
    shift 3
    PGPASSWORD="$password" "$RAT_LAB_PG_BIN/psql" -X -w -q -v ON_ERROR_STOP=1 -h "$RAT_LAB_PG_HOST" \
        -p "$RAT_LAB_PG_PORT" -U "$user" -d "$database" "$@"
}

cleanup() {
    psql_as "$RAT_LAB_PG_ADMIN_USER" "$RAT_LAB_PG_ADMIN_PASSWORD" postgres \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    "$bin/python" "$fixtures/s3_fixture.py" remove "$bucket" >/dev/null 2>&1 || true
}
trap cleanup EXIT

base_image() {
    docker image inspect rat-lab/ee-base:local >/dev/null 2>&1 || "$repo/lab/docker.sh" ee-base
}
check "local EE base image rat-lab/ee-base:local (from this host's packages)" base_image

ee_build() {
    mkdir -p "$work/dist"
    "$bin/ansible-galaxy" collection build "$src" --output-path "$work/dist" --force >/dev/null
    # The shipped definition with what a local base image changes, nothing else.
    "$bin/python" - "$src/execution-environment.yml" "$work/execution-environment.yml" <<'PY'
import sys
import yaml
ee = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))
ee['images']['base_image']['name'] = 'rat-lab/ee-base:local'
ee['dependencies']['python_interpreter'] = {'package_system': 'python3.11', 'python_path': '/opt/ee/bin/python3.11'}
ee.setdefault('options', {})['package_manager_path'] = '/usr/bin/rat-no-pkgmgr'
yaml.safe_dump(ee, open(sys.argv[2], 'w', encoding='utf-8'), sort_keys=False)
PY
    # The lab's dockerd has no bridge: build steps use the host's network (PyPI), legacy builder.
    (cd "$work" && DOCKER_BUILDKIT=0 "$bin/ansible-builder" build --file execution-environment.yml \
        --context context --tag "$image" --container-runtime docker --extra-build-cli-args "--network host" -v 2)
}
check "ansible-builder build: $image from execution-environment.yml on the local base" ee_build

fixture() {
    psql_as "$RAT_LAB_PG_ADMIN_USER" "$RAT_LAB_PG_ADMIN_PASSWORD" postgres \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER $RAT_LAB_PG_USER"
    psql_as "$RAT_LAB_PG_USER" "$RAT_LAB_PG_PASSWORD" "$db" \
        -c "CREATE TABLE items (id int PRIMARY KEY, v text)" \
        -c "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2500) g"
    "$bin/python" "$fixtures/s3_fixture.py" remove "$bucket" >/dev/null 2>&1 || true
    "$bin/python" "$fixtures/s3_fixture.py" create "$bucket" --versioned --objects 40 --size 30000  # and w/0..w/9
}
check "database $db and bucket $bucket of this test on the lab" fixture

# Inventory and secrets in a directory the image's user (uid 1000) owns; secrets in files only.
run_dir="$work/run"
backup_in_ee() {
    rm -rf "$run_dir"
    install -d -m 0700 "$run_dir"
    printf '%s' "$RAT_LAB_PG_PASSWORD" >"$run_dir/pg_password"
    printf '%s' "$RAT_LAB_S3_SECRET_KEY" >"$run_dir/s3_secret_key"
    cat >"$run_dir/inventory.yml" <<INV
all:
  hosts:
    rat-ee:
      ansible_connection: local
      ansible_python_interpreter: /opt/ee/bin/python3.11
      rat_postgres_host: $RAT_LAB_PG_HOST
      rat_postgres_port: $RAT_LAB_PG_PORT
      rat_postgres_user: $RAT_LAB_PG_USER
      rat_postgres_password: "{{ lookup('ansible.builtin.file', '/ee-test/pg_password') }}"
      rat_postgres_database: $db
      rat_minio_endpoint: $RAT_LAB_S3_ENDPOINT
      rat_minio_access_key: $RAT_LAB_S3_ACCESS_KEY
      rat_minio_secret_key: "{{ lookup('ansible.builtin.file', '/ee-test/s3_secret_key') }}"
      rat_minio_buckets: [$bucket]
      rat_backup_root: /ee-test/backups
INV
    chmod 0600 "$run_dir"/*
    chown -R 1000:0 "$run_dir"
    docker run --rm --network host --user 1000 -v "$run_dir:/ee-test" "$image" \
        ansible-playbook rat.backup.backup -i /ee-test/inventory.yml
}
check "ansible-playbook rat.backup.backup inside $image (uid 1000)" backup_in_ee

# Read from the host with the collection under test: the backup the EE wrote is complete and equal
# to the live database and bucket.
backup_checked() {
    local backup
    backup="$(find "$run_dir/backups" -mindepth 1 -maxdepth 1 -name '2*' -type d | sort | tail -n 1)"
    [[ -f "$backup/manifest.json" ]] || { echo "no complete backup in $run_dir/backups"; return 1; }
    cat >"$work/check.yml" <<'PLAY'
- name: The backup the EE wrote, read on the host
  hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Every file against the manifest, the whole dump read
      rat.backup.backup_verify:
        path: "{{ backup }}"
        mode: full
    - name: Rows and objects (read back, sha256) against the live database and bucket
      rat.backup.backup_compare:
        path: "{{ backup }}"
        host: "{{ pg_host }}"
        port: "{{ pg_port }}"
        user: "{{ pg_user }}"
        password: "{{ lookup('ansible.builtin.file', run_dir ~ '/pg_password') }}"
        database: "{{ db }}"
        dest_endpoint: "{{ s3_endpoint }}"
        dest_access_key: "{{ s3_access_key }}"
        dest_secret_key: "{{ lookup('ansible.builtin.file', run_dir ~ '/s3_secret_key') }}"
        checksums: true
      register: compared
    - name: All 2500 rows and 50 objects (40 data, 10 small) compared, every object read back
      ansible.builtin.assert:
        that:
          - compared.ok and compared.postgres.rows == 2500
          - compared.minio.objects == 50 and compared.minio.checksummed == 50
PLAY
    ANSIBLE_COLLECTIONS_PATH="$(dirname "$(dirname "$(dirname "$src")")")" "$bin/ansible-playbook" "$work/check.yml" \
        -e "backup=$backup run_dir=$run_dir db=$db pg_host=$RAT_LAB_PG_HOST pg_port=$RAT_LAB_PG_PORT" \
        -e "pg_user=$RAT_LAB_PG_USER s3_endpoint=$RAT_LAB_S3_ENDPOINT s3_access_key=$RAT_LAB_S3_ACCESS_KEY"
}
check "the backup written in the EE: every file matches its manifest, rows and objects equal the lab's" backup_checked

printf 'ee: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
