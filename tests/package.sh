#!/usr/bin/env bash
# The release as a new user meets it, run by `tests/run_tests.sh package`:
#
#   tests/package.sh COLLECTION_DIR WORK_DIR
#
# antsibull-changelog lint; versions stated once (requirements.txt, meta/runtime.yml and the
# execution environment agree); no placeholder URL; the tarball built, installed into an empty
# collections path and, from there by FQCN, `ansible-doc` of every module and role and
# `ansible-playbook --syntax-check` of every playbook (enumerated from the installed tree, so new
# ones are covered without editing this file; any warning fails); the execution environment's
# build context made by `ansible-builder create` with the tarball and the dependencies
# ansible-builder reads from the installed collection.
# Prints one "ok"/"FAIL" line per check and "package: N passed, N failed" last; exits 1 on failure.
set -euo pipefail

src="$(cd "$1" && pwd)"
work="$2"
bin="$(dirname "$(command -v ansible-doc)")"

# shellcheck source=tests/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

# Runs "$@" and fails when it fails, prints nothing or prints an Ansible or a Python warning (a
# dependency's "...Warning:" at import is printed by every command of a supported install).
quiet_ok() {
    local out
    out="$("$@" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    [[ -n "$out" ]] || { echo "no output"; return 1; }
    if grep -qE '\[WARNING\]|\[DEPRECATION WARNING\]|[A-Za-z]Warning: ' <<<"$out"; then
        printf '%s\n' "$out"
        return 1
    fi
}

versions_agree() {
    "$bin/python" - "$src" <<'EOF'
import re
import sys

import yaml

src = sys.argv[1]
reqs = [line.strip() for line in open(src + '/requirements.txt', encoding='utf-8')
        if re.match(r'ansible-core\b', line)]
assert len(reqs) == 1, 'requirements.txt must name ansible-core once: %r' % reqs
m = re.fullmatch(r'ansible-core>=([\d.]+),<([\d.]+)', reqs[0])
assert m, 'requirements.txt: expected ansible-core>=X,<Y, got %r' % reqs[0]
low, high = m.groups()
pad = lambda v: '.'.join((v.split('.') + ['0', '0'])[:3])
want = '>=%s,<%s' % (pad(low), pad(high))
runtime = yaml.safe_load(open(src + '/meta/runtime.yml', encoding='utf-8'))['requires_ansible']
assert runtime == want, 'meta/runtime.yml requires_ansible %r, requirements.txt says %r' % (runtime, want)
ee = yaml.safe_load(open(src + '/execution-environment.yml', encoding='utf-8'))
ee_core = ee['dependencies']['ansible_core']['package_pip']
assert ee_core == reqs[0], 'execution-environment.yml ansible-core %r, requirements.txt %r' % (ee_core, reqs[0])
print('ansible-core', want)
EOF
}

no_placeholder_urls() {
    ! grep -nE 'example\.(invalid|com)/|https?://github\.com/?[)" ]|https?://github\.com/?$|TODO|FIXME' \
        "$src/galaxy.yml" "$src/README.md" "$src"/docs/*.md "$src"/roles/*/README.md
}

# The docs stand alone: no file of the collection points to a design note or a folder outside the
# repository (the pattern below), which a user of the release never has. Only the pattern names
# them, so this file does not trip the same search run over the whole repository.
stands_alone() {
    ! grep -rnIE 'DESIGN(\.md|\b)|\.\./shared\b' "$src" --exclude-dir=.git --exclude-dir=tests \
        --exclude-dir=.venv --exclude-dir=.venv-lowest --exclude-dir=collections --exclude-dir=.lab
}

license_matches() {
    grep -q 'GNU GENERAL PUBLIC LICENSE' "$src/LICENSE" && grep -q 'Version 3' "$src/LICENSE" \
        && grep -qx '  - GPL-3.0-or-later' "$src/galaxy.yml"
}

check "antsibull-changelog lint" bash -c "cd '$src' && '$bin/antsibull-changelog' lint"
check "versions stated once (requirements.txt = meta/runtime.yml = execution-environment.yml)" versions_agree
check "no placeholder URL in galaxy.yml, README.md, docs/, roles/*/README.md" no_placeholder_urls
check "LICENSE is the GPL v3 and galaxy.yml says GPL-3.0-or-later" license_matches
check "docs stand alone: nothing points to a design note or folder outside the repository" stands_alone

