# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The quiesce commands of a backup (backup_capture's quiesce_before and quiesce_after) and what
stops the part of its run they frame (SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def run(argv, what):
    """Run a quiesce command (an argv, no shell) to its end; its rc, output tails and seconds.

    Read as Ansible's command module reads it: until the command has exited, not until its pipes
    close. A program it leaves running in the background (a service started without redirecting its
    output) keeps them open; waiting for that one would hold the lock to the end of its lease. Only
    the tails are kept, however much it prints."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise RatBackupError(f"{what} command {argv[0]!r} could not run: {exc.strerror or exc}", cmd=argv)
    tails = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    try:
        with selectors.DefaultSelector() as selector:
            for pipe in tails:
                selector.register(pipe, selectors.EVENT_READ)
            # Once it has exited, what is ready is read (at most a few pipe buffers: a program left
            # writing must not keep this loop going), and no more.
            drains = 16
            while selector.get_map() and drains:
                exited = proc.poll() is not None
                events = selector.select(0 if exited else 0.1)
                for key, dummy in events:
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fileobj)
                    tails[key.fileobj] += data
                    # Enough bytes for the tail's characters in UTF-8.
                    del tails[key.fileobj][:-4 * TAIL_CHARS]
                if exited:
                    drains = drains - 1 if events else 0
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    said = {"cmd": argv, "rc": rc, "seconds": round(time.monotonic() - started, 3),
            "stdout": _tail(tails[proc.stdout]), "stderr": _tail(tails[proc.stderr])}
    if rc != 0:
        raise RatBackupError(f"{what} command {' '.join(argv)} failed (rc {rc})"
                             + (f": {said['stderr']}" if said["stderr"] else ""), **{what: said})
    return said


TAIL_CHARS = 2000


def _tail(data):
    return bytes(data).decode("utf-8", "replace").strip()[-TAIL_CHARS:]


class Terminated(BaseException):
    """SIGTERM while the lock is held: raised in the main thread as KeyboardInterrupt is."""


@contextlib.contextmanager
def terminable():
    """SIGTERM raises Terminated here, once: the schedule's timeout sends it to the whole process group,
    and by default this process ended at once, without the command after the quiesce (no rescue runs
    it: the controller ends too). Forked workers end by it as before; exec resets the handler."""
    owner = os.getpid()
    raised = []

    def terminated(signum, _frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        # A second one would cut short what the first one made run (the command after the quiesce).
        if not raised:
            raised.append(signum)
            raise Terminated(f"{signal.Signals(signum).name} received; the run was stopped")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
