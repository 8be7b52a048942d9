# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Enabling Barman streaming for one PostgreSQL server: plan (check mode stops there), then apply.

The plan is what changes in PostgreSQL (role, rights, slot, password) and in the files Barman reads
(its configuration, the 0600 password file), each described in words, the configuration also as a
diff. Applying runs the SQL, writes the files, starts the WAL receiver (``barman cron``), waits
until it streams, and takes the first base backup when there is none, so the recovery window opens
at once instead of at the next scheduled base backup.
"""

from __future__ import annotations

import os
import time

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils._pitr import recovery
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def file_changes(files):
    """[(path, new text)] of the files whose content differs (or that are missing)."""
    return [(path, text) for path, text in files if read_text(path) != text]


def write_files(changed):
    for path, text in changed:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # Both hold what gives access to the database (the password, where it is): root only.
        with fs.atomic_writer(path, mode=0o600) as handle:
            handle.write(text)


def wait_streaming(engine, timeout, sleep=time.sleep, clock=time.monotonic):
    """Run ``barman cron`` until the WAL receiver is connected; refuses naming Barman's failed checks."""
    deadline = clock() + timeout
    while True:
        engine.cron()
        streaming, _lag = engine.replication()
        if streaming:
            return
        if clock() >= deadline:
            failed = {name: check.get("hint") for name, check in engine.checks().items()
                      if check.get("status") != "OK"}
            raise RatBackupError(f"Barman's WAL receiver did not start within {timeout} s; failed checks: "
                                 f"{failed or 'none'} (a replication connection needs a pg_hba.conf line "
                                 "'host replication <user> <this host's address>/32 scram-sha-256')",
                                 checks=failed)
        sleep(1)


def open_window(run, engine, bin_dir, timeout):
    """The first base backup, when Barman has none (WAL switched and archived first: Barman's own check)."""
    if engine.backups():
        return False
    recovery.switch_and_archive(run, engine, bin_dir, timeout)
    engine.backup(timeout)
    return True


def describe_sql(changes, password_change, user):
    words = [description for description, _sql in changes]
    if password_change:
        words.append(f"set the password of {user}")
    return words


def check_password(login):
    """Whether the replication user logs in with the password given (``login()`` raises if not)."""
    try:
        login()
    except RatBackupError:
        return False
    return True


def config_diff(path, before, after):
    return {"before_header": path, "after_header": path, "before": before or "", "after": after}


def refuse_settings(server_problems):
    if server_problems:
        raise RatBackupError("PostgreSQL's configuration does not allow WAL streaming: " + "; ".join(server_problems)
                             + ". Change it (postgresql.conf or the container's command) and restart the server; "
                             "this role does not change a server's configuration", problems=server_problems)
