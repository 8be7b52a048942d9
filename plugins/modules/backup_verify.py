#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Check a RAT backup directory against its manifest, with no server
version_added: 0.1.0
description:
  - Compares a backup directory with its C(manifest.json) and reports missing files, files whose
    size or sha256 differ (C(changed)), files the manifest does not know (C(extra)), symlinks and
    special files (never followed), and a database dump that C(pg_restore) cannot read.
  - A backup whose commit recorded C(manifest.json) (C(<root>/.status/<name>.commit.json)) also has
    C(manifest.json) itself checked against that record's size and sha256. One truncated or changed
    since the commit is reported in RV(changed_files), as a backup's start refuses to link from it.
  - O(mode=full) hashes every file and reads the whole dump (C(pg_restore --file=/dev/null));
    O(mode=quick) compares sizes and reads the dump's table of contents (C(pg_restore --list)).
  - No PostgreSQL or S3 server is contacted. The restore role runs it before touching anything.
extends_documentation_fragment:
  - rat.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies as usual; does not record the result.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  path:
    description:
      - The backup directory. Give either O(path), or O(root) and O(name).
    type: path
  root:
    description: Backup root of the host; with O(name).
    type: path
  name:
    description: Backup name (C(YYYYmmdd_HHMMSS)) or V(latest) under O(root). C(/) and C(..) are refused.
    type: str
  mode:
    description: V(full) (sha256 of every file, whole dump read) or V(quick) (sizes, dump TOC).
    type: str
    choices: [full, quick]
    default: full
  record:
    description:
      - Record the result in C(<root>/.status/<name>.verify.json) for M(rat.backup.backup_info).
        Bookkeeping only, so it does not count as a change. Needs O(root) and O(name).
      - Best effort. A read-only root (a snapshot, a read-only mount of the backups) gets no record and a
        warning that says so; the verification itself is unaffected.
    type: bool
    default: true
  fail_on_error:
    description: Fail when the backup is damaged (RV(bad) lists why). When false, return RV(ok=false) instead.
    type: bool
    default: true
  client_bin_dir:
    description:
      - Directory holding C(pg_restore). By default the client matching the dump's server major version
        (C(/usr/lib/postgresql/<N>/bin)), else the newest installed, else C(pg_restore) on PATH.
    type: path
notes:
  - When no C(pg_restore) is installed the dump is checked by size/sha256 only and RV(dump_checked) is false.
requirements:
  - C(pg_restore) on the managed host, of the dump's server major version or newer, to read the dump (without
    one the dump is checked by size and sha256 only and RV(dump_checked) is false)
seealso:
  - module: rat.backup.backup_info
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Verify the newest backup completely
  rat.backup.backup_verify:
    root: /var/backups/rat
    name: latest

- name: Quick check of one directory, reporting instead of failing
  rat.backup.backup_verify:
    path: /var/backups/rat/20260216_093000
    mode: quick
    fail_on_error: false
  register: check
"""

RETURN = r"""
ok:
  description: True when the directory matches its manifest and the dump is readable.
  returned: always
  type: bool
  sample: true
name:
  description: Backup name.
  returned: always
  type: str
  sample: 20260216_093000
backup_dir:
  description: Backup directory verified.
  returned: always
  type: str
  sample: /var/backups/rat/20260216_093000
mode:
  description: Verification mode used.
  returned: always
  type: str
  sample: full
files:
  description: Files the manifest lists.
  returned: always
  type: int
  sample: 1044
checked_bytes:
  description: Bytes hashed (full mode).
  returned: always
  type: int
  sample: 52428800
bad:
  description: One line per problem, C(<path>) then C(:) and the reason.
  returned: always
  type: list
  elements: str
  sample: ["minio/rat/a.csv: sha256 differs from the manifest"]
missing:
  description: Files the manifest lists that are absent.
  returned: always
  type: list
  elements: str
  sample: []
