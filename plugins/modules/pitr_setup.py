#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pitr_setup
short_description: Enable point-in-time recovery of the host's PostgreSQL through Barman's WAL streaming
version_added: 0.2.0
description:
  - "With O(state=present): checks that the server allows WAL streaming (C(wal_level) replica or logical,
    C(max_wal_senders) at least 2, C(max_replication_slots) at least 1) and refuses naming the setting
    otherwise (the server's configuration is never changed: a stock container keeps its own); creates the
    replication role O(pitr_user) with the rights Barman needs (C(pg_read_all_settings), C(pg_read_all_stats),
    C(pg_checkpoint), EXECUTE on the backup functions) and the physical replication slot O(slot); writes
    Barman's configuration O(config) and the password file beside it (0600); starts the WAL receiver
    (C(barman cron)) and waits until it streams; takes a first base backup when Barman has none."
  - Check mode lists every change (SQL in words, files) and shows the configuration as a diff.
  - "With O(state=absent): stops the WAL receiver, drops the slot (else the server keeps WAL for it) and the
    role, removes O(config) and the password file. Barman's backups and WAL under O(home) are left."
  - The connection options are the admin login (a superuser, such as RAT's C(POSTGRES_USER)); in container mode
    the SQL runs in the container, while Barman connects to O(stream_host):O(stream_port) from this host.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.barman
  - rat.backup.postgres
options:
  state:
    description: Whether point-in-time recovery is enabled.
    type: str
    choices: [present, absent]
    default: present
  home:
    description: Barman's home (base backups, WAL archive, its log).
    type: path
    default: /var/lib/rat-backup/pitr
  pitr_user:
    description: Replication role Barman logs in as.
    type: str
    default: rat_barman
  pitr_password:
    description: Its password (kept in a 0600 file beside O(config), never in Barman's configuration).
    type: str
  slot:
    description: Physical replication slot of the WAL stream.
    type: str
    default: rat_barman
  stream_host:
    description: Address Barman connects to; default O(host).
    type: str
  stream_port:
    description: Port Barman connects to; default O(port).
    type: int
  retention:
    description:
      - Retention rules (the collection's C(keep_*) keys); Barman keeps base backups and WAL for the time they
        reach back (C(RECOVERY WINDOW OF n DAYS)), or C(REDUNDANCY n) for C(keep_last) alone. Empty keeps all.
    type: dict
    default: {}
  first_backup:
    description: Take a base backup now when Barman has none.
    type: bool
    default: true
  wait:
    description: Seconds to wait for the WAL receiver, a WAL segment, a base backup.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The configuration file as before/after; the SQL changes are listed in RV(plan).
  idempotent:
    support: full
notes:
  - Barman's own C(barman cron) must keep running (every minute) for the stream to restart after an outage;
    the C(rat.backup.pitr) role installs that cron line.
  - Barman 3.4's C(switch-wal) needs a superuser; this module switches WAL as O(pitr_user) instead, which may
    execute C(pg_switch_wal()).
seealso:
  - module: rat.backup.pitr_info
  - module: rat.backup.pitr_recover
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Stream this host's WAL to Barman
  rat.backup.pitr_setup:
    host: 127.0.0.1
    port: 5432
    user: rat
    password: "{{ rat_postgres_password }}"
    pitr_password: "{{ rat_pitr_password }}"
    retention: {keep_hourly: 120}
"""

RETURN = r"""
plan:
  description: The changes made (check mode - that would be made), in words.
  returned: always
  type: list
  elements: str
  sample: ["create role rat_barman (LOGIN REPLICATION)", "create physical replication slot rat_barman"]
retention_policy:
  description: Barman's retention policy written, null when everything is kept.
  returned: state=present
  type: str
  sample: RECOVERY WINDOW OF 5 DAYS
first_backup:
  description: Whether a first base backup was taken.
  returned: state=present
  type: bool
config:
  description: O(config).
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils.pitr import barman, server, setup
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(barman.engine_argspec())
    spec.update(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        home=dict(type="path", default="/var/lib/rat-backup/pitr"),
        pitr_user=dict(type="str", default="rat_barman"),
        pitr_password=dict(type="str", no_log=True),
        slot=dict(type="str", default="rat_barman"),
        stream_host=dict(type="str"),
        stream_port=dict(type="int"),
        retention=dict(type="dict", default={}),
        first_backup=dict(type="bool", default=True),
        wait=dict(type="int", default=120),
    )
    return spec


def _passfile(config):
    return os.path.splitext(config)[0] + ".pgpass"


def _bin_dir(p):
    if p["client_bin_dir"]:
        return p["client_bin_dir"]
    installed = postgres.installed_clients()
    if not installed:
        raise RatBackupError("no PostgreSQL client under /usr/lib/postgresql: install postgresql-client")
    return installed[max(installed)]


def _files(p, bin_dir, policy_text):
    host, port = p["stream_host"] or p["host"], p["stream_port"] or p["port"]
    passfile = _passfile(p["config"])
    config = barman.render_config(p["home"], p["server"], host, port, p["pitr_user"], passfile, p["slot"], bin_dir,
                                  policy_text)
    return [(p["config"], config), (passfile, barman.pgpass_line(host, port, p["pitr_user"], p["pitr_password"]))]


def _login(p):
    def login():
        conn = postgres.Connection(p["stream_host"] or p["host"], p["stream_port"] or p["port"], p["pitr_user"],
                                   "postgres", p["pitr_password"], p["connect_timeout"], p["ssl_mode"], p["ca_cert"])
        postgres.Client(postgres.Runner(), conn, p["client_bin_dir"]).open_session().close()
    return login


def present(module, session):
    p = module.params
    if not p["pitr_password"]:
        raise RatBackupError("pitr_password is required with state=present")
    server.require_superuser(session, p["user"])
    setup.refuse_settings(server.settings_problems(session))
    version = int(session.query("SELECT current_setting('server_version_num');")[0])
    changes = server.plan(session, p["pitr_user"], p["slot"], version)
    created = any(sql.startswith("CREATE ROLE") for _d, sql in changes)
    password_change = created or not setup.check_password(_login(p))
    bin_dir = _bin_dir(p)
    policy_text = barman.retention_policy(p["retention"])
    files = setup.file_changes(_files(p, bin_dir, policy_text))
    words = setup.describe_sql(changes, password_change, p["pitr_user"]) + [f"write {path}" for path, _t in files]
    result = {"plan": words, "retention_policy": policy_text, "config": p["config"], "first_backup": False}
    config_text = dict(files).get(p["config"])
    if config_text is not None:
        result["diff"] = setup.config_diff(p["config"], setup.read_text(p["config"]), config_text)
    if module.check_mode:
        return dict(result, changed=bool(words))
    server.apply(session, changes)
    if password_change:
        server.set_password(session, p["pitr_user"], p["pitr_password"])
    setup.write_files(files)
    os.makedirs(p["home"], mode=0o700, exist_ok=True)
    engine = barman.engine_from_params(module)
    setup.wait_streaming(engine, p["wait"])
    if p["first_backup"]:
        result["first_backup"] = setup.open_window(barman.module_runner(module), engine, bin_dir, p["wait"])
    return dict(result, changed=bool(words) or result["first_backup"])


def absent(module, session):
    p = module.params
    changes = server.removal(session, p["pitr_user"], p["slot"])
    paths = [path for path in (p["config"], _passfile(p["config"])) if os.path.exists(path)]
    words = [d for d, _sql in changes] + [f"remove {path}" for path in paths]
    if module.check_mode or not words:
        return {"changed": bool(words), "plan": words, "config": p["config"]}
    if os.path.exists(p["config"]):
        # The receiver holds the slot: it must stop before the slot can be dropped.
        barman.engine_from_params(module).call("receive-wal", "--stop", p["server"])
        server.wait_released(session, p["slot"], p["wait"])
    server.apply(session, changes)
    for path in paths:
        os.unlink(path)
    return {"changed": True, "plan": words, "config": p["config"]}


def run(module):
    # Rights on functions are per database: granted in the one Barman connects to (its conninfo's).
    session = postgres.client_from_params(module.params).open_session(barman.DATABASE)
    try:
        return (present if module.params["state"] == "present" else absent)(module, session)
    finally:
        session.close()


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
