# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Barman, the point-in-time engine, driven through its own command line (``barman -c <config> -f json``).

Barman streams the server's WAL over the replication protocol (``pg_receivewal`` on a replication
slot, kept running by ``barman cron``) and takes base backups with ``pg_basebackup``: nothing changes
inside the PostgreSQL container (no ``archive_command``). This file owns the configuration it reads,
the retention policy translated from the collection's retention rules, and the reading of its JSON
answers; what to do with them (the recovery window, choosing a base backup for a time) is pure and
lives here too, so it is unit-tested without Barman.
"""

from __future__ import annotations

import datetime
import json
import math
import os

from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.postgres import first_lines

_UTC = datetime.timezone.utc
# Barman archives a streamed segment once the next one has begun (it never archives the file being written).
SEGMENT_BYTES = 16 * 1024 * 1024
# The database Barman's conninfo names (every cluster has it); the backup functions' rights are granted there.
DATABASE = "postgres"


def retention_policy(policy):
    """The collection's retention rules as Barman's ``retention_policy`` (None: keep everything).

    Barman keeps base backups by a recovery window (and the WAL they need with them): the window is the
    farthest the rules reach back in time (``keep_hourly: 120`` is 5 days, ``keep_weekly: 12`` 12 weeks),
    so PITR reaches as far back as the nightly backups do. A policy of ``keep_last`` alone counts backups:
    ``REDUNDANCY n``.
    """
    if not policy:
        return None
    rules = retention.check_policy(policy, "retention")
    reach = datetime.timedelta(0)
    hours = {"keep_hourly": 1, "keep_daily": 24, "keep_weekly": 7 * 24, "keep_monthly": 31 * 24, "keep_yearly": 365 * 24}
    for rule, unit in hours.items():
        reach = max(reach, datetime.timedelta(hours=unit * rules.get(rule, 0)))
    reach = max(reach, rules.get("keep_within", datetime.timedelta(0)))
    if reach:
        return f"RECOVERY WINDOW OF {max(1, math.ceil(reach.total_seconds() / 86400))} DAYS"
    return f"REDUNDANCY {rules['keep_last']}"


def _conninfo(host, port, user, passfile, database=None):
    # libpq reads the password from passfile (0600): it never appears in Barman's configuration or argv.
    words = [f"host={host}", f"port={port}", f"user={user}", f"passfile={passfile}"]
    if database:
        words.append(f"dbname={database}")
    return " ".join(words)


def render_config(home, server, host, port, user, passfile, slot, bin_dir, policy_text, barman_user="root"):
    """The whole Barman configuration of one PostgreSQL server (its own file, passed with ``-c``)."""
    lines = [
        "; Written by rat.backup (pitr role): Barman streaming of this host's PostgreSQL.",
        "[barman]",
        f"barman_home = {home}",
        f"barman_user = {barman_user}",
        f"log_file = {os.path.join(home, 'barman.log')}",
        "log_level = INFO",
        "",
        f"[{server}]",
        "description = rat.backup point-in-time recovery",
        f"conninfo = {_conninfo(host, port, user, passfile, DATABASE)}",
        f"streaming_conninfo = {_conninfo(host, port, user, passfile)}",
        "backup_method = postgres",
        "streaming_archiver = on",
        f"slot_name = {slot}",
        "create_slot = auto",
        # A fast checkpoint: a base backup starts at once instead of after a spread checkpoint (minutes).
        "immediate_checkpoint = true",
    ]
    if bin_dir:
        lines.append(f"path_prefix = {bin_dir}")
    if policy_text:
        lines.append(f"retention_policy = {policy_text}")
    return "\n".join(lines) + "\n"


def pgpass_line(host, port, user, password):
    """One ~/.pgpass line (``:`` and ``\\`` escaped as libpq reads them)."""
    def esc(text):
        return str(text).replace("\\", "\\\\").replace(":", "\\:")
    return ":".join([esc(host), esc(port), "*", esc(user), esc(password)]) + "\n"


def parse_time(text):
    """A time as Barman prints it (``2026-12-06 23:48:52.367762+00:00``) as an aware datetime."""
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=_UTC)


def done_backups(listing):
    """Barman's ``list-backups`` JSON: the finished base backups, oldest first, as {id, end (aware)}."""
    # Barman lists whole seconds: rounded up, so a time before the real end is never taken as after it.
    done = [{"id": b["backup_id"], "end": datetime.datetime.fromtimestamp(int(b["end_time_timestamp"]) + 1, _UTC)}
            for b in listing if b.get("status") == "DONE"]
    return sorted(done, key=lambda b: b["end"])


def backup_for(backups, moment):
    """The newest base backup that ended before ``moment`` (replaying WAL from it reaches the time)."""
    usable = [b for b in backups if b["end"] < moment]
    if not usable:
        first = f"the oldest ends {backups[0]['end'].isoformat()}" if backups else "there is none yet"
        raise RatBackupError(f"no base backup ended before {moment.isoformat()}: {first}; the point-in-time window "
                             "starts at the end of the oldest base backup", as_of=moment.isoformat())
    return usable[-1]


