#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pitr_recover
short_description: Recover the host's PostgreSQL as of a point in time into a scratch server, through Barman
version_added: 0.2.0
description:
  - With O(state=present), restores the PostgreSQL cluster as it was at O(as_of) into O(scratch)/data and
    starts a PostgreSQL server on it on a free loopback port (or O(port)); the live server is not touched.
  - "The steps: the current WAL segment is switched as Barman's replication user, a restore point begins the next
    one (Barman archives a streamed segment once the next has begun) and C(barman cron) runs until the switched
    segment is archived (recovery to a time stops at the first commit after it, which must be in the archive);
    the base backup that ended last before O(as_of) is restored with C(barman recover --target-time
    --target-action promote); the tree is given to O(os_user); the server replays the WAL, stops before the
    first commit after O(as_of) and promotes."
  - Refused before anything is written when O(as_of) lies in the future, before the end of the oldest base
    backup, when O(scratch) exists and is not empty, or when this host has no server programs of the base
    backup's major version (the container's, in container mode).
  - The recovery point reached (the last transaction replayed) is read from the scratch server as O(user).
  - With O(state=absent), stops the scratch server and removes O(scratch).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.barman
options:
  state:
    description: Whether the scratch server should exist.
    type: str
    choices: [present, absent]
    default: present
  as_of:
    description:
      - The time to recover to, ISO 8601 (a time without a zone is UTC). Required with O(state=present).
    type: str
  scratch:
    description: Directory of the scratch server (data directory, socket, log); absent or empty.
    type: path
    required: true
  port:
    description: Loopback port of the scratch server; V(0) picks a free one.
    type: int
    default: 0
  os_user:
    description: System user that owns the recovered data directory and runs the scratch server.
    type: str
    default: postgres
  bin_dir:
    description:
      - Directory of the PostgreSQL server programs (C(postgres), C(pg_ctl), C(psql)) of the recovered cluster's
        major version; default C(/usr/lib/postgresql/<major>/bin) for the major version of the base backup.
      - "The scratch server runs on this host with these programs, also when the live server runs in a container:
        a base backup of another major version than these programs is refused, naming both (check mode too)."
    type: path
  user:
    description: Role to ask the scratch server its recovery point with (a role of the recovered cluster).
    type: str
    default: rat
  password:
    description: Password of O(user).
    type: str
  database:
    description: Database to connect to on the scratch server.
    type: str
    default: rat
  wal_timeout:
    description: Seconds to wait for the switched WAL segment to be archived.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
    details:
      - Checks O(as_of) against the base backups and names the one it would restore; nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - O(state=absent) twice reports no change the second time; O(state=present) refuses a non-empty O(scratch).
notes:
  - Barman runs as root (its configuration says so); PostgreSQL's own C(runuser) starts the server as O(os_user).
  - The recovered C(postgresql.conf) is the live server's; the scratch server overrides its port, listen address,
    socket directory and archiving. Preloaded libraries must be installed on this host too.
seealso:
  - module: rat.backup.pitr_setup
  - module: rat.backup.pitr_info
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: The database as it was at 14:03:07 UTC, on a scratch server
  rat.backup.pitr_recover:
    as_of: "2026-12-06T14:03:07Z"
    scratch: /var/tmp/rat-pitr
    user: rat
    password: "{{ rat_postgres_password }}"
  register: recovered

- name: Remove the scratch server
  rat.backup.pitr_recover:
    state: absent
    scratch: /var/tmp/rat-pitr
"""

RETURN = r"""
as_of:
  description: The time recovered to (UTC).
  returned: state=present
  type: str
  sample: "2026-12-06T14:03:07+00:00"
backup_id:
  description: Barman's id of the base backup restored (check mode - the one it would restore).
  returned: state=present
  type: str
  sample: 20261206T120000
postgresql_version:
  description: Major version of the recovered cluster (that of the base backup), which the scratch server runs.
  returned: state=present
  type: str
  sample: "15"
backup_end:
  description: When that base backup ended.
  returned: state=present
  type: str
  sample: "2026-12-06T12:00:41Z"
wal_segment:
  description: The WAL segment switched and waited for.
  returned: state=present, not in check mode
  type: str
  sample: "000000010000000000000013"
port:
  description: Loopback port of the scratch server.
  returned: state=present, not in check mode
  type: int
  sample: 41213
