# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host lock of a backup root (``<root>/.lock``): one backup or restore at a time.

The lock must outlive the module process that takes it (a backup spans several Ansible tasks)
and must vanish when the run dies, even by kill -9. A detached keeper process holds an flock on
<root>/.lock (the kernel drops it when the keeper dies, whatever kills it) and rewrites the
file's JSON (host, pid, token, heartbeat) every few seconds. The keeper gives up the lock when
commit/abort/unlock ask it to (SIGTERM after checking the token), when the lease runs out, or
when the run that took it is gone:
- run by ansible-playbook on this host (local connection, cron): when that process ends;
- run from another machine (SSH): no process here lives as long as the run. Each task may come
  over its own connection, and a shared one closes when the host waits idle for the others of a
  play. So the tasks of a run carry RUN_MARKER=<run id> in their environment (the roles set it,
  and backup_capture gives it to the programs it starts), and the run counts as gone once neither
  the process that took the lock nor any process carrying the marker was seen for idle_seconds.
A run whose lock was given up for idleness takes it back at commit if no other run took it.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import signal
import socket
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import FILE_MODE, iso, parse_time, utcnow
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import DIR_MODE, LOCK_FILE
HEARTBEAT_SECONDS = 5
# The off-site runs' work directory and lock, in the backup root; retention takes that lock too.
OFFSITE_DIR = ".offsite"
RUN_MARKER = "RAT_BACKUP_RUN"
IDLE_REASON = "idle"


def _proc_alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[0] not in (b"Z", b"X")
    except (OSError, IndexError, ValueError):
        return False


def _started(pid):
    """When process ``pid`` started (clock ticks after boot), or None: with its pid, which process it is,
    as a pid is given again to a new process once its own has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().strip().decode("utf-8", "replace")
    except OSError:
        return ""


ANSIBLE_DRIVERS = ("ansible-playbook", "ansible", "ansible-runner", "ansible-console", "ansible-test")


def _argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\x00")
    except OSError:
        return []


def _anchor(start):
    """(pid, kind) of what connects this module to the Ansible run.

    kind "local": the ansible-playbook process driving the run on this very host (the nearest
    ancestor running an Ansible driver, climbed past its forked workers, same command line); its
    life is the run's. kind "ssh": the sshd session of this task only, recorded to show where the
    run came from. (0, None) when neither is found.
    """
    pid = _parent_of(start)
    for _ignored in range(64):
        if pid <= 1:
            return 0, None
        if _comm(pid).startswith("sshd"):
            return pid, "ssh"
        argv = _argv(pid)
        if any(os.path.basename(arg) in ANSIBLE_DRIVERS for arg in argv[:2]):
            parent = _parent_of(pid)
            while parent > 1 and _argv(parent) == argv:
                pid, parent = parent, _parent_of(parent)
            return pid, "local"
        pid = _parent_of(pid)
    return 0, None


def run_processes(run_id, exclude=()):
    """Pids of live processes whose environment carries RUN_MARKER=<run_id>."""
    needle = f"{RUN_MARKER}={run_id}".encode("utf-8")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def _lock_bytes(root):
    with open(os.path.join(root, LOCK_FILE), "rb") as handle:
        return handle.read()


def read_lock(root, attempts=5, pause=0.01):
    """The lock record (may be stale or empty: {}).

    The keeper rewrites the record in place every heartbeat (truncate, then write): a read that
    falls in between sees an empty or torn file, so such a read is tried again before it counts.
    """
    for attempt in range(attempts):
        try:
            data = _lock_bytes(root)
        except OSError:
            return {}
        try:
            return json.loads(data)
        except ValueError:
            if attempt + 1 < attempts:
                time.sleep(pause)
    return {}


def lock_state(root, now=None):
    """(held, record): held is True only while a live process holds the flock."""
    path = os.path.join(root, LOCK_FILE)
    record = read_lock(root)
    if not os.path.exists(path):
        return False, record
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True, record
        raise
    finally:
        os.close(fd)
    return False, record


def _write_record(fd, record):
    data = json.dumps(record, sort_keys=True).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def hold(path, busy_message):
    """An exclusive flock on ``path`` held by this process until it exits (or closes the returned
    fd): for work that lives in one module run, unlike the host lock below."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise RatBackupError(busy_message)
        raise
    return fd


def hold_offsite(root, busy_message, create=True):
    """The off-site lock of a backup root (``<root>/.offsite/.lock``), held like hold(): by an off-site
    run while it reads backups to ship them, by retention while it deletes, never both at once.

    Retention passes ``create=False`` and gets None on a root no off-site run ever used; an off-site
    run starting meanwhile then sees retention in the host lock (see offsite.lock).
    """
    path = os.path.join(root, OFFSITE_DIR)
    if not create and not os.path.isdir(path):
        return None
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    return hold(os.path.join(path, LOCK_FILE), busy_message)


