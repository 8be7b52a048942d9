# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A database as of a time: WAL made complete up to now, ``barman recover --target-time``, a scratch server.

The order matters. Recovery to a time stops at the first commit after it, so the WAL holding that
commit must be archived: the current segment is switched (``pg_switch_wal()``, which the replication
role may execute) and ``barman cron`` is run until the switched segment is in Barman's archive. Only
then is the base backup that ended last before the time restored, with the WAL, into a scratch data
directory, and a PostgreSQL started on it on a free loopback port (never the live server's): it
replays to the time, promotes, and tells the last transaction it replayed, the recovery point reached.
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import shutil
import socket
import time

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils._pitr import barman as barman_cli
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils.postgres import first_lines

# The scratch server's own settings over what the recovered postgresql.conf says (the live server's):
# its port, loopback only, its socket beside it, and no archiving of its own; its log in English on
# stderr, so pg_ctl's log file holds where recovery stopped (next_commit).
SCRATCH_SETTINGS = ("listen_addresses=127.0.0.1", "archive_mode=off", "hot_standby=on", "logging_collector=off",
                    "log_destination=stderr", "lc_messages=C")
# PostgreSQL's message when recovery to a time stops before the first transaction that ended after it.
_STOPPED = re.compile(r"recovery stopping before commit of transaction \d+, time (\d{4}-\d\d-\d\d \S+)")


# Barman archives a streamed segment only once the next one has begun, and after a switch an idle server writes
# its next WAL record up to 15 s later (the standby snapshot): the restore point (the replication role may create
# one) is that record at once, so the switched segment is archivable on the next barman cron.
SWITCH_SQL = ("SELECT pg_walfile_name(pg_switch_wal()); "
              "SELECT pg_create_restore_point('rat.backup: WAL switched to recover up to now');")


def iso_us(moment):
    """A time in UTC to the microsecond (PostgreSQL's resolution), ending in Z."""
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def free_port():
    """A TCP port free on the loopback interface now (the scratch server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psql_argv(bin_dir, conninfo, sql):
    return [os.path.join(bin_dir, "psql"), "-X", "-A", "-t", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
            "-d", conninfo, "-c", sql]


def segment_archived(wals_directory, segment):
    return os.path.exists(os.path.join(wals_directory, segment[:16], segment))


def switch_and_archive(run, engine, bin_dir, timeout, sleep=time.sleep, clock=time.monotonic):
    """Close the current WAL segment and wait until Barman has archived it; returns its name."""
    conninfo = engine.server_setting("conninfo")
    rc, out, err = run(psql_argv(bin_dir, conninfo, SWITCH_SQL))
    if rc != 0:
        raise RatBackupError(f"cannot switch the WAL segment as Barman's user: {first_lines(err)}")
    segment = out.strip().splitlines()[0]
    wals = engine.server_setting("wals_directory")
    deadline = clock() + timeout
    while True:
        # cron starts receive-wal if it stopped and moves complete streamed segments into the archive.
        engine.cron()
        if segment_archived(wals, segment):
            return segment
        if clock() >= deadline:
            raise RatBackupError(f"WAL segment {segment} was not archived within {timeout} s: is the WAL stream "
                                 f"running? ({engine.server}: barman check, barman replication-status)",
                                 segment=segment)
        sleep(1)


def major_of(version_num):
    """server_version_num (150010, 90624) as PostgreSQL names the major version ('15', '9.6')."""
    return postgres.key_text(postgres.server_key(version_num))


def server_programs(run, major, what, explicit=None, root="/usr/lib/postgresql"):
    """This host's server programs of PostgreSQL ``major`` (``what`` has that version); refused naming both.

    A recovered data directory starts only under its own major version, and the scratch server runs on this
    host (in container mode too: the container's image is not used), so the programs must match; checked
    by asking ``postgres --version``, not by the directory's name.
    """
    bin_dir = explicit or os.path.join(root, major, "bin")
    program = os.path.join(bin_dir, "postgres")
    found = None
    if os.access(program, os.X_OK) and os.access(os.path.join(bin_dir, "pg_ctl"), os.X_OK):
        _rc, out, _err = run([program, "--version"])
        try:
            found = postgres.key_text(postgres.version_key(postgres.parse_client_version(out)))
        except RatBackupError:
            pass  # an answer without a version: found stays None, refused below as no server programs
    if found == major:
        return bin_dir
    here = ", ".join(f"PostgreSQL {postgres.key_text(key)} ({path})"
                     for key, path in sorted(postgres.installed_clients(root).items())) or "none"
    have = f"{bin_dir} is PostgreSQL {found}" if found else f"no server programs in {bin_dir}"
    raise RatBackupError(f"{what} is PostgreSQL {major} but {have} (this host's PostgreSQL installs: {here}): "
                         f"the recovered cluster starts with this host's server programs of the same major version; "
                         f"install postgresql-{major} on this host (or name its bin directory)",
                         major=major, found=found)


def prepare_dir(path):
    """The scratch directory: absent or empty (nothing of another recovery is ever mixed in)."""
    if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise RatBackupError(f"scratch directory {path} exists and is not empty: remove it (state=absent) or "
                             "name another", path=path)


def chown_tree(path, user):
    """Give the recovered tree to the server's system user (Barman runs as root)."""
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chmod(os.path.join(path, "data"), 0o700)


def pg_ctl_argv(bin_dir, os_user, scratch, action, port=None):
    argv = ["runuser", "-u", os_user, "--", os.path.join(bin_dir, "pg_ctl"), "-D", os.path.join(scratch, "data")]
    if action == "start":
        options = [f"-c port={port}", f"-c unix_socket_directories={scratch}"] + [f"-c {s}" for s in SCRATCH_SETTINGS]
        return argv + ["-l", os.path.join(scratch, "postgresql.log"), "-w", "-t", "300", "-o", " ".join(options),
                       "start"]
    return argv + ["-m", "fast", "-w", "stop"]


def read_log(scratch):
    """The scratch server's log ("" when there is none)."""
    try:
        with open(os.path.join(scratch, "postgresql.log"), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def log_tail(scratch):
    text = read_log(scratch)
    return first_lines("".join(text.splitlines(True)[-6:]), 6) if text else "(no server log)"


def plan(engine, moment, scratch, now=fs.utcnow):
    """The base backup to restore for ``moment``, with its major version; refuses a future time and a used
    scratch directory."""
    if moment > now():
        raise RatBackupError(f"{moment.isoformat()} is in the future (now {now().isoformat()})", as_of=moment.isoformat())
    chosen = barman_cli.backup_for(engine.backups(), moment)
    prepare_dir(scratch)
    chosen["major"] = major_of(barman_cli.backup_version(engine.server_setting("basebackups_directory"), chosen["id"]))
    return chosen


class Laps:
    """Seconds per step, in order ({step: seconds}), so a slow recovery shows which step it spent them in."""

    def __init__(self, clock):
        self.clock = clock
        self.mark = clock()
        self.seconds = {}

    def lap(self, step):
        now = self.clock()
        self.seconds[step] = round(now - self.mark, 3)
        self.mark = now


def recover(run, engine, chosen, moment, scratch, bin_dir, os_user, port=0, wal_timeout=120, clock=time.monotonic,
            laps=None):
    """Restore the cluster as of ``moment`` from base backup ``chosen`` (``plan``'s) into ``scratch``/data and
    start it with ``bin_dir``'s programs (``server_programs``); returns what was done.

    ``timings`` splits the time: wal_switch (switch and wait for the archive), barman_recover (base backup and
    WAL copied), chown, start (``pg_ctl -w``: until it accepts connections); the caller adds its own steps
    to the same ``laps``.
    """
    laps = laps or Laps(clock)
    started = clock()
    segment = switch_and_archive(run, engine, bin_dir, wal_timeout, clock=clock)
    laps.lap("wal_switch")
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    engine.recover(chosen["id"], os.path.join(scratch, "data"), moment)
    laps.lap("barman_recover")
    chown_tree(scratch, os_user)
    laps.lap("chown")
    port = port or free_port()
    rc, _out, err = run(pg_ctl_argv(bin_dir, os_user, scratch, "start", port))
    if rc != 0:
        raise RatBackupError(f"the scratch server on port {port} did not start: {first_lines(err)} (every directory "
                             f"above {scratch} must be open to {os_user}); "
                             f"its log: {log_tail(scratch)}", path=scratch)
    laps.lap("start")
    return {"backup_id": chosen["id"], "backup_end": fs.iso(chosen["end"]), "wal_segment": segment,
            "port": port, "data_dir": os.path.join(scratch, "data"), "seconds": round(clock() - started, 3),
            "timings": laps.seconds}


def reached(run, bin_dir, port, user, password, database, scratch, wait=60, sleep=time.sleep, clock=time.monotonic):
    """The last transaction the scratch server replayed, once it has left recovery (promoted).

    ``pg_ctl -w`` returns once the server is consistent (the base backup's end); replaying the WAL after it
    takes as long as the WAL is big (minutes for an hour of a busy server's), so the wait fails only when
    replay has not moved for ``wait`` seconds. Asked over TCP as the live server's own user: the recovered
    cluster has the live server's roles and pg_hba.conf, so what logs in there logs in here.
    """
    conninfo = f"host=127.0.0.1 port={port} user={user} dbname={database}"
    argv = psql_argv(bin_dir, conninfo, "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp(), "
                                        "pg_last_wal_replay_lsn();")
    deadline = clock() + wait
    replayed = None
    while True:
        rc, out, err = run(argv, {"PGPASSWORD": password} if password else None)
        fields = out.strip().split("|") if rc == 0 else []
        if len(fields) == 3 and fields[0] == "f":
            return iso_us(barman_cli.parse_time(fields[1])) if fields[1] else None
        if len(fields) == 3 and fields[2] != replayed:
            replayed = fields[2]
            deadline = clock() + wait
        if clock() >= deadline:
            raise RatBackupError(f"the scratch server on port {port} did not finish recovery: replay has not moved "
                                 f"for {wait} s (at WAL {replayed or 'unknown'}): {first_lines(err or out)}; "
                                 f"its log: {log_tail(scratch)}", path=scratch)
        sleep(0.5)


def next_commit(log_text):
    """Commit time (UTC, microseconds) of the transaction recovery stopped before: the first commit after
    the target time. None when the log does not say (recovery ran to the end of the WAL, or stopped
    before an abort)."""
    found = _STOPPED.findall(log_text)
    return iso_us(barman_cli.parse_time(found[-1])) if found else None


def remove(run, bin_dir, os_user, scratch):
    """Stop the scratch server (when it runs) and remove its directory; True when anything was there."""
    if not os.path.lexists(scratch):
        return False
    if os.path.exists(os.path.join(scratch, "data", "postmaster.pid")):
        rc, _out, err = run(pg_ctl_argv(bin_dir, os_user, scratch, "stop"))
        if rc != 0:
            raise RatBackupError(f"cannot stop the scratch server in {scratch}: {first_lines(err)}", path=scratch)
    shutil.rmtree(scratch)
    return True