def backup_version(basebackups_directory, backup_id):
    """server_version_num of the cluster a base backup holds (``version=`` of its ``backup.info``)."""
    info = os.path.join(basebackups_directory, backup_id, "backup.info")
    try:
        with open(info, encoding="utf-8") as handle:
            for line in handle:
                key, _sep, value = line.strip().partition("=")
                if key == "version" and value.isdigit():
                    return int(value)
    except OSError as exc:
        raise RatBackupError(f"cannot read {info}: {exc.strerror}", path=info)
    raise RatBackupError(f"{info} names no PostgreSQL version", path=info)


def last_archived(xlog_db):
    """The newest WAL segment Barman has archived and when, from its catalog (``xlog.db``: name size time comp)."""
    last = None
    try:
        with open(xlog_db, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split("\t")
                if len(fields) >= 3 and len(fields[0]) == 24:
                    last = (fields[0], datetime.datetime.fromtimestamp(float(fields[2]), _UTC))
    except FileNotFoundError:
        return None
    return last


def window(backups, archived, streaming, lag_bytes, now):
    """The recovery window: earliest (the oldest base backup's end) and latest recoverable time.

    While the stream runs with less than a segment of lag, the latest point is now (a restore switches
    the WAL segment and waits for it to be archived); otherwise it is the newest archived segment's time.
    """
    earliest = backups[0]["end"] if backups else None
    latest = archived[1] if archived else None
    if earliest is not None and streaming and lag_bytes is not None and lag_bytes < SEGMENT_BYTES:
        latest = now
    return {"earliest": earliest, "latest": latest, "streaming": streaming, "lag_bytes": lag_bytes,
            "archived_wal": archived[0] if archived else None,
            "archived_at": archived[1] if archived else None}


def stream_lag(replication_status):
    """(streaming?, lag in bytes) from ``replication-status`` JSON: Barman's own receiver, and the WAL the server
    has written that it has not received and written yet (its flush position only moves at segment ends)."""
    clients = replication_status.get("wal_streamers", replication_status.get("streaming_clients")) or []
    for client in clients:
        if client.get("application_name") == "barman_receive_wal":
            return True, max(0, -int(client.get("write_lsn_diff_bytes") or 0))
    return False, None


class Barman:
    """One server of a Barman configuration; ``run(argv) -> (rc, stdout, stderr)`` runs a program."""

    def __init__(self, run, config, server, program="barman"):
        self.run = run
        self.config = config
        self.server = server
        self.program = program

    def argv(self, *args, json_output=False):
        return [self.program, "-c", self.config] + (["-f", "json"] if json_output else ["-q"]) + list(args)

    def call(self, *args, json_output=False):
        argv = self.argv(*args, json_output=json_output)
        rc, out, err = self.run(argv)
        if rc != 0:
            raise RatBackupError(f"{' '.join(argv[3:])} failed (rc {rc}): {first_lines(err or out)}", rc=rc)
        if not json_output:
            return out
        try:
            return json.loads(out).get(self.server, {})
        except (ValueError, AttributeError):
            raise RatBackupError(f"barman {' '.join(args)} did not answer JSON: {first_lines(out)}")

    def cron(self):
        """Start what is missing (receive-wal, the slot with create_slot=auto), archive streamed segments."""
        return self.call("cron")

    def checks(self):
        """Barman's own checks, {name: {status, hint}} (a failed check is not an error here)."""
        argv = self.argv("check", self.server, json_output=True)
        _rc, out, err = self.run(argv)
        try:
            return json.loads(out).get(self.server, {})
        except (ValueError, AttributeError):
            raise RatBackupError(f"barman check did not answer JSON: {first_lines(err or out)}")

    def backups(self):
        return done_backups(self.call("list-backups", self.server, json_output=True))

    def server_setting(self, name):
        return self.call("show-server", self.server, json_output=True).get(name)

    def replication(self):
        return stream_lag(self.call("replication-status", "--target", "wal-streamer", self.server,
                                    json_output=True))

    def backup(self, wait_seconds):
        return self.call("backup", "--wait", "--wait-timeout", str(wait_seconds), self.server)

    def recover(self, backup_id, dest, moment):
        return self.call("recover", "--target-time", moment.isoformat(), "--target-action", "promote",
                         self.server, backup_id, dest)


def module_runner(module):
    """``run(argv, env=None) -> (rc, stdout, stderr)`` over the module's run_command (argv, never a shell)."""
    def run(argv, env=None):
        # Barman's logins read their password file; a PGPASSWORD inherited from the play (which libpq prefers
        # to the file) is emptied, unless the caller gives its own.
        return module.run_command(argv, environ_update=dict({"PGPASSWORD": ""}, **(env or {})))
    return run


def engine_argspec():
    """Where Barman's configuration is and which server of it: the options every pitr module shares."""
    return dict(config=dict(type="path", default="/etc/rat-backup/barman.conf"),
                server=dict(type="str", default="rat"))


def engine_from_params(module):
    if not os.path.exists(module.params["config"]):
        raise RatBackupError(f"Barman configuration {module.params['config']} not found: enable point-in-time "
                             "recovery on this host first (rat.backup.pitr role, playbooks/pitr.yml)",
                             path=module.params["config"])
    program = module.get_bin_path("barman")
    if not program:
        raise RatBackupError("barman not found: install the Debian package barman (the pitr role does)")
    return Barman(module_runner(module), module.params["config"], module.params["server"], program)