data_dir:
  description: Its data directory.
  returned: state=present, not in check mode
  type: str
  sample: /var/tmp/rat-pitr/data
reached:
  description:
    - Commit time of the last transaction replayed (UTC, microseconds), the recovery point reached; null when no
      transaction was replayed after the base backup.
  returned: state=present, not in check mode
  type: str
  sample: "2026-12-06T14:03:06.912311Z"
next_commit:
  description:
    - Commit time (UTC, microseconds) of the transaction recovery stopped before, the first commit after O(as_of)
      (from the scratch server's log); null when not known (the WAL ended first, or it stopped before an abort).
    - With RV(reached), it brackets the time - RV(reached) <= O(as_of) < RV(next_commit).
  returned: state=present, not in check mode
  type: str
  sample: "2026-12-06T14:03:08.104113Z"
  version_added: 0.2.0
seconds:
  description: Seconds from the WAL switch to the scratch server's start.
  returned: state=present, not in check mode
  type: float
  sample: 3.2
timings:
  description:
    - Seconds per step, in order - C(plan) (Barman's list of base backups, the server programs found), C(wal_switch)
      (switch and wait until archived), C(barman_recover) (base backup and WAL copied), C(chown), C(start)
      (C(pg_ctl -w), until the server accepts connections - it is consistent), C(promoted) (the rest of the replay,
      promotion, the recovery point read).
  returned: state=present, not in check mode
  type: dict
  sample: {plan: 0.41, wal_switch: 1.52, barman_recover: 6.8, chown: 0.2, start: 1.1, promoted: 9.3}
scratch:
  description: O(scratch).
  returned: always
  type: str
  sample: /var/tmp/rat-pitr
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import lake_pitr, postgres
from ansible_collections.rat.backup.plugins.module_utils.pitr import barman, recovery
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = barman.engine_argspec()
    spec.update(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        as_of=dict(type="str"),
        scratch=dict(type="path", required=True),
        port=dict(type="int", default=0),
        os_user=dict(type="str", default="postgres"),
        bin_dir=dict(type="path"),
        user=dict(type="str", default="rat"),
        password=dict(type="str", no_log=True),
        database=dict(type="str", default="rat"),
        wal_timeout=dict(type="int", default=120),
    )
    return spec


def _bin_dir(explicit):
    """The programs that stop a scratch server: bin_dir, else the newest install (any major stops it)."""
    if explicit:
        return explicit
    installed = postgres.installed_clients()
    if not installed:
        raise RatBackupError("no PostgreSQL server programs under /usr/lib/postgresql: install postgresql (the "
                             "major version of the live server) or set bin_dir")
    return installed[max(installed)]


def run(module):
    p = module.params
    run_command = barman.module_runner(module)
    if p["state"] == "absent":
        if module.check_mode:
            return {"changed": os.path.lexists(p["scratch"]), "scratch": p["scratch"]}
        changed = recovery.remove(run_command, _bin_dir(p["bin_dir"]), p["os_user"], p["scratch"])
        return {"changed": changed, "scratch": p["scratch"]}
    if not p["as_of"]:
        raise RatBackupError("as_of is required with state=present")
    moment = lake_pitr.parse_time(p["as_of"])
    engine = barman.engine_from_params(module)
    result = {"changed": True, "scratch": p["scratch"], "as_of": moment.isoformat()}
    laps = recovery.Laps(time.monotonic)
    chosen = recovery.plan(engine, moment, p["scratch"])
    # Checked in check mode too: a container of another major version than this host's programs is refused first.
    bin_dir = recovery.server_programs(run_command, chosen["major"], f"base backup {chosen['id']}", p["bin_dir"])
    if module.check_mode:
        return dict(result, backup_id=chosen["id"], backup_end=chosen["end"].isoformat(),
                    postgresql_version=chosen["major"])
    laps.lap("plan")
    done = recovery.recover(run_command, engine, chosen, moment, p["scratch"], bin_dir, p["os_user"], p["port"],
                            p["wal_timeout"], laps=laps)
    done["reached"] = recovery.reached(run_command, bin_dir, done["port"], p["user"], p["password"], p["database"],
                                       p["scratch"])
    # Read once the server has promoted: the stop is logged before the promotion.
    done["next_commit"] = recovery.next_commit(recovery.read_log(p["scratch"]))
    laps.lap("promoted")
    return dict(result, postgresql_version=chosen["major"], **done)


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
