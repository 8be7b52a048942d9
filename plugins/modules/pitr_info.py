#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pitr_info
short_description: Show the point-in-time recovery window of the host's PostgreSQL (Barman)
version_added: 0.2.0
description:
  - Reads Barman's base backups, its newest archived WAL segment and its WAL receiver's lag, and returns how
    far back (O(ignore:earliest)) and how recent (O(ignore:latest)) a recovery with M(rat.backup.pitr_recover) can reach.
  - With O(metrics_dir), also writes them as a Prometheus textfile (C(rat_backup_pitr.prom)) for node_exporter,
    beside the backup's own C(rat_backup.prom).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.barman
options:
  metrics_dir:
    description: node_exporter textfile collector directory; empty writes no file.
    type: path
    default: ""
  host_label:
    description: Value of the C(host) label of the metrics.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    details:
      - Reads only; the metrics file is not written in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: rat.backup.pitr_setup
  - module: rat.backup.pitr_recover
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: How far back can PostgreSQL be recovered?
  rat.backup.pitr_info:
    metrics_dir: /var/lib/node_exporter/textfile
    host_label: "{{ inventory_hostname }}"
  register: pitr
"""

RETURN = r"""
earliest:
  description: Earliest recoverable time (end of the oldest base backup), null without a base backup.
  returned: always
  type: str
  sample: "2026-12-06T02:00:41Z"
latest:
  description: Latest recoverable time - now while the WAL stream runs with less than a segment of lag, else the
    time the newest WAL segment was archived.
  returned: always
  type: str
  sample: "2026-12-06T14:03:07Z"
window_seconds:
  description: Seconds between O(ignore:earliest) and O(ignore:latest).
  returned: always
  type: int
  sample: 43346
streaming:
  description: Whether Barman's WAL receiver is connected to the server.
  returned: always
  type: bool
lag_bytes:
  description: WAL written by the server and not yet flushed by the receiver (null when not streaming).
  returned: always
  type: int
  sample: 0
archived_wal:
  description: Newest WAL segment in Barman's archive.
  returned: always
  type: str
  sample: "000000010000000000000013"
archived_at:
  description: When it was archived.
  returned: always
  type: str
base_backups:
  description: Barman's finished base backups, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Barman's backup id.
      type: str
    end:
      description: When the base backup ended.
      type: str
metrics_file:
  description: Path of the textfile written.
  returned: when O(metrics_dir) is set, not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.pitr import barman, status
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = barman.engine_argspec()
    spec.update(metrics_dir=dict(type="path", default=""), host_label=dict(type="str", default=""))
    return spec


def run(module):
    now = fs.utcnow()
    result, found = status.status(barman.engine_from_params(module), now)
    if module.params["metrics_dir"] and not module.check_mode:
        result["metrics_file"] = status.write_metrics(module.params["metrics_dir"], module.params["host_label"],
                                                      found, now)
    return dict(result, changed=False)


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
