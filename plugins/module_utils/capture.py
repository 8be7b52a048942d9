# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One backup in one process (the backup_capture module): its checks and lock, then the database
dump and the buckets' mirror at one consistency point, overlapped, into <name>.partial, then its
commit (backup_dir.commit: manifest.json last, the rename, the lock released) with its log line and
metrics.

First what can stop a backup before it starts, so a host that fails leaves everything as it was
(backup_dir.begin): the Python packages, the root and its free space, PostgreSQL answering (pg_dump
new enough, its clock) and S3 answering with every bucket present (check_services, both asked at
once); then the lock and the .partial directory. The quiesce command runs once the lock is held,
and the command after it always runs once the capture has ended, also after a failure.

pg_dump's session exports its snapshot first, so the consistency point T is known (within the few
milliseconds of that statement) before anything is written. From then on pg_dump writes the dump
while this process connects to S3 and plans the mirror, and meanwhile measures S3's clock against
PostgreSQL's (the wait for its Date header to tick, half a second on average, spent beside pg_dump
and what of the plan does not depend on it: listing.Lister.pin). Versioned buckets are listed as of
T once the clock is known, the skew is checked before anything is written; then the plan is downloaded.
The dump is finished as soon as pg_dump has exited (_Watch): the archive's TOC read, rows counted at
the snapshot, linked to the previous backup's when unchanged, its result written beside it. While
the mirror plans, a thread does it (pg_dump, ~0.3 s on a small host, exits during the plan, which
mostly waits for S3); later the mirror's checkpoint does it, between two objects; else it is done
once the mirror has ended. Each part leaves the files and results it leaves alone
(postgres/rat.dump with its .json, minio/ and minio.json), which the commit reads.

