#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_compare
short_description: Compare live PostgreSQL and S3 with a RAT backup's manifest
version_added: 0.1.0
description:
  - Counts the rows of every table the backup's manifest records (counted at the dump's snapshot)
    in the live database, and lists every bucket of the backup on the live S3 endpoint, then
    reports tables whose row count differs or is missing and objects missing, extra or of another size.
  - The restore role runs it after a restore, so the result says what was verified.
  - The live S3 endpoint is given by the C(dest_*) options (the destination of the restore).
  - It only reads; it is independent of the modules that restored, so it checks them.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.attributes.INFO_MODULE
  - rat.backup.postgres
  - rat.backup.s3.DEST
attributes:
  diff_mode:
    support: full
    details:
      - Returns what differs as a diff of the live state (before) against the backup (after), one line per
        table (row count) or object (size, MD5, sha256; objects the backup lacks when O(exact)), which is what a
        restore would change. Tables the backup lacks are not listed, a restore keeps them.
      - Ansible prints a diff only for a changed result; the restore role's check-mode plan task is marked
        changed when anything differs.
options:
  path:
    description: The backup directory whose C(manifest.json) is the reference.
    type: path
    required: true
  components:
    description: What to compare.
    type: list
    elements: str
    choices: [postgres, minio]
    default: [postgres, minio]
  exact:
    description: Objects the backup does not have count as differences (a pruned restore); when false they are only listed.
    type: bool
    default: true
  bucket_map:
    description:
      - "The backup was restored into buckets of other names: C({backup bucket: live bucket}), as
        M(rat.backup.bucket_mirror) O(rat.backup.bucket_mirror#module:bucket_map) restored it. Buckets not in
        the map are compared under their own names."
    type: dict
    default: {}
    version_added: 0.1.0
  checksums:
    description:
      - Also read every object back from S3 and compare its sha256 with the manifest (a full
        download of the backup's objects, which is what a restore drill proves). Off, objects are
        compared by key and size.
    type: bool
    default: false
    version_added: 0.1.0
  concurrency:
    description: Parallel object reads for O(checksums).
    type: int
    default: 8
    version_added: 0.1.0
  checks:
    description:
      - Health queries run in the database after the row counts (with C(postgres) in O(components)),
        each a dict with C(name) and C(sql). A check passes when its query returns one row holding
        true, for example C(SELECT count(*) > 0 FROM pipelines).
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
  fail_on_error:
    description: Fail when anything differs; when false, return RV(ok=false).
    type: bool
    default: true
notes:
  - Without O(checksums) objects are compared by key and size (a byte-level check downloads every
    object); byte equality is then what the backup's sha256 and bucket_mirror's transfer checks guarantee.
requirements:
  - C(psql) on the managed host when C(postgres) is compared (see M(rat.backup.pg_dump) for the version)
  - in container mode (O(container)) instead, the Docker SDK for Python (C(docker)) on the managed host (the
    client programs run in the container)
  - boto3 (with botocore) on the managed host when C(minio) is compared
seealso:
  - module: rat.backup.backup_verify
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Check the restored host against the backup
  rat.backup.backup_compare:
    path: /var/backups/rat/20260216_093000
    host: 127.0.0.1
    password: "{{ rat_postgres_password }}"
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"

- name: Prove a drill restore, reading every object back and running health queries
  rat.backup.backup_compare:
    path: /var/backups/rat/20260216_093000
    database: rat_drill_20260217_020000
    password: "{{ rat_postgres_password }}"
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"
    bucket_map: {rat: rat-drill-20260217-020000-rat}
    checksums: true
    checks:
      - {name: pipelines are listed, sql: "SELECT count(*) > 0 FROM pipelines"}

- name: What a restore would change (run with --check --diff), without failing on differences
  rat.backup.backup_compare:
    path: /var/backups/rat/20260216_093000
    components: [postgres]
    container: rat-postgres-1
    password: "{{ rat_postgres_password }}"
    fail_on_error: false
  register: live_vs_backup
"""

RETURN = r"""
ok:
  description: True when everything compared is equal.
  returned: always
  type: bool
  sample: true
postgres:
  description: Row count comparison (C(tables), C(rows), C(mismatched), C(missing_tables), C(extra_tables)).
  returned: when postgres is compared
  type: dict
  sample: {"ok": true, "tables": 9, "rows": 50210, "mismatched": [], "missing_tables": [], "extra_tables": []}
minio:
  description:
    - Object comparison (C(buckets), C(objects), C(missing), C(extra), C(size_differs), C(etag_checked),
      C(etag_differs)), with O(checksums) also C(checksummed) (objects read back) and C(sha256_differs).
    - C(absent_buckets) lists the buckets that do not exist on the endpoint (a rebuilt host before its restore);
      all their objects count as missing, and C(--diff) shows one line per such bucket
      (C(bucket will be created, N objects uploaded)) instead of one per object.
    - Every object is compared by key and size. Objects up to 16 MiB whose manifest ETag is the MD5 of their
      content (single-part uploads) are also compared by the ETag the server reports (C(etag_checked) of them);
      larger objects are restored in parts, whose ETag the manifest cannot predict.
  returned: when minio is compared
  type: dict
  sample: {"ok": true, "buckets": ["rat"], "objects": 1043, "missing": [], "extra": [], "size_differs": [],
           "etag_checked": 1040, "etag_differs": [], "absent_buckets": []}
checks:
  description: Outcome of each of O(checks) (C(name), C(ok), C(output)).
  returned: when postgres is compared
  type: list
  elements: dict
  sample: [{"name": "pipelines are listed", "ok": true, "output": "t"}]
diff:
  description: With C(--diff), the differences (see the C(diff_mode) attribute), also when nothing differs.
  returned: in diff mode
  type: dict
  sample: {"before": "table public.runs: 1200 rows\n", "after": "table public.runs: 1187 rows\ns3://rat/x.csv: 12 bytes\n",
           "before_header": "live: PostgreSQL database rat, S3 http://127.0.0.1:9000", "after_header": "backup /var/backups/rat/20260216_093000"}
verified:
  description: One sentence per component saying what was checked.
  returned: always
  type: list
  elements: str
  sample: ["PostgreSQL: row counts of 9 tables equal the manifest (50210 rows)"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import compare
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(s3.connection_argspec("dest_"))
    spec.update(
        path=dict(type="path", required=True),
        components=dict(type="list", elements="str", choices=["postgres", "minio"], default=["postgres", "minio"]),
        exact=dict(type="bool", default=True),
        bucket_map=dict(type="dict", default={}),
        checksums=dict(type="bool", default=False),
        concurrency=dict(type="int", default=8),
        checks=dict(type="list", elements="dict", default=[]),
        fail_on_error=dict(type="bool", default=True),
    )
    return spec


def _limited(items, limit=10):
    return ", ".join(str(i) for i in items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def run(module):
    p = module.params
    compare.check_list(p["checks"])
    data = mf.read(p["path"])
    result = {"changed": False, "verified": [], "ok": True}
    problems = []
    row_counts = rows = objects = None
    expected = []
    live_sides = []
    if "postgres" in p["components"]:
        pg = compare.require(data.get("postgres"), "postgres", p["path"])
        row_counts = pg.get("row_counts") or {}
        client = postgres.client_from_params(p)
        counts, live = compare.postgres_counts(client, list(row_counts))
        rows = compare.compare_rows(row_counts, counts, live)
        live_sides.append(f"PostgreSQL database {p['database']}")
        result["postgres"] = rows
        if rows["ok"]:
            result["verified"].append(f"PostgreSQL {p['database']}: row counts of {rows['tables']} tables equal the "
                                      f"manifest ({rows['rows']} rows)")
        else:
            mismatched = [f"{m['table']} expected {m['expected']} got {m['actual']}" for m in rows["mismatched"]]
            problems.append(f"PostgreSQL {p['database']}: mismatched {_limited(mismatched) or 'none'}; "
                            f"missing tables {_limited(rows['missing_tables']) or 'none'}")
        result["checks"] = compare.run_checks(client, p["checks"])
        failed = [f"{c['name']} ({c['output']})" for c in result["checks"] if not c["ok"]]
        if failed:
            problems.append(f"PostgreSQL {p['database']}: checks failed: {_limited(failed)}")
        elif result["checks"]:
            result["verified"].append(f"PostgreSQL {p['database']}: {len(result['checks'])} checks passed "
                                      f"({', '.join(c['name'] for c in result['checks'])})")
    if "minio" in p["components"]:
        if not s3.HAS_BOTO3:
            module.fail_json(msg=missing_required_lib("boto3"), exception=s3.BOTO3_IMPORT_ERROR)
        minio = compare.require(data.get("minio"), "minio", p["path"])
        side = s3.connect(p, "dest_")
        client, endpoint = side.client, side.endpoint
        expected = compare.renamed(minio["objects"], p["bucket_map"])
        buckets = {p["bucket_map"].get(b, b) for b in compare.manifest_buckets(minio)}
        # Buckets not there yet (a rebuilt host) hold nothing: every object of theirs is missing.
        absent = compare.absent_buckets(client, endpoint, buckets)
        listing = compare.list_buckets(client, endpoint, buckets - set(absent))
        live_sides.append(f"S3 {endpoint.name}")
        objects = compare.compare_objects(expected, listing, buckets)
        objects["absent_buckets"] = absent
        if not p["exact"]:
            objects["ok"] = not (objects["missing"] or objects["size_differs"] or objects["etag_differs"])
        if p["checksums"]:
            absent = set(objects["missing"]) | {d["object"] for d in objects["size_differs"]}
            present = [o for o in expected if f"s3://{o['bucket']}/{o['key']}" not in absent]
            objects["sha256_differs"] = compare.checksum_objects(client, endpoint, present, p["concurrency"])
            objects["checksummed"] = len(present)
            objects["ok"] = objects["ok"] and not objects["sha256_differs"]
        result["minio"] = objects
        if objects["ok"]:
            matched_by = "sha256 (read back)" if p["checksums"] else (
                f"size, {objects['etag_checked']} of them also by ETag (the MD5 of their content; the ETag of the "
                f"other {objects['objects'] - objects['etag_checked']}, written in parts, cannot be predicted)")
            result["verified"].append(
                f"S3 {endpoint.name}: {objects['objects']} objects in {len(buckets)} buckets match the manifest by "
                f"key and {matched_by}{', no extra objects' if p['exact'] else ''}")
        else:
            differs = {kind: _limited([d["object"] for d in objects.get(f"{kind}_differs", [])]) or "none"
                       for kind in ("size", "etag", "sha256")}
            problems.append(f"S3 {endpoint.name}: {'buckets absent ' + _limited(absent) + '; ' if absent else ''}"
                            f"missing {_limited(objects['missing']) or 'none'}; "
                            f"extra {_limited(objects['extra']) or 'none'}; size differs {differs['size']}; "
                            f"ETag differs {differs['etag']}"
                            f"{'; sha256 differs ' + differs['sha256'] if p['checksums'] else ''}")
    result["ok"] = not problems
    if module._diff:
        result["diff"] = compare.diff(row_counts, rows, expected, objects, p["exact"],
                                      "live: " + ", ".join(live_sides), "backup " + p["path"])
    if problems and p["fail_on_error"]:
        raise RatBackupError(f"live state differs from backup {p['path']}: {' | '.join(problems)}",
                             **{k: v for k, v in result.items() if k != "changed"})
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