mkdir -p "$work/dist" "$work/clean" "$work/empty"
check "ansible-galaxy collection build" "$bin/ansible-galaxy" collection build --output-path "$work/dist" "$src"
tarball="$(find "$work/dist" -name 'rat-backup-*.tar.gz' | head -n1)"
if [[ -z "$tarball" ]]; then
    printf 'package: %d passed, %d failed\n' "$passed" "$((failed + 1))"
    exit 1
fi
check "the tarball carries no lab state, virtualenv or test output" \
    bash -c "! tar tzf '$tarball' | grep -E '^(\\.lab|\\.venv|\\.git|collections|dist|context|tests/output)(/|\$)'"
# Only the clean install is visible from here on: no ansible.cfg (a clone's would find the
# checkout through collections/), no other collections path.
printf '[defaults]\n' >"$work/empty/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$work/clean" ANSIBLE_CONFIG="$work/empty/ansible.cfg" ANSIBLE_NOCOLOR=1
cd "$work/empty"
installed="$work/clean/ansible_collections/rat/backup"
check "ansible-galaxy collection install into an empty path" \
    bash -c "'$bin/ansible-galaxy' collection install --offline -p '$work/clean' '$tarball' && test -s '$installed/MANIFEST.json'"

shopt -s nullglob
modules=("$installed"/plugins/modules/*.py)
roles=("$installed"/roles/*/)
playbooks=("$installed"/playbooks/*.yml)
shopt -u nullglob
check "the installed collection has modules, roles and playbooks (${#modules[@]}/${#roles[@]}/${#playbooks[@]})" \
    test "${#modules[@]}" -gt 0 -a "${#roles[@]}" -gt 0 -a "${#playbooks[@]}" -gt 0

listed_modules() {
    "$bin/ansible-doc" -t module -l rat.backup | awk '{print $1}' | sort >"$work/listed"
    for m in "${modules[@]}"; do
        m="$(basename "$m" .py)"
        [[ "$m" == __init__ ]] || echo "rat.backup.$m"
    done | sort >"$work/files"
    test -s "$work/files" && diff -u "$work/files" "$work/listed"
}
check "ansible-doc -l rat.backup lists exactly the module files" listed_modules

for m in "${modules[@]}"; do
    m="$(basename "$m" .py)"
    [[ "$m" == __init__ ]] && continue
    check "ansible-doc rat.backup.$m" quiet_ok "$bin/ansible-doc" -t module "rat.backup.$m"
done
for r in "${roles[@]}"; do
    r="$(basename "$r")"
    check "ansible-doc -t role rat.backup.$r" quiet_ok "$bin/ansible-doc" -t role "rat.backup.$r"
done
for p in "${playbooks[@]}"; do
    p="$(basename "$p" .yml)"
    check "ansible-playbook --syntax-check rat.backup.$p" \
        quiet_ok "$bin/ansible-playbook" -i "localhost," --syntax-check "rat.backup.$p"
done

# The typo guard, from the installed collection: a misspelled variable fails the play before the
# role lists or touches anything; the same run spelled right gets past it.
typo_guard() {
    local out rc=0 args=(-i "localhost," -c local -e "ansible_python_interpreter=$bin/python"
        -e rat_postgres_password=unused -e rat_minio_access_key=unused -e rat_minio_secret_key=unused
        -e "rat_backup_root=$work/typo-root")
    mkdir -p "$work/typo-root"
    out="$("$bin/ansible-playbook" "${args[@]}" -e rat_restore_backpu=latest rat.backup.restore 2>&1)" || rc=$?
    printf '%s\n' "$out"
    ((rc != 0)) && grep -q 'unknown rat_\* variable: rat_restore_backpu (did you mean rat_restore_backup?)' <<<"$out" \
        && grep -q "ok=2 .*failed=1" <<<"$out" || return 1  # ok=2: the argument validations only (connection's, the role's)
    out="$("$bin/ansible-playbook" "${args[@]}" -e rat_backup_max_age_hours=1 rat.backup.list_backups 2>&1)" \
        || { printf '%s\n' "$out"; return 1; }
    out="$("$bin/ansible-playbook" "${args[@]}" -e rat_backup_max_age_hour=1 rat.backup.list_backups 2>&1)" && return 1
    grep -q 'did you mean rat_backup_max_age_hours?' <<<"$out"
}
check "typo guard: rat_restore_backpu=latest fails with did you mean, the right names pass" typo_guard

# Tags that would split a backup, or restore without verifying, are refused before anything runs.
tag_selections() {
    local out args=(-i "localhost," -c local -e "ansible_python_interpreter=$bin/python"
        -e rat_postgres_password=unused -e rat_minio_access_key=unused -e rat_minio_secret_key=unused
        -e "rat_backup_root=$work/typo-root")
    out="$("$bin/ansible-playbook" "${args[@]}" --tags rat_dump rat.backup.backup 2>&1)" && return 1
    grep -q 'select rat_dump of the backup role' <<<"$out" || { printf '%s\n' "$out"; return 1; }
    out="$("$bin/ansible-playbook" "${args[@]}" --skip-tags rat_mirror rat.backup.backup 2>&1)" && return 1
    grep -q 'select rat_preflight, rat_dump, rat_commit of the backup role' <<<"$out" || { printf '%s\n' "$out"; return 1; }
    out="$("$bin/ansible-playbook" "${args[@]}" --skip-tags rat_verify -e rat_restore_backup=latest \
        -e rat_restore_confirm=localhost rat.backup.restore 2>&1)" && return 1
    grep -q 'a restore always verifies the backup first' <<<"$out" || { printf '%s\n' "$out"; return 1; }
    "$bin/ansible-playbook" "${args[@]}" --list-tasks --tags rat_verify rat.backup.restore | grep -q 'Preflight.*rat_verify'
}
check "tags: a selection splitting a backup or skipping the verification is refused" tag_selections

# The AWX files: valid JSON, and every variable they set is one the roles or playbooks read.
awx_files() {
    "$bin/python" - "$src" "$installed" <<'EOF2'
import glob
import json
import sys

sys.path.insert(0, sys.argv[2] + '/../../..')
from ansible_collections.rat.backup.plugins.action import check_vars  # noqa: E402

known = check_vars.known_variables(sys.argv[2])
names = []
cred = json.load(open(sys.argv[1] + '/awx/credential_type.json', encoding='utf-8'))
names += list(cred['injectors']['extra_vars'])
secret = {f['id'] for f in cred['inputs']['fields'] if f.get('secret')}
assert {'postgres_password', 'minio_secret_key'} <= secret, secret
for path in sorted(glob.glob(sys.argv[1] + '/awx/surveys/*.json')):
    names += [q['variable'] for q in json.load(open(path, encoding='utf-8'))['spec']]
unknown = [n for n in names if n not in known]
assert not unknown, 'AWX files set variables no role reads: %s' % unknown
print(len(names), 'variables checked')
EOF2
}
check "awx/: credential type and surveys set only variables the roles read" awx_files

ee_context() {
    mkdir -p "$work/ee/dist"
    cp "$src/execution-environment.yml" "$work/ee/"
    cp "$tarball" "$work/ee/dist/"
    (cd "$work/ee" && "$bin/ansible-builder" create --file execution-environment.yml \
        --context context --output-filename Containerfile)
    test -s "$work/ee/context/Containerfile"
    test -s "$work/ee/context/_build/rat-backup/$(basename "$tarball")"
    grep -q 'rat-backup.tar.gz' "$work/ee/context/_build/requirements.yml"
}
check "ansible-builder create: EE build context with the tarball" ee_context

# What ansible-builder will install in the image for this collection, read from the installed copy.
ee_introspect() {
    local out
    out="$("$bin/ansible-builder" introspect "$work/clean")"
    printf '%s\n' "$out"
    grep -q "^- 'boto3" <<<"$out" && grep -q "^- 'docker" <<<"$out" \
        && grep -q "^- 'postgresql-client \[platform:dpkg\]" <<<"$out" && ! grep -q "^- 'ansible-core" <<<"$out"
}
check "ansible-builder introspect: boto3, docker and the PostgreSQL client from the collection" ee_introspect

printf 'package: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