Threads and fork: the mirror's pool forks worker processes. A fork copies only the forking thread,
with every lock as the other threads held it, so nothing may run beside it that a worker could
wait on. Here nothing does on this host: the checks' S3 thread has ended before the lock is taken;
pg_dump's stdout is the dump file itself and its stderr an unlinked file (programs.FileProcess), so
its output never passes through Python; it is polled (a waitpid). The plan forks nothing and has
threads of its own (the listing read ahead, S3's clock), ended when it returns, before the first
fork; the watch's thread is one of them: the checkpoint's first call, once the plan is made, stops
and joins it. From then on the dump is finished in the mirror's own thread and returns before the
next object: pg_restore --list is a subprocess run to its end (in container mode fed by a thread
joined before the TOC is parsed; on an error the mirror forks nothing more). The session holding
the snapshot is psql driven over its pipes (or the exec's socket) by one thread at a time: the
watch's, then after the join the mirror's; workers forked before its end hold copies of its pipes,
which psql's exit at the session's \\q does not need. Only in container mode, where pg_dump's
output arrives on the exec's socket, one thread copies it, holding no lock a worker uses
(programs.StreamedProcess).

Failures: pg_dump failing, or finishing its dump failing, while the mirror runs stops the mirror at
its next object (the run fails naming pg_dump's error or the dump); the mirror failing terminates
pg_dump and reaps it (the run fails naming the mirror's error). Either way the partial dump, or the
finished one with its result, is removed and the rest of the .partial directory is left for
backup_run abort, which also records the failed run: every failure after the start (the commit's
too) carries the backup's name, .partial and lock token for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback

from ansible.module_utils.ansible_release import __version__ as ANSIBLE_CORE_VERSION
from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import fs, postgres, quiesce_commands, s3, s3_source
from ansible_collections.rat.backup.plugins.module_utils.backup_root import backup_dir, lock, reporting
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import DUMP_PATH, OBJECT_MANIFEST
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.mirror import Mirror

MIRROR_DIR = "minio"
# pg_dump's state is read at most this often by the mirror's checkpoint (once per object otherwise).
POLL_EVERY = 0.05


def capture(start_dump, mirror_for, monotonic=time.monotonic):
    """(dump result, mirror result, timings). ``start_dump()`` exports the snapshot and starts pg_dump
    (a RunningDump); ``mirror_for(point, checkpoint)`` is the Mirror of the buckets as of its
    consistency point, which calls ``checkpoint()`` once its plan is made, before anything forks,
    and before each object."""
    started = monotonic()
    running = start_dump()
    timings = {"snapshot": monotonic() - started}
    watch = _Watch(running, monotonic)
    try:
        try:
            mirrored = mirror_for(running.point, watch).run()
        finally:
            # Nothing of it may run beside what follows (a mirror that never called its checkpoint).
            watch.join()
    except BaseException as exc:
        # pg_dump's failure first: the mirror may have been stopped because of it.
        failure = running.failure()
        stopped = _abort(running)
        if isinstance(failure, RatBackupError):
            raise RatBackupError(f"{failure.msg}; the bucket mirror was stopped", failed_step="pg_dump",
                                 **failure.details)
        if failure is not None:
            raise failure
        if isinstance(exc, RatBackupError):
            raise RatBackupError(f"bucket mirror: {exc.msg} ({stopped})", failed_step="mirror", **exc.details)
        raise
    timings["mirror"] = monotonic() - started
    # Finished already when pg_dump exited while the mirror ran (the same result then).
    dumped = running.finish()
    timings["dump"] = (monotonic() if watch.finished is None else watch.finished) - started
    return dumped, mirrored, {name: round(seconds, 3) for name, seconds in timings.items()}


def _abort(running):
    """Stop pg_dump and remove the partial or finished dump; says how, for the error that caused it."""
    try:
        stopped = running.abort()
    except RatBackupError as exc:
        return f"pg_dump may still run: {exc.msg}"
    if not stopped:
        return "the dump pg_dump had finished was discarded"
    return "pg_dump was stopped" if running.pid is None else f"pg_dump (pid {running.pid}) was stopped"


class _Watch:
    """Finishes the dump as soon as pg_dump has exited, beside the mirror, and is the mirror's
    checkpoint (raises pg_dump's error, or finishing's, once it has failed).

    While the mirror plans (its own threads running, nothing forked yet) a thread of this watch
    polls pg_dump and finishes the dump in the plan's waits for S3. The checkpoint's first call, once
    the plan is made and before the first fork, stops that thread and joins it (waiting, at most, for
    a finishing under way); from then on the checkpoint polls and finishes in the mirror's thread,
    between two objects, and once the dump is finished only returns.
    """

    def __init__(self, running, monotonic):
        self.running = running
        self.monotonic = monotonic
        self.due = 0.0
        self.finished = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beside_plan, name="dump-finish", daemon=True)
        self._thread.start()

    def _beside_plan(self):
        try:
            while not self._stop.wait(POLL_EVERY):
                if self._finished():
                    return
        except BaseException:  # pylint: disable=broad-except
            # Kept by RunningDump (failure()): the checkpoint raises it in the mirror's thread.
            return

    def _finished(self):
        if self.running.exited():
            self.running.finish()
            self.finished = self.monotonic()
        return self.finished is not None

    def __call__(self):
        if self.finished is not None:
            return
        if self._thread is not None:
            self.join()
            if self.finished is not None:
                return
        now = self.monotonic()
        if now < self.due:
            return
        self.due = now + POLL_EVERY
        self._finished()

    def join(self):
        """Stop the thread beside the plan and wait for it to end."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def mirror_options(params, point=None, check_mode=False):
    """bucket_mirror's options for the buckets of the backup directory ``params["dest"]``."""
    dest, link_dest = params["dest"], params.get("link_dest")
    options = {name: params.get(name, spec.get("default")) for name, spec in s3.transport_argspec().items()}
    options.update((name, params.get(name)) for name in s3.connection_argspec("src_"))
    options.update(
        src="s3://", dest=os.path.join(dest, MIRROR_DIR),
        manifest=None if check_mode else os.path.join(dest, OBJECT_MANIFEST),
        link_dest=os.path.join(link_dest, MIRROR_DIR) if link_dest else None,
        buckets=params["buckets"], use_versions=params["use_versions"],
        # Versioned buckets are captured as of the dump's snapshot (check mode: PostgreSQL's clock,
        # so the skew is checked before anything is written).
        consistency_point=point if params["use_versions"] else None,
        max_clock_skew=params["max_clock_skew"], fail_on_best_effort=params["fail_on_best_effort"],
        concurrency=params["concurrency"], processes=params.get("processes"),
        min_free_bytes=params["min_free_bytes"], synced_by_commit=True)
    return options


def _mirror(params, point, log, check_mode, checkpoint=None):
    # Connected once the snapshot is exported, so what connecting costs runs beside pg_dump too.
    side = s3.connect(params, "src_", fast=True, max_pool_connections=max(10, 2 * params["concurrency"] + 4))
    # The buckets' versioning as the checks read it (run() passes begin's "checked"): one request
    # a bucket less (s3_source.versioning says why the earlier reading is safe).
    checked = params.get("checked")
    versioning = {b: v["versioned"] for b, v in checked["s3"]["buckets"].items()} if checked else None
    return Mirror(mirror_options(params, point, check_mode), side.client, None, log=log, check_mode=check_mode,
                  src_http=side.fast, checkpoint=checkpoint, src_versioning=versioning)


def check_services(p, kept=None):
    """{"postgres": ..., "s3": ...}: what the checks found. A failure names its service (failed_check),
    PostgreSQL's first when both fail. ``kept``: a dict that gets the PostgreSQL Client checked with
    as "postgres", its session kept for the dump's snapshot (postgres.check's ``keep``).

    The two services are asked at the same time, each waiting on its own network round trips.
    """
    s3_checked = {}

    def check_s3():
        try:
            s3_checked["found"] = check_source(p)
        except Exception as exc:  # pylint: disable=broad-except
            s3_checked["error"] = exc

    s3_thread = threading.Thread(target=check_s3, name="check-s3", daemon=True)
    s3_thread.start()
    try:
        with _checking("postgres"):
            client = postgres.client_from_params(p)
            if kept is not None:
                kept["postgres"] = client
            pg_checked = postgres.check(client, keep=kept is not None)
    finally:
        s3_thread.join()
    with _checking("s3"):
        if "error" in s3_checked:
            raise s3_checked["error"]
    return {"postgres": pg_checked, "s3": s3_checked["found"]}


def check_source(p):
    """s3_source.check of the S3 source ``p`` names. On an endpoint given by URL with keys every
    request goes through the fast transport, and boto3 (0.3-0.45 s to import and make a client,
    contending with PostgreSQL's check for the one interpreter) is never imported."""
    if not s3.HAS_BOTO3:
        raise RatBackupError(missing_required_lib("boto3"))
    side = s3.connect(p, "src_", fast=True)
    return s3_source.check(side.client, side.endpoint, p["buckets"], p["fail_on_best_effort"], side.fast)


@contextlib.contextmanager
def _checking(service):
    """Names the service in the error raised while checking it (failed_check), a bug's too: the role
    records a failed check as a failed run."""
    try:
        yield
    except RatBackupError as exc:
        exc.details.setdefault("failed_check", service)
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise _failure(exc, f"the {service} check", failed_check=service) from None


def begin(params, check_mode, kept=None):
    """backup_dir.begin for this backup: checks, lock, <name>.partial (or, in check mode, what would be)."""
    return backup_dir.begin(params["root"], "backup", "backup", params["min_free_bytes"],
                            int(params["lease_hours"] * 3600), check_mode, fs.utcnow(),
                            modules=params["python_modules"], idle_seconds=int(params["idle_minutes"] * 60),
                            check=lambda: check_services(params, kept))


def run(params, check_mode=False, log=None):
    """The backup_capture module's run: its result (module params in ``params``).

    Once the lock is held everything that fails is raised with the backup's name, .partial and lock
    token (and what the quiesce commands did), for backup_run abort. Whatever ends the run, a bug or
    a KeyboardInterrupt too, comes back as a result saying so: a process ending without one is taken
    by the role for one that died before it could run the command after the quiesce."""
    # The check's PostgreSQL session becomes the dump's (one connection less) when no quiesce command
    # runs between them: one could end the session, or wait for every session to go.
    kept = None if check_mode or params["quiesce_before"] else {}
    try:
        begun = begin(params, check_mode, kept)
    except BaseException as exc:  # pylint: disable=broad-except
        if kept:
            kept["postgres"].release()
        # Said with every failure: no quiesce command ran (the role then runs none either).
        raise _failure(exc, "the backup's start", quiesce={}) from None
    link_dest = begun["previous"] if params["incremental"] else None
    if check_mode:
        # No snapshot is exported: PostgreSQL's clock stands for it, so the skew and the plan are
        # what the real run would meet.
        checked = begun["checked"]["postgres"]
        mirror_params = dict(params, dest=begun["existing_dir"], link_dest=link_dest, checked=begun["checked"])
        mirrored = _mirror(mirror_params, checked["clock"], log, True).run()
        return dict(begun, dump=checked, mirror=mirrored, consistency=mirrored["consistency"], changed_during=[],
                    quiesce={})
    # Every program this run starts from now on (the quiesce commands, pg_dump) carries the run's
    # lock marker, so the lock keeper sees the run alive while one of them runs, also after the
    # controller is gone (lock.py); this process itself is the lock's taker, watched by pid.
    os.environ[lock.RUN_MARKER] = begun["lock"]["run_id"]
    quiesce = {}
    after_failed = None
    try:
        with quiesce_commands.terminable():
            captured, after_failed = _quiesced_capture(
                dict(params, dest=begun["partial"], link_dest=link_dest, checked=begun["checked"],
                     postgres_client=(kept or {}).get("postgres")), quiesce, log)
            captured["committed"] = commit(params, begun, captured, log)
    except BaseException as exc:  # pylint: disable=broad-except
        failure = _failure(exc, "capture", quiesce=quiesce)
        if after_failed is not None:
            # The commit failed after the command after the quiesce had: the platform not resumed is said first.
            failure.msg = f"{after_failed.msg}; then {failure.msg}"
        if "committed" in failure.details:
            # Complete and in place: nothing for abort to remove, and no failed run to record.
            raise failure from None
        failure.details.update((k, begun[k]) for k in ("name", "backup_dir", "partial", "lock_token", "lock"))
        raise failure from None
    if after_failed is not None:
        raise _complete_but(params, begun, captured["committed"], after_failed, log, quiesce)
    return dict(begun, quiesce=quiesce, **captured)


def _complete_but(params, begun, committed, after_failed, log, quiesce):
    """The error of a run whose command after the quiesce failed after a good capture. The backup was
    taken between the two commands, so it is committed as any other: thrown away it would leave the
    host with neither a resumed platform nor this backup. A second log line and the metrics say the
    run failed (rat_backup_last_status 0 pages), while the last success stays this backup."""
    msg = (f"backup {begun['name']} is complete in {begun['backup_dir']}, but {after_failed.msg}; "
           "the platform may still be quiesced")
    try:
        said = reporting.report(params["host_name"] or socket.gethostname(), False, begun["name"], fs.utcnow(),
                                committed, msg, params["log_file"], params["metrics_dir"])
    except Exception as exc:  # pylint: disable=broad-except
        msg = f"{msg}; the failure could not be logged: {_described(exc)}"
    else:
        if log:
            log(said["log_line"])
    return RatBackupError(msg, committed=committed, quiesce=quiesce, **after_failed.details)


def _failure(exc, what, **details):
    """``exc`` as the RatBackupError the module fails with, with ``details``; an unexpected one named
    (its traceback reaches the operator: Ansible shows "exception" at -vvv)."""
    if isinstance(exc, RatBackupError):
        exc.details.update(details)
        return exc
    return RatBackupError(f"{what} failed: {_described(exc)}", exception=traceback.format_exc(), **details)


def _described(exc):
    """What went wrong, in words: a RatBackupError's message, another exception's type and message."""
    if isinstance(exc, RatBackupError):
        return exc.msg
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _quiesced_capture(params, quiesce, log):
    """The capture between the quiesce commands: (its result, the command after's error or None);
    ``quiesce`` gets what each did."""
    captured = failure = after_failed = None
    try:
        if params["quiesce_before"]:
            quiesce["before"] = quiesce_commands.run(params["quiesce_before"], "quiesce_before")
        captured = capture_into(params, log)
    except BaseException as exc:  # pylint: disable=broad-except
        # A RatBackupError already, so a failing command after it is said in the same message.
        failure = _failure(exc, "capture")
        raise failure from None
    finally:
        if params["quiesce_after"]:
            after_failed = _after(params["quiesce_after"], quiesce, failure)
    return captured, after_failed


def _after(argv, quiesce, failure):
    """The command after the capture, also after a failure: its error (None when it succeeded), added
    to the capture's own when that failed first."""
    try:
        quiesce["after"] = quiesce_commands.run(argv, "quiesce_after")
    except RatBackupError as exc:
        quiesce["after"] = exc.details.get("quiesce_after", {"cmd": argv, "error": exc.msg})
        if failure is not None:
            failure.msg = f"{failure.msg}; then {exc.msg}"
        return exc
    return None


def consistency_record(params, captured):
    """The manifest's consistency record: the mirror's (best-effort without one) and the run's own
    facts, as backup_run's consistency option takes them (unset entries are not recorded)."""
    record = dict(captured["consistency"] or {"level": "best-effort"})
    record.update(use_versions=params["use_versions"], quiesced=bool(params["quiesce_before"]),
                  changed_during=captured["changed_during"], dump_snapshot=captured["dump"].get("snapshot"))
    return {k: v for k, v in record.items() if v is not None}


def commit(params, begun, captured, log=None):
    """backup_dir.commit of the captured backup (manifest.json last, rename, lock released), then its
    log line (also to ``log``, the module's syslog) and metrics: the commit's result. A failure before
    the rename is left to the caller's abort, which records it; one after it (the lock's release, the
    log line, the metrics) says the backup is complete and carries ``committed`` instead."""
    consistency = consistency_record(params, captured)
    now = fs.utcnow()
    stats = {"name": begun["name"], "backup_dir": begun["backup_dir"]}
    try:
        stats = backup_dir.commit(params["root"], "backup", begun["name"], begun["lock_token"], params["host_name"],
                                  ["postgres", "minio"], {"ansible_core": ANSIBLE_CORE_VERSION}, consistency,
                                  True, False, now)
        stats.update(reporting.report(params["host_name"] or socket.gethostname(), True, begun["name"], now, stats,
                                      None, params["log_file"], params["metrics_dir"]))
    except BaseException as exc:  # pylint: disable=broad-except
        if os.path.lexists(begun["partial"]) or not os.path.isdir(begun["backup_dir"]):
            raise
        # Renamed into place: the backup is complete, whatever failed after it.
        raise RatBackupError(f"backup {begun['name']} is complete in {begun['backup_dir']}, but after its commit: "
                             f"{_described(exc)}", committed=stats, exception=traceback.format_exc()) from exc
    if log:
        log(stats["log_line"])
    return stats


def capture_into(params, log=None):
    """Dump and mirror into the backup directory ``params["dest"]``: the result's dump, mirror,
    consistency, changed_during and timings."""
    client = params.get("postgres_client") or postgres.client_from_params(params)
    link_dest = params.get("link_dest")
    spec = postgres.DumpSpec(os.path.join(params["dest"], DUMP_PATH),
                             link_dest=os.path.join(link_dest, DUMP_PATH) if link_dest else None)
    dumped, mirrored, timings = capture(lambda: postgres.start_dump(client, spec),
                                        lambda point, checkpoint: _mirror(params, point, log, False, checkpoint))
    return {"changed": True, "dump": dumped, "mirror": mirrored, "consistency": mirrored["consistency"],
            "changed_during": mirrored["changed_during"], "timings": timings}