changed_files:
  description: Files whose size or sha256 differ, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "postgres/rat.dump", "reason": "size 100, manifest says 2000"}]
extra:
  description: Regular files the manifest does not list.
  returned: always
  type: list
  elements: str
  sample: []
symlinks:
  description: Symlinks found in the backup (never followed).
  returned: always
  type: list
  elements: str
  sample: []
special:
  description: Sockets, FIFOs and devices found in the backup.
  returned: always
  type: list
  elements: str
  sample: []
unreadable:
  description: Files that could not be read, and a dump pg_restore cannot read.
  returned: always
  type: list
  elements: dict
  sample: []
dump_checked:
  description: Whether pg_restore read the dump.
  returned: always
  type: bool
  sample: true
status_record:
  description:
    - The status record written for backup_info (C(<root>/.status/<name>.verify.json)), or null when
      none was written (O(record=false), O(path) given, check mode, or a read-only root, for which a
      warning says so; verifying and restoring from read-only backups works all the same).
  returned: always
  type: str
  sample: /var/backups/rat/.status/20260216_093000.verify.json
summary:
  description: Counts from the manifest (objects, bytes, tables, rows, buckets).
  returned: always
  type: dict
  sample: {"objects": 1043, "tables": 9}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    return dict(
        path=dict(type="path"),
        root=dict(type="path"),
        name=dict(type="str"),
        mode=dict(type="str", default="full", choices=["full", "quick"]),
        record=dict(type="bool", default=True),
        fail_on_error=dict(type="bool", default=True),
        client_bin_dir=dict(type="path"),
    )


def run(module):
    p = module.params
    if bool(p["path"]) == bool(p["root"] or p["name"]):
        raise RatBackupError("give either path, or root and name")
    if p["path"]:
        path = p["path"]
        name = os.path.basename(os.path.normpath(path))
        root = None
    else:
        if not (p["root"] and p["name"]):
            raise RatBackupError("root and name go together")
        entry = layout.select(p["root"], p["name"], "name")
        path, name, root = entry["path"], entry["name"], p["root"]
    if os.path.islink(path) or not os.path.isdir(path):
        raise RatBackupError(f"{path} is not a backup directory (missing, or a symlink)", path=path)
    data = mf.read(path)
    server_version = (data.get("postgres") or {}).get("server_version")
    reader = postgres.archive_reader(server_version, p["client_bin_dir"]) if data.get("postgres") else None
    checker = (lambda dump: reader.archive_problem(dump, quick=p["mode"] == "quick")) if reader else None
    # A backup's commit record sits in its root's .status/ (none for a copy elsewhere or an older backup).
    committed = mf.read_commit_record(root or os.path.dirname(os.path.normpath(path)), name) \
        if layout.time_of(name) else None
    result = mf.verify(path, data, p["mode"], checker, committed)
    result["changed_files"] = result.pop("changed")
    result.update(changed=False, name=name, backup_dir=path, dump_checked=bool(checker),
                  summary=mf.summary(data))
    if data.get("postgres") and not checker:
        module.warn(f"no pg_restore found: the dump of {path} was checked by size/sha256 only")
    result["status_record"] = None
    if p["record"] and root and not module.check_mode:
        result["status_record"], note = layout.write_status(root, name, "verify", {
            "verified_at": fs.iso(fs.utcnow()), "mode": p["mode"], "ok": result["ok"],
            "bad": result["bad"][:50]})
        if note:
            module.warn(note)
    if not result["ok"] and p["fail_on_error"]:
        shown = result["bad"][:20]
        more = len(result["bad"]) - len(shown)
        raise RatBackupError(f"backup {path} is damaged ({len(result['bad'])} "
                             f"problem{'' if len(result['bad']) == 1 else 's'}): "
                             f"{'; '.join(shown)}{f' and {more} more' if more else ''}",
                             **{k: v for k, v in result.items() if k != "changed"})
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
