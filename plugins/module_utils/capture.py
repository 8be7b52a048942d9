# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One backup's capture: the database dump and the buckets' mirror at one consistency point, in one
process (the backup_capture module), overlapped.

pg_dump's session exports its snapshot first, so the consistency point T is known (within the few
milliseconds of that statement) before anything is written. From then on pg_dump writes the dump
while this process connects to S3 and plans the mirror, and meanwhile measures S3's clock against
PostgreSQL's (the wait for its Date header to tick, half a second on average, spent beside pg_dump
and what of the plan does not depend on it: listing.Lister.pin). Versioned buckets are listed as of
T once the clock is known, the skew is checked before anything is written; then the plan is downloaded.
Then the dump is finished: rows counted at the snapshot, linked to the previous backup's when
unchanged, its result written beside it. Each part leaves the files and results it leaves alone
(postgres/rat.dump with its .json, minio/ and minio.json), which backup_run commit reads.

Threads and fork: the mirror's pool forks worker processes. A fork copies only the forking thread,
with every lock as the other threads held it, so nothing may run beside it that a worker could
wait on. Here nothing does on this host: pg_dump's stdout is the dump file itself and its stderr an
unlinked file (programs.FileProcess), so its output never passes through Python; it is polled
(a waitpid) from the mirror's own thread. The plan's threads (the listing read ahead, S3's clock)
have ended when it returns, before the first fork. Only in container mode, where the output arrives
on the exec's socket, one thread copies it, holding no lock a worker uses (programs.StreamedProcess).

Failures: pg_dump failing while the mirror runs stops the mirror at its next object (the run fails
naming pg_dump's error); the mirror failing terminates pg_dump and reaps it (the run fails naming
the mirror's error). Either way the partial dump is removed and the rest of the .partial directory
is left for backup_run abort.
"""

from __future__ import annotations

import os
import time

from ansible_collections.rat.backup.plugins.module_utils import postgres, s3
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import DUMP_PATH, OBJECT_MANIFEST
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.mirror import Mirror

MIRROR_DIR = "minio"
# pg_dump's state is read at most this often by the mirror's checkpoint (once per object otherwise).
POLL_EVERY = 0.05


def capture(start_dump, mirror_for, monotonic=time.monotonic):
    """(dump result, mirror result, timings). ``start_dump()`` exports the snapshot and starts pg_dump
    (a RunningDump); ``mirror_for(point, checkpoint)`` is the Mirror of the buckets as of its
    consistency point, which calls ``checkpoint()`` before each object."""
    started = monotonic()
    running = start_dump()
    timings = {"snapshot": monotonic() - started}
    try:
        mirrored = mirror_for(running.point, _Watch(running, monotonic)).run()
    except BaseException as exc:
        # pg_dump's failure first: the mirror may have been stopped because of it.
        failure = running.failure()
        stopped = _abort(running)
        if failure is not None:
            raise RatBackupError(f"{failure.msg}; the bucket mirror was stopped", failed_step="pg_dump",
                                 **failure.details)
        if isinstance(exc, RatBackupError):
            raise RatBackupError(f"bucket mirror: {exc.msg} ({stopped})", failed_step="mirror", **exc.details)
        raise
    timings["mirror"] = monotonic() - started
    dumped = running.finish()
    timings["dump"] = monotonic() - started
    return dumped, mirrored, {name: round(seconds, 3) for name, seconds in timings.items()}


def _abort(running):
    """Stop pg_dump and remove the partial dump; says how, for the error that caused it."""
    try:
        stopped = running.abort()
    except RatBackupError as exc:
        return f"pg_dump may still run: {exc.msg}"
    if not stopped:
        return "the dump pg_dump had finished was discarded"
    return "pg_dump was stopped" if running.pid is None else f"pg_dump (pid {running.pid}) was stopped"


class _Watch:
    """The mirror's checkpoint: raises pg_dump's error once it has failed."""

    def __init__(self, running, monotonic):
        self.running = running
        self.monotonic = monotonic
        self.due = 0.0

    def __call__(self):
        now = self.monotonic()
        if now < self.due:
            return
        self.due = now + POLL_EVERY
        failure = self.running.failure()
        if failure is not None:
            raise failure


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
        min_free_bytes=params["min_free_bytes"])
    return options


def _mirror(params, point, log, check_mode, checkpoint=None):
    # Connected once the snapshot is exported, so what connecting costs runs beside pg_dump too.
    side = s3.connect(params, "src_", fast=True, max_pool_connections=max(10, 2 * params["concurrency"] + 4))
    return Mirror(mirror_options(params, point, check_mode), side.client, None, log=log, check_mode=check_mode,
                  src_http=side.fast, checkpoint=checkpoint)


def run(params, check_mode=False, log=None):
    """The backup_capture module's run: its result (module params in ``params``)."""
    client = postgres.client_from_params(params)
    if check_mode:
        # No snapshot is exported: PostgreSQL's clock stands for it, so the skew and the plan are
        # what the real run would meet.
        checked = postgres.check(client)
        mirrored = _mirror(params, checked["clock"], log, True).run()
        return {"changed": True, "dump": checked, "mirror": mirrored, "consistency": mirrored["consistency"],
                "changed_during": []}
    link_dest = params.get("link_dest")
    spec = postgres.DumpSpec(os.path.join(params["dest"], DUMP_PATH),
                             link_dest=os.path.join(link_dest, DUMP_PATH) if link_dest else None)
    dumped, mirrored, timings = capture(lambda: postgres.start_dump(client, spec),
                                        lambda point, checkpoint: _mirror(params, point, log, False, checkpoint))
    return {"changed": True, "dump": dumped, "mirror": mirrored, "consistency": mirrored["consistency"],
            "changed_during": mirrored["changed_during"], "timings": timings}
