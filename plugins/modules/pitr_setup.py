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
  - "The replication line of C(pg_hba.conf): which line decides a replication connection of O(pitr_user) from
    the address the server sees this host connect from (asked over an admin connection from this host to
    O(stream_host):O(stream_port), which must reach the same cluster) is read from C(pg_hba_file_rules). When
    none does, the line C(host replication <pitr_user> <address>/32 scram-sha-256) (C(md5) when the server's
    C(password_encryption) is md5) is appended to the server's own C(pg_hba.conf) (in container mode inside the
    container, through the Docker Engine API) and C(SELECT pg_reload_conf()) applies it, no restart. With
    O(pg_hba=false) the run is refused naming that line. A first matching line that rejects, or wants a method
    other than a password (cert, ident...), is refused naming it and never edited."
  - "This host's PostgreSQL server programs of the server's major version must be installed (a recovery starts the
    recovered cluster with them, also when the server runs in a container): refused naming both versions."
  - Check mode lists every change (SQL in words, the pg_hba.conf line, files) and shows C(pg_hba.conf) and the
    configuration as diffs.
  - "With O(state=absent): stops the WAL receiver, drops the slot (else the server keeps WAL for it) and the
    role, removes O(config) and the password file. Barman's backups and WAL under O(home) are left."
  - The connection options are the admin login (a superuser, such as RAT's C(POSTGRES_USER)); in container mode
    the SQL runs in the container, while Barman connects to O(stream_host):O(stream_port) from this host (its
    programs, C(client_bin_dir) and C(ca_cert) name paths in the container and are not used for that).
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
  pg_hba:
    description:
      - Add the C(replication) line to the server's C(pg_hba.conf) when none lets Barman in (then reload).
      - V(false) refuses instead, naming the line to add; nothing is changed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - C(pg_hba.conf) and the configuration file as before/after; the SQL changes are listed in RV(plan).
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
postgresql_version:
  description: Major version of the server (this host's server programs of it recover the cluster).
  returned: state=present
  type: str
  sample: "15"
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
from ansible_collections.rat.backup.plugins.module_utils.pitr import barman, hba, recovery, server, setup
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
        pg_hba=dict(type="bool", default=True),
    )
    return spec


def _passfile(config):
    return os.path.splitext(config)[0] + ".pgpass"


def _files(p, bin_dir, policy_text):
    host, port = p["stream_host"] or p["host"], p["stream_port"] or p["port"]
    passfile = _passfile(p["config"])
    config = barman.render_config(p["home"], p["server"], host, port, p["pitr_user"], passfile, p["slot"], bin_dir,
                                  policy_text)
    return [(p["config"], config), (passfile, barman.pgpass_line(host, port, p["pitr_user"], p["pitr_password"]))]


def _host_session(p, user, password):
    """A session from this host to where Barman connects (stream_host:stream_port), as ``user``.

    In container mode client_bin_dir and ca_cert are paths inside the container: not used here.
    """
    conn = postgres.Connection(p["stream_host"] or p["host"], p["stream_port"] or p["port"], user, barman.DATABASE,
                               password, p["connect_timeout"], p["ssl_mode"], None if p["container"] else p["ca_cert"])
    return postgres.Client(postgres.Runner(), conn, None if p["container"] else p["client_bin_dir"]).open_session()


def _login(p):
    def login():
        _host_session(p, p["pitr_user"], p["pitr_password"]).close()
    return login


def _stream_address(p, session):
    """The address the server sees this host's connections to the stream's address come from (None: a socket).

    Asked over an admin connection from this host, which must reach the same cluster as the admin session
    (in container mode that one runs inside the container).
    """
    try:
        view = _host_session(p, p["user"], p["password"])
    except RatBackupError as exc:
        raise RatBackupError(f"cannot connect from this host to where Barman will connect: {exc.msg}")
    try:
        address, ident = view.query("SELECT coalesce(host(inet_client_addr()), ''), "
                                    "(SELECT system_identifier FROM pg_control_system());")[0].split("|")
    finally:
        view.close()
    if ident != server.system_identifier(session):
        raise RatBackupError(f"{p['stream_host'] or p['host']}:{p['stream_port'] or p['port']} (where Barman connects) "
                             "reaches another PostgreSQL cluster than the admin connection: set stream_host and "
                             "stream_port to the address this host reaches that server at")
    return address or None


def present(module, client, session):
    p = module.params
    if not p["pitr_password"]:
        raise RatBackupError("pitr_password is required with state=present")
    server.require_superuser(session, p["user"])
    setup.refuse_settings(server.settings_problems(session))
    version = int(session.query("SELECT current_setting('server_version_num');")[0])
    run_command = barman.module_runner(module)
    # Recovery starts the cluster with this host's programs (in container mode too): the same major, else refused.
    where = f"PostgreSQL in container {p['container']!r}" if p["container"] else f"PostgreSQL at {p['host']}:{p['port']}"
    bin_dir = recovery.server_programs(run_command, recovery.major_of(version), where,
                                       None if p["container"] else p["client_bin_dir"])
    changes = server.plan(session, p["pitr_user"], p["slot"], version)
    address = _stream_address(p, session)
    roles = server.member_of(session, p["pitr_user"])
    hba_change = address and hba.plan(session, p["pitr_user"], roles, address, p["pg_hba"])
    created = any(sql.startswith("CREATE ROLE") for _d, sql in changes)
    password_change = created or not setup.check_password(_login(p))
    policy_text = barman.retention_policy(p["retention"])
    files = setup.file_changes(_files(p, bin_dir, policy_text))
    words = setup.describe_sql(changes, password_change, p["pitr_user"])
    if hba_change:
        words.append(f"add to {hba_change['path']}: {hba_change['line']} (then SELECT pg_reload_conf())")
    words += [f"write {path}" for path, _t in files]
    result = {"plan": words, "retention_policy": policy_text, "config": p["config"], "first_backup": False,
              "postgresql_version": recovery.major_of(version)}
    diffs = [hba.diff(hba_change)] if hba_change else []
    config_text = dict(files).get(p["config"])
    if config_text is not None:
        diffs.append(setup.config_diff(p["config"], setup.read_text(p["config"]), config_text))
    if diffs:
        result["diff"] = diffs
    if module.check_mode:
        return dict(result, changed=bool(words))
    server.apply(session, changes)
    if hba_change:
        hba.apply(session, client.runner, hba_change)
    if password_change:
        server.set_password(session, p["pitr_user"], p["pitr_password"])
    setup.write_files(files)
    os.makedirs(p["home"], mode=0o700, exist_ok=True)
    engine = barman.engine_from_params(module)
    setup.wait_streaming(engine, p["wait"])
    if p["first_backup"]:
        result["first_backup"] = setup.open_window(run_command, engine, bin_dir, p["wait"])
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
    client = postgres.client_from_params(module.params)
    session = client.open_session(barman.DATABASE)
    try:
        if module.params["state"] == "present":
            return present(module, client, session)
        return absent(module, session)
    finally:
        session.close()


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