def acquire(root, purpose, lease_seconds, now=None, idle_seconds=3600, token=None):
    """Take the host lock and leave a keeper holding it. Returns (record, previous stale record).

    Raises naming the holder when a live process holds it. A record left by a dead holder (kill -9,
    reboot) is stale by construction here, because its flock died with it. ``token`` takes the lock
    again for the run that held it (see reclaim).
    """
    now = now or utcnow()
    path = os.path.join(root, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise RatBackupError(f"cannot open lock {path}: {exc.strerror or exc}", path=path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = read_lock(root)
        message = (f"another {holder.get('purpose', 'backup or restore')} is running on {holder.get('host', '?')} "
                   f"(pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')}, last heartbeat "
                   f"{holder.get('heartbeat_at', '?')}); backup root {root} is locked, try again when it has finished")
        raise RatBackupError(message, lock={k: v for k, v in holder.items() if k != "token"}, path=path)
    stale = read_lock(root)
    if token and stale.get("token") != token:
        os.close(fd)
        raise RatBackupError(f"the lock of {root} was taken by another run meanwhile", path=path)
    anchor_pid, anchor_kind = _anchor(os.getpid())
    record = {"host": socket.gethostname(), "purpose": purpose,
              "token": token or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(8).hex()}",
              "run_id": stale.get("run_id") if token else os.urandom(12).hex(),
              "started_at": iso(now), "heartbeat_at": iso(now),
              "lease_until": iso(now + datetime.timedelta(seconds=lease_seconds)),
              "anchor_pid": anchor_pid, "anchor": anchor_kind, "idle_seconds": idle_seconds,
              "taker_pid": os.getpid(), "taker_started": _started(os.getpid())}
    keeper = _spawn_keeper(fd, record, lease_seconds)
    os.close(fd)
    record["pid"] = keeper
    return record, stale


def _spawn_keeper(fd, record, lease_seconds):
    """Fork a detached keeper that inherits the locked fd; returns its pid once it has written the record."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _keeper_main(fd, write_end, record, lease_seconds)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(first, 0)
    with os.fdopen(read_end, "rb") as pipe:
        pid = pipe.read().strip()
    if not pid:
        raise RatBackupError("the lock keeper did not start")
    return int(pid)


def _keeper_main(fd, ready_fd, record, lease_seconds):
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    keep = {fd, ready_fd, 0, 1, 2}
    for other in os.listdir("/proc/self/fd"):
        number = int(other)
        if number not in keep:
            try:
                os.close(number)
            except OSError:
                pass
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    record = dict(record, pid=os.getpid())
    deadline = time.monotonic() + lease_seconds
    try:
        _write_record(fd, record)
        os.write(ready_fd, b"%d\n" % os.getpid())
        os.close(ready_fd)
        gone = _run_watch(record)
        while True:
            reason = gone() or (time.monotonic() >= deadline and "lease expired")
            if reason:
                break
            time.sleep(HEARTBEAT_SECONDS)
            record["heartbeat_at"] = iso(utcnow())
            try:
                _write_record(fd, record)
            except OSError:
                # A full disk must not cost the lock: the flock, not the text, is what excludes.
                pass
    except _Stop:
        reason = "released"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record["released_at"] = iso(utcnow())
    record["released_because"] = reason
    try:
        _write_record(fd, record)
    except OSError:
        pass
    os.close(fd)


def _run_watch(record):
    """A check that returns why the run counts as gone, or None while it may still be running."""
    if record.get("anchor") == "local":
        anchor = record["anchor_pid"]
        return lambda: None if _proc_alive(anchor) else "run ended without releasing"
    idle = record.get("idle_seconds")
    if not idle:
        return lambda: None
    me = os.getpid()
    # backup_capture holds the lock for the whole capture in the process that took it, whose own
    # environment cannot carry the marker it only learns then; by its start time too, so that another
    # process given its pid later does not hold the lock to the end of the lease.
    taker, taker_started = record.get("taker_pid"), record.get("taker_started")

    def taker_alive():
        return bool(taker) and _proc_alive(taker) and _started(taker) == taker_started

    last_seen = [time.monotonic()]

    def gone():
        if taker_alive() or run_processes(record["run_id"], exclude=(me,)):
            last_seen[0] = time.monotonic()
        elif time.monotonic() - last_seen[0] > idle:
            return f"{IDLE_REASON}: no process of the run for {idle} s"
        return None
    return gone


class _Stop(Exception):
    pass


def _raise_stop(*_args):
    raise _Stop()


def reclaim(root, token, now=None):
    """Take the lock back for the run holding ``token`` after its keeper gave it up for idleness.

    Only when no other run took it meanwhile: any acquire writes a new token into the record.
    Returns the record, or None when the lock is not ours to take back.
    """
    held, record = lock_state(root)
    if held or not token or record.get("token") != token \
            or not str(record.get("released_because", "")).startswith(IDLE_REASON):
        return None
    now = now or utcnow()
    lease_until = parse_time(record.get("lease_until"))
    if lease_until is None or lease_until <= now:
        return None
    try:
        taken, _stale = acquire(root, record.get("purpose", "backup"), int((lease_until - now).total_seconds()),
                                now, record.get("idle_seconds") or 0, token=token)
    except RatBackupError:
        return None
    return taken


def release(root, token, timeout=15.0):
    """Stop the keeper holding our lock (token must match). Returns True when it was ours."""
    record = read_lock(root)
    if not token or record.get("token") != token:
        return False
    pid = record.get("pid")
    if pid and _proc_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    # Wait until the flock is free again: that is the moment the next run can start. The keeper
    # lets go within a few ms of SIGTERM, so the first looks come soon and the pauses grow.
    deadline = time.monotonic() + timeout
    pause = 0.001
    while time.monotonic() < deadline:
        held, _record = lock_state(root)
        if not held:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    raise RatBackupError(f"lock keeper pid {pid} on {socket.gethostname()} did not release "
                         f"{os.path.join(root, LOCK_FILE)} within {timeout}s")
