#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drill_scratch
short_description: Create and remove the scratch database and buckets of a restore drill
version_added: 0.1.0
description:
  - O(state=present) creates an empty database C(rat_drill_<YYYYmmdd_HHMMSS>) and one empty bucket
    C(rat-drill-<YYYYmmdd>-<HHMMSS>-<owner hash>-<n>-<bucket>) per bucket of the backup, beside the
    live ones, for the restore_drill role to restore into. Each is marked with O(owner) and the time,
    the database by its comment, a bucket by the marker object C(.rat-backup-drill.json) (no optional
    S3 API needed) and, where the server takes them, its tags as well.
  - A failure half-way still returns RV(scratch_database) and RV(bucket_map) of what was made, for
    O(state=absent) to remove.
  - "Both states first remove the leftovers of earlier drills it recognises as its own: marked
    scratch targets of the same O(owner) (a host's drills run one at a time), and those of any
    owner older than O(leftover_hours). Unmarked databases and buckets are never touched, whatever
    their names."
  - O(state=absent) removes the scratch targets named by O(database) and O(bucket_map) (only names
    of the drill patterns) and, with O(record), writes the drill's result as the status record
    C(<root>/.status/<name>.drill.json) that M(rat.backup.backup_info) shows, also when the removal failed.
  - O(database) is only the database to connect to; the scratch database is created beside it, so the
    PostgreSQL user needs C(CREATEDB). O(state=present) checks that first, in check mode too, and fails
    naming it.
  - Buckets are removed with every version where the server lists versions, and by the plain
    listing where it has no C(ListObjectVersions) (its buckets are unversioned).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.postgres
  - rat.backup.s3.CONNECTION
attributes:
  check_mode:
    support: full
    details:
      - Returns the names it would create and the leftovers it would remove, and checks that the
        PostgreSQL user may create databases; touches nothing.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - O(state=present) makes new scratch targets on every run (each drill its own); O(state=absent) is idempotent.
options:
  state:
    description: V(present) makes the scratch targets, V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description: Whose drill this is (the inventory host name); recorded on the scratch targets.
    type: str
    required: true
  components:
    description: Which scratch targets to handle.
    type: list
    elements: str
    choices: [postgres, minio]
    default: [postgres, minio]
  buckets:
    description: With O(state=present), the backup's buckets, each getting a scratch bucket.
    type: list
    elements: str
    default: []
  scratch_database:
    description: With O(state=absent), the scratch database to remove (a C(rat_drill_*) name).
    type: str
  bucket_map:
    description: "With O(state=absent), C({backup bucket: scratch bucket}) as O(state=present) returned it."
    type: dict
    default: {}
  keep:
    description:
      - "With O(state=present), mark the scratch database and buckets to be kept (a selective restore's scratch
        targets): no drill removes them as leftovers; they stay until O(state=absent) names them in
        O(scratch_database) and O(bucket_map)."
    type: bool
    default: false
    version_added: 0.2.0
  leftover_hours:
    description: Marked scratch targets of other owners older than this are leftovers too.
    type: float
    default: 24
  root:
    description: With O(record), the backup root of the drilled backup.
    type: path
  name:
    description: With O(record), the drilled backup's name.
    type: str
  record:
    description:
      - With O(state=absent), the drill's result to keep as C(<root>/.status/<name>.drill.json), with
        C(drilled_at) and C(scratch_removed) added. Bookkeeping only, so it does not count as a change.
    type: dict
requirements:
  - C(psql) on the managed host and a PostgreSQL user allowed to create databases (C(CREATEDB))
  - in container mode (O(container)) instead, the Docker SDK for Python (C(docker)) on the managed host (the
    client programs run in the container)
  - boto3 (with botocore) on the managed host
seealso:
  - module: rat.backup.backup_info
  - module: rat.backup.backup_compare
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Scratch targets for the drill
  rat.backup.drill_scratch:
    owner: "{{ inventory_hostname }}"
    buckets: [rat]
    host: 127.0.0.1
    password: "{{ rat_postgres_password }}"
    endpoint: http://127.0.0.1:9000
    access_key: "{{ rat_minio_access_key }}"
    secret_key: "{{ rat_minio_secret_key }}"
  register: scratch

