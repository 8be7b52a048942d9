# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup root on disk: names, listing, selection, the per-host lock and small state files.

Layout (DESIGN.md, docs/internals.md)::

    <root>/<YYYYmmdd_HHMMSS>/            complete iff the name is a bare timestamp and manifest.json exists
    <root>/<YYYYmmdd_HHMMSS>.partial/    work in progress, or the leftover of a crash
    <root>/pre-restore/<YYYYmmdd_HHMMSS>/  safety dumps taken by the restore role
    <root>/.lock                         one backup or restore per host at a time
    <root>/.status/<name>.<kind>.json    verify / drill results shown by backup_info
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import socket
import stat
import sys
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

NAME_FORMAT = "%Y%m%d_%H%M%S"
NAME_RE = re.compile(r"^[0-9]{8}_[0-9]{6}$")
PARTIAL_SUFFIX = ".partial"
PRE_RESTORE = "pre-restore"
LOCK_FILE = ".lock"
STATUS_DIR = ".status"
MANIFEST = "manifest.json"
DIR_MODE = 0o700
FILE_MODE = 0o600


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """The UTC time of an iso() string, or None when there is none."""
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def name_for(now):
    return now.astimezone(datetime.timezone.utc).strftime(NAME_FORMAT)


def time_of(name):
    """The UTC time a backup name stands for, or None when it is not a backup name."""
    if not NAME_RE.match(name):
        return None
    try:
        return datetime.datetime.strptime(name, NAME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def check_name(name, variable="rat_restore_backup"):
    """Refuse anything that is not a bare backup name before it is joined to a path.

    Returns the name. YAML 1.1 reads an unquoted 20260216_093000 as the integer 20260216093000,
    so those 14 digits are taken back as the name they came from.
    """
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if isinstance(name, str) and re.match(r"^[0-9]{14}$", name):
        name = name[:8] + "_" + name[8:]
    if not isinstance(name, str) or not name:
        raise RatBackupError("%s is empty: give a backup name (YYYYmmdd_HHMMSS) or 'latest'" % variable)
    if "/" in name or "\\" in name or ".." in name or "\x00" in name:
        raise RatBackupError("%s=%r is refused: a backup name is a bare YYYYmmdd_HHMMSS timestamp, "
                             "never a path" % (variable, name), variable=variable)
    if time_of(name) is None:
        raise RatBackupError("%s=%r is not a backup name: expected YYYYmmdd_HHMMSS (UTC) or 'latest'"
                             % (variable, name), variable=variable)
    return name


def _tree_size(path):
    """(bytes, bytes only this directory holds) without following symlinks.

    Files hard-linked with another backup (link count > 1) cost no extra disk, which is what makes
    the second figure the real price of an incremental backup.
    """
    total = unique = 0
    for parent, dirs, files in os.walk(path, followlinks=False):
        for entry in files + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            try:
                st = os.lstat(os.path.join(parent, entry))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                if st.st_nlink == 1:
                    unique += st.st_size
    return total, unique


def read_status(root, name):
    """Verify/drill/offsite records of one backup: {"verify": {...}, ...} (absent keys omitted)."""
    found = {}
    for kind in ("verify", "drill", "offsite"):
        path = os.path.join(root, STATUS_DIR, "%s.%s.json" % (name, kind))
        try:
            with open(path, "rb") as handle:
                found[kind] = json.load(handle)
        except (OSError, ValueError):
            continue
    return found


def write_status(root, name, kind, record):
    """Keep a verify/drill record: (path, None), or (None, why not) when the root cannot take it.

    Best effort: the backups may be a read-only snapshot or mount, and they are to be verified and
    restored all the same; the record only feeds backup_info.
    """
    check_name(name, "name")
    directory = os.path.join(root, STATUS_DIR)
    path = os.path.join(directory, "%s.%s.json" % (name, kind))
    try:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        write_json_atomic(path, record)
    except OSError as exc:
        return None, "the %s record of %s was not kept: %s cannot be written (%s)" % (
            kind, name, directory, exc.strerror or exc)
    return path, None


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path, text):
    """Write a file so a reader sees the old file or the whole new one, never a torn one."""
    write_lines_atomic(path, (text,))


