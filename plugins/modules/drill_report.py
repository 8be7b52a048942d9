#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drill_report
short_description: Write the fleet report of a restore drill as JSON, JUnit XML and Markdown
version_added: 0.1.0
description:
  - "Takes the per-host results the restore_drill role records and writes C(<dest>/<basename>.json),
    C(<basename>.xml) (JUnit: one test case per host, failed with the drill's reason, for CI and
    AWX) and C(<basename>.md) (a table of host, backup, age, RTO, rows, objects, result, reason)."
  - A host in O(hosts) without a result is reported as failed (unreachable, or failed before its drill).
  - "Runs where the report should be, normally the controller (C(delegate_to: localhost))."
  - Files are replaced atomically (0600); the task reports a change when any content differs from before.
extends_documentation_fragment:
  - rat.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Renders and returns the report, writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  results:
    description: "C({host: result}) as the restore_drill role sets C(rat_drill_result) per host."
    type: dict
    required: true
  hosts:
    description: Every host the drill targeted; those missing from O(results) are failures.
    type: list
    elements: str
    default: []
  dest:
    description: Directory for the report files (created 0700 when missing).
    type: path
    required: true
  basename:
    description: File name without extension.
    type: str
    default: restore-drill
  started_at:
    description: When the drill started (shown in the reports).
    type: str
requirements:
  - nothing but Python 3.9 or newer where it runs (the restore_drill role runs it on the controller)
seealso:
  - module: rat.backup.drill_scratch
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Fleet report of the drill
  rat.backup.drill_report:
    results: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'rat_drill_result'))) }}"
    hosts: "{{ ansible_play_hosts_all }}"
    dest: /var/log/rat-drill
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: The report files, by format.
  returned: always
  type: dict
  sample: {"json": "/var/log/rat-drill/restore-drill.json", "xml": "/var/log/rat-drill/restore-drill.xml",
           "md": "/var/log/rat-drill/restore-drill.md"}
summary:
  description: C(hosts), C(passed), C(failed) and C(failed_hosts).
  returned: always
  type: dict
  sample: {"hosts": 5, "passed": 4, "failed": 1, "failed_hosts": ["rat-b"]}
hosts:
  description: One row per host, sorted by host.
  returned: always
  type: list
  elements: dict
  sample: [{"host": "rat-a", "status": "passed", "backup": "20260216_093000", "rto_seconds": 12.5, "reason": ""}]
markdown:
  description: The Markdown table, to show in the play's output.
  returned: always
  type: str
  sample: "| host | backup | ..."
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import drill_report
from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    return dict(
        results=dict(type="dict", required=True),
        hosts=dict(type="list", elements="str", default=[]),
        dest=dict(type="path", required=True),
        basename=dict(type="str", default="restore-drill"),
        started_at=dict(type="str"),
    )


def _current(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def run(module):
    p = module.params
    if not p["basename"] or "/" in p["basename"] or p["basename"].startswith("."):
        raise RatBackupError(f"basename={p['basename']!r} must be a plain file name")
    bad = sorted(h for h, r in p["results"].items() if r is not None and not isinstance(r, dict))
    if bad:
        raise RatBackupError(f"results of {', '.join(bad)} are not dicts (expected what restore_drill records per "
                             "host)")
    table = drill_report.rows(p["results"], p["hosts"])
    files = {fmt: os.path.join(p["dest"], f"{p['basename']}.{fmt}") for fmt in drill_report.RENDERERS}
    texts = {fmt: render(table, p["started_at"]) for fmt, render in drill_report.RENDERERS.items()}
    changed = any(_current(files[fmt]) != texts[fmt] for fmt in files)
    if changed and not module.check_mode:
        if os.path.lexists(p["dest"]) and not os.path.isdir(p["dest"]):
            raise RatBackupError(f"dest {p['dest']} exists and is not a directory", path=p["dest"])
        os.makedirs(p["dest"], mode=layout.DIR_MODE, exist_ok=True)
        for fmt, path in files.items():
            fs.write_text_atomic(path, texts[fmt])
    return {"changed": changed, "files": files, "summary": drill_report.summary(table), "hosts": table,
            "markdown": texts["md"]}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