- name: Remove them and record the result
  rat.backup.drill_scratch:
    state: absent
    owner: "{{ inventory_hostname }}"
    scratch_database: "{{ scratch.scratch_database }}"
    bucket_map: "{{ scratch.bucket_map }}"
    host: 127.0.0.1
    password: "{{ rat_postgres_password }}"
    endpoint: http://127.0.0.1:9000
    access_key: "{{ rat_minio_access_key }}"
    secret_key: "{{ rat_minio_secret_key }}"
    root: /var/backups/rat
    name: 20260216_093000
    record: {ok: true, rto_seconds: 42.1}
"""

RETURN = r"""
scratch_database:
  description: The scratch database (created, or to remove); null when postgres is not handled.
  returned: always, also in a failed result (what was made before the failure)
  type: str
  sample: rat_drill_20260216_100000
bucket_map:
  description: "C({backup bucket: scratch bucket}); after a failure half-way, the buckets made."
  returned: always, also in a failed result
  type: dict
  sample: {"rat": "rat-drill-20260216-100000-3f2a1c-0-rat"}
removed:
  description: What was removed (or would be, in check mode), leftovers of earlier drills included.
  returned: always
  type: dict
  sample: {"databases": ["rat_drill_20260215_100000"], "buckets": []}
leftovers:
  description: Leftovers of earlier drills among RV(removed).
  returned: always
  type: dict
  sample: {"databases": ["rat_drill_20260215_100000"], "buckets": []}
kept_databases:
  description: Every scratch database on the server marked to be kept (O(keep)), with its owner and creation time.
  returned: when postgres is handled
  type: list
  elements: dict
  sample: [{"database": "rat_drill_20260216_100000", "owner": "rat-lab", "started_at": "2026-02-16T10:00:00Z", "keep": true}]
kept_buckets:
  description: Every scratch bucket on the endpoint marked to be kept (O(keep)), with its owner and creation time.
  returned: when minio is handled
  type: list
  elements: dict
  sample: [{"bucket": "rat-drill-20260216-100000-3f2a1c-0-rat", "owner": "rat-lab", "started_at": "2026-02-16T10:00:00Z", "keep": true}]
record_path:
  description: The status record written, or null.
  returned: always
  type: str
  sample: /var/backups/rat/.status/20260216_093000.drill.json
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import drill
from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(s3.connection_argspec())
    spec.update(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        owner=dict(type="str", required=True),
        components=dict(type="list", elements="str", choices=["postgres", "minio"], default=["postgres", "minio"]),
        buckets=dict(type="list", elements="str", default=[]),
        scratch_database=dict(type="str"),
        bucket_map=dict(type="dict", default={}),
        keep=dict(type="bool", default=False),
        leftover_hours=dict(type="float", default=24),
        root=dict(type="path"),
        name=dict(type="str"),
        record=dict(type="dict"),
    )
    return spec


def _targets(module, p):
    """(PostgresScratch with its session, S3Scratch) for the components handled (None otherwise)."""
    pg = s3side = None
    if "postgres" in p["components"]:
        pg = drill.PostgresScratch(postgres.client_from_params(p).open_session())
    if "minio" in p["components"]:
        if not s3.HAS_BOTO3:
            module.fail_json(msg=missing_required_lib("boto3"), exception=s3.BOTO3_IMPORT_ERROR)
        side = s3.connect(p)
        s3side = drill.S3Scratch(side.client, side.endpoint)
    return pg, s3side