def write_lines_atomic(path, lines):
    """write_text_atomic for text produced piece by piece (``lines`` may be a generator)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(root, name, path, kind, now, sizes):
    created = time_of(name)
    entry = {
        "name": name,
        "path": path,
        "kind": kind,
        "created_at": iso(created) if created else None,
        "age_seconds": int((now - created).total_seconds()) if created else None,
    }
    if sizes:
        entry["size"], entry["unique_bytes"] = _tree_size(path)
    return entry


def list_backups(root, now=None, sizes=False):
    """Every backup-like directory under root, sorted oldest first, grouped by kind.

    Returns {"complete": [...], "partial": [...], "pre_restore": [...]}. A timestamp directory
    without manifest.json is reported as partial: it is what a crash between rename and manifest
    would look like if someone renamed it by hand, and it must never be offered for restore.
    """
    now = now or utcnow()
    found = {"complete": [], "partial": [], "pre_restore": []}
    if not os.path.isdir(root):
        return found
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        if name.endswith(PARTIAL_SUFFIX) and time_of(name[:-len(PARTIAL_SUFFIX)]):
            entry = _entry(root, name[:-len(PARTIAL_SUFFIX)], path, "partial", now, sizes)
            found["partial"].append(entry)
        elif time_of(name):
            complete = os.path.isfile(os.path.join(path, MANIFEST)) and not os.path.islink(os.path.join(path, MANIFEST))
            entry = _entry(root, name, path, "complete" if complete else "partial", now, sizes)
            found["complete" if complete else "partial"].append(entry)
    pre = os.path.join(root, PRE_RESTORE)
    if os.path.isdir(pre) and not os.path.islink(pre):
        for name in sorted(os.listdir(pre)):
            path = os.path.join(pre, name)
            if time_of(name) and os.path.isdir(path) and not os.path.islink(path) \
                    and os.path.isfile(os.path.join(path, MANIFEST)):
                found["pre_restore"].append(_entry(root, name, path, "pre_restore", now, sizes))
    return found


def select(root, requested, variable="rat_restore_backup"):
    """The complete backup named by ``requested`` (a name or 'latest'); error lists what exists."""
    complete = list_backups(root)["complete"]
    names = [b["name"] for b in complete]
    if requested == "latest":
        if not complete:
            raise RatBackupError("%s=latest: there is no complete backup in %s" % (variable, root),
                                 available=[])
        return complete[-1]
    requested = check_name(requested, variable)
    for entry in complete:
        if entry["name"] == requested:
            return entry
    raise RatBackupError("%s=%s: no complete backup of that name in %s; available: %s"
                         % (variable, requested, root, ", ".join(names) or "none"), available=names)


def previous_complete(root):
    complete = list_backups(root)["complete"]
    return complete[-1] if complete else None


def new_name(root, now, base=None):
    """A fresh name not used by any complete, partial or pre-restore directory.

    Two runs in the same second get consecutive seconds instead of colliding.
    """
    base = base or root
    candidate = now
    for _ignored in range(120):
        name = name_for(candidate)
        if not any(os.path.lexists(os.path.join(base, n)) for n in (name, name + PARTIAL_SUFFIX)):
            return name
        candidate = candidate + datetime.timedelta(seconds=1)
    raise RatBackupError("no free backup name in %s near %s" % (base, name_for(now)))


def remove_tree(path):
    """rmtree that never follows a symlink out of the tree (shutil.rmtree unlinks links itself)."""
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def secure_tree(path):
    """Directories 0700, files 0600, without following symlinks (they are left as they are).

    Only entries whose mode differs are changed: most files of an incremental backup are hard links
    shared with older backups, and a needless chmod would still bump their ctime.
    """
    pending = [path]
    while pending:
        directory = pending.pop()
        _chmod_if_needed(directory, os.lstat(directory).st_mode, DIR_MODE)
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    _chmod_if_needed(entry.path, entry.stat(follow_symlinks=False).st_mode, FILE_MODE)


def _chmod_if_needed(path, mode, wanted):
    if stat.S_IMODE(mode) != wanted:
        os.chmod(path, wanted)


def sync_tree(path):
    """Make every file and directory entry under ``path`` durable.

    One syncfs(2) flushes the whole filesystem holding ``path``: far cheaper than an fsync per
    directory of a tree with hundreds of them. Where syncfs is missing (not Linux, no such symbol)
    or refused (ENOSYS under a seccomp filter, ...), each directory is fsynced instead. A write
    error is raised, not worked around: it means data may not have reached the disk.
    """
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            code = syncfs(fd)
        finally:
            os.close(fd)
        if code == 0:
            return
        if code in (errno.EIO, errno.ENOSPC, errno.EDQUOT):
            raise RatBackupError("cannot make %s durable on %s: syncfs: %s"
                                 % (path, socket.gethostname(), os.strerror(code)), path=path)
    fsync_dir(path)
    for parent, dirs, _files in os.walk(path, followlinks=False):
        for name in dirs:
            full = os.path.join(parent, name)
            if not os.path.islink(full):
                fsync_dir(full)


def has_syncfs():
    """True where sync_tree flushes file data too (one syncfs), not only directory entries."""
    return _syncfs() is not None


@functools.lru_cache(maxsize=None)
def _syncfs():
    """fd -> 0, or the errno of a failed syncfs(2); None where the C library has no syncfs."""
    if not sys.platform.startswith("linux"):
        return None
    # Imported here: 3 ms that every module importing layout would pay otherwise.
    import ctypes  # pylint: disable=import-outside-toplevel

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def call(fd):
        return 0 if function(fd) == 0 else ctypes.get_errno()

    return call


def ensure_root(root):
    """Create the backup root (0700) and prove it is writable, naming the path when it is not."""
    try:
        os.makedirs(root, mode=DIR_MODE, exist_ok=True)
        probe = os.path.join(root, ".write-test.%d" % os.getpid())
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RatBackupError("backup root %s is not writable on %s: %s"
                             % (root, socket.gethostname(), exc.strerror or exc), path=root)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def nearest_existing_dir(path):
    """``path``, or the closest parent that exists: where a directory not made yet will live."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