def _work(module, p, pg, s3side, now, result):
    owner, hours, check = p["owner"], p["leftover_hours"], module.check_mode
    mine_db = [p["scratch_database"]] if p["state"] == "absent" and p["scratch_database"] else []
    mine_buckets = sorted(p["bucket_map"].values()) if p["state"] == "absent" else []
    # This drill's own targets are removed by name, whatever a listing says (a listing may lag).
    if pg:
        marked = pg.marked()
        result["kept_databases"] = [dict(found, database=name) for name, found in sorted(marked.items())
                                    if (found or {}).get("keep") and name not in mine_db]
        result["leftovers"]["databases"] = drill.leftovers(marked, owner, now, hours, keep=mine_db)
        for name in result["leftovers"]["databases"] + mine_db:
            if check:
                if name in marked:
                    result["removed"]["databases"].append(name)
            elif pg.drop(name):
                result["removed"]["databases"].append(name)
    if s3side:
        marked = s3side.marked()
        result["kept_buckets"] = [dict(found, bucket=name) for name, found in sorted(marked.items())
                                  if (found or {}).get("keep") and name not in mine_buckets]
        result["leftovers"]["buckets"] = drill.leftovers(marked, owner, now, hours, keep=mine_buckets)
        for name in result["leftovers"]["buckets"] + mine_buckets:
            if (name in marked) if check else s3side.drop(name):
                result["removed"]["buckets"].append(name)
    if p["state"] == "present":
        result["changed"] = True
        planned = drill.bucket_map(now, owner, p["buckets"]) if s3side else {}
        if pg:
            # Before anything is made, and in check mode too: the one permission the drill needs.
            pg.require_createdb()
        if check:
            result["bucket_map"] = planned
            result["scratch_database"] = drill.database_name(now) if pg else None
        else:
            # Filled as each target is made: a failure half-way returns what to remove.
            result["bucket_map"], result["scratch_database"] = {}, None
            if pg:
                result["scratch_database"] = pg.create(now, owner, keep=p["keep"])
            if s3side:
                created = []
                try:
                    s3side.create(sorted(planned.values()), owner, now, created, p["keep"])
                finally:
                    result["bucket_map"] = {b: s for b, s in planned.items() if s in created}
    result["changed"] = result["changed"] or bool(result["removed"]["databases"] or result["removed"]["buckets"])


def run(module):
    p = module.params
    if p["record"] is not None and (p["state"] != "absent" or not (p["root"] and p["name"])):
        raise RatBackupError("record needs state=absent, root and name")
    if p["name"]:
        p["name"] = layout.check_name(p["name"], "name")
    if p["scratch_database"] and not drill.DATABASE_RE.match(p["scratch_database"]):
        raise RatBackupError(f"scratch_database={p['scratch_database']!r} is not a drill database name "
                             "(rat_drill_YYYYmmdd_HHMMSS)")
    bad = sorted(b for b in p["bucket_map"].values() if not (isinstance(b, str) and drill.BUCKET_RE.match(b)))
    if bad:
        raise RatBackupError(f"bucket_map holds names that are not drill buckets: {', '.join(map(str, bad))}")
    now = fs.utcnow()
    result = {"changed": False, "scratch_database": p["scratch_database"], "bucket_map": p["bucket_map"],
              "removed": {"databases": [], "buckets": []}, "leftovers": {"databases": [], "buckets": []},
              "record_path": None}
    pg = None
    failure = None
    try:
        pg, s3side = _targets(module, p)
        _work(module, p, pg, s3side, now, result)
    except RatBackupError as exc:
        failure = exc
        if p["state"] == "present" and exc.details.get("scratch_database"):
            result["scratch_database"] = exc.details["scratch_database"]
    finally:
        if pg:
            pg.session.close()
    if p["record"] is not None and not module.check_mode:
        record = dict(p["record"], drilled_at=fs.iso(now), scratch_removed=failure is None)
        if failure is not None:
            record["cleanup_error"] = failure.msg
        layout.write_status(p["root"], p["name"], "drill", record)
        result["record_path"] = os.path.join(p["root"], layout.STATUS_DIR, f"{p['name']}.drill.json")
    if failure is not None:
        # What was made before the failure, so the caller (the role's always:) removes it by name.
        raise RatBackupError(failure.msg, **dict(failure.details, removed=result["removed"],
                                                 record_path=result["record_path"],
                                                 scratch_database=result["scratch_database"],
                                                 bucket_map=result["bucket_map"]))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