# ---------------------------------------------------------------------------------------------
# Lock
#
# The lock must outlive the module process that takes it (a backup spans several Ansible tasks)
# and must vanish when the run dies, even by kill -9. A detached keeper process holds an flock on
# <root>/.lock (the kernel drops it when the keeper dies, whatever kills it) and rewrites the
# file's JSON (host, pid, token, heartbeat) every few seconds. The keeper gives up the lock when
# commit/abort/unlock ask it to (SIGTERM after checking the token), when the lease runs out, or
# when the run that took it is gone:
# - run by ansible-playbook on this host (local connection, cron): when that process ends;
# - run from another machine (SSH): no process here lives as long as the run. Each task may come
#   over its own connection, and a shared one closes when the host waits idle for the others of a
#   play. So the tasks of a run carry RUN_MARKER=<run id> in their environment (the roles set it)
#   and the run counts as gone once no process here has carried it for idle_seconds.
# A run whose lock was given up for idleness takes it back at commit if no other run took it.
# ---------------------------------------------------------------------------------------------

HEARTBEAT_SECONDS = 5
RUN_MARKER = "RAT_BACKUP_RUN"
IDLE_REASON = "idle"


def _proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[0] not in (b"Z", b"X")
    except (OSError, IndexError, ValueError):
        return False


def _parent_of(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as handle:
            return handle.read().strip().decode("utf-8", "replace")
    except OSError:
        return ""


ANSIBLE_DRIVERS = ("ansible-playbook", "ansible", "ansible-runner", "ansible-console", "ansible-test")


def _argv(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
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
    needle = ("%s=%s" % (RUN_MARKER, run_id)).encode("utf-8")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as handle:
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
        raise RatBackupError("cannot open lock %s: %s" % (path, exc.strerror or exc), path=path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = read_lock(root)
        message = ("another %s is running on %s (pid %s, started %s, last heartbeat %s); backup root %s is locked, "
                   "try again when it has finished"
                   % (holder.get("purpose", "backup or restore"), holder.get("host", "?"), holder.get("pid", "?"),
                      holder.get("started_at", "?"), holder.get("heartbeat_at", "?"), root))
        raise RatBackupError(message, lock={k: v for k, v in holder.items() if k != "token"}, path=path)
    stale = read_lock(root)
    if token and stale.get("token") != token:
        os.close(fd)
        raise RatBackupError("the lock of %s was taken by another run meanwhile" % root, path=path)
    anchor_pid, anchor_kind = _anchor(os.getpid())
    record = {"host": socket.gethostname(), "purpose": purpose,
              "token": token or "%s-%d-%s" % (socket.gethostname(), os.getpid(), os.urandom(8).hex()),
              "run_id": stale.get("run_id") if token else os.urandom(12).hex(),
              "started_at": iso(now), "heartbeat_at": iso(now),
              "lease_until": iso(now + datetime.timedelta(seconds=lease_seconds)),
              "anchor_pid": anchor_pid, "anchor": anchor_kind, "idle_seconds": idle_seconds}
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
    last_seen = [time.monotonic()]

    def gone():
        if run_processes(record["run_id"], exclude=(me,)):
            last_seen[0] = time.monotonic()
        elif time.monotonic() - last_seen[0] > idle:
            return "%s: no process of the run for %d s" % (IDLE_REASON, idle)
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
    raise RatBackupError("lock keeper pid %s on %s did not release %s within %ds"
                         % (pid, socket.gethostname(), os.path.join(root, LOCK_FILE), timeout))
