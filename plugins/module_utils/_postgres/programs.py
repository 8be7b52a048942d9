# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a program on this host or in a container, with the same small process interface.

The plumbing under the PostgreSQL client (as community.docker keeps its ``_common_cli`` apart
from what the commands mean): ``HostProcess`` (subprocess) and ``docker_exec.ExecProcess``
both write stdin, yield (stream, bytes) frames and wait for an exit code; ``Runner`` picks one;
``communicate`` runs a process to the end with bounded memory.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import threading

from ansible_collections.rat.backup.plugins.module_utils._postgres import docker_exec
from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Error text kept from a program: enough to explain any failure, bounded whatever it prints.
STDERR_LIMIT = 256 * 1024


def first_lines(text, limit=5):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[:limit]) or "(no message)"


class HostProcess:
    """subprocess with the same interface as docker_exec.ExecProcess."""

    def __init__(self, argv, env, stdin=False):
        self.argv = list(argv)
        full_env = dict(os.environ)
        full_env.update(env)
        try:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.argv, env=full_env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        except OSError as exc:
            raise RatBackupError(f"cannot run {self.argv[0]}: {exc.strerror}")

    def write(self, data):
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def close_stdin(self):
        if self._proc.stdin:
            try:
                self._proc.stdin.close()
            except (OSError, ValueError):
                pass

    def frames(self):
        streams = {self._proc.stdout.fileno(): docker_exec.STDOUT, self._proc.stderr.fileno(): docker_exec.STDERR}
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            while streams:
                for key, _events in selector.select():
                    data = os.read(key.fd, fs.CHUNK)
                    if not data:
                        selector.unregister(key.fd)
                        del streams[key.fd]
                        continue
                    yield streams[key.fd], data

    def wait(self, timeout=60.0):
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RatBackupError(f"{self.argv[0]} did not exit within {timeout:.0f}s after closing its output")
        finally:
            self._proc.stdout.close()
            self._proc.stderr.close()

    def kill(self):
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class FileProcess:
    """A program on this host whose stdout is a new file (``path``, 0600; None: no output) and whose
    stderr is an unlinked temporary file: the kernel moves the output, no pipe needs reading, so no
    thread of ours runs beside the caller while the program does (the caller may fork worker
    processes meanwhile: capture.py). ``poll`` never blocks; ``wait`` gives (exit code, stderr)."""

    def __init__(self, argv, env, path):
        self.argv = list(argv)
        full_env = dict(os.environ)
        full_env.update(env)
        self._err = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        out = None
        try:
            out = open_exclusive(path) if path else subprocess.DEVNULL
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.argv, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=self._err, close_fds=True)
        except OSError as exc:
            self._err.close()
            raise RatBackupError(f"cannot run {self.argv[0]}: {exc.strerror}")
        finally:
            if path and out is not None:
                os.close(out)
        self.pid = self._proc.pid
        self._waited = None

    def poll(self):
        return self._proc.poll()

    def wait(self):
        if self._waited is None:
            rc = self._proc.wait()
            self._err.seek(0)
            self._waited = rc, self._err.read(STDERR_LIMIT).decode("utf-8", "replace")
            self._err.close()
        return self._waited

    def kill(self, grace=5.0):
        """SIGTERM (pg_dump then closes its connection), SIGKILL after ``grace`` seconds; reaped.
        True when it was still running."""
        running = self._proc.poll() is None
        if running:
            self._proc.terminate()
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._err.close()
        return running


class StreamedProcess:
    """A program in the container whose stdout is copied into a new file (``path``, 0600) by one
    thread, with the interface of FileProcess (an exec's output can only be read from its socket).

    The thread runs while the caller may fork worker processes (capture.py). A fork copies only the
    forking thread, with every lock as it was: the copier holds only the locks of its own socket
    reader and nothing else (it writes with os.write, imports nothing, logs nothing), and a worker
    never touches those objects, so no worker can wait on a lock the copier held at the fork.
    """

    def __init__(self, proc, path):
        self._proc = proc
        self._fd = open_exclusive(path)
        self._err = bytearray()
        self._failed = None
        self._rc = None
        self.pid = None
        self._thread = threading.Thread(target=self._copy, name="dump-output", daemon=True)
        self._thread.start()

    def _copy(self):
        try:
            for stream, data in self._proc.frames():
                if stream == docker_exec.STDOUT:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._fd, view):]
                elif len(self._err) < STDERR_LIMIT:
                    self._err += data[:STDERR_LIMIT - len(self._err)]
        except OSError as exc:
            self._failed = exc
            self._proc.kill()

    def poll(self):
        if self._thread.is_alive():
            return None
        return self.wait()[0]

    def wait(self):
        self._thread.join()
        if self._rc is None:
            os.close(self._fd)
            self._rc = self._proc.wait()
            if self._failed is not None:
                raise RatBackupError(f"cannot write the output of {self._proc.argv[0]}: {self._failed}")
        return self._rc, self._err.decode("utf-8", "replace")

    def kill(self, grace=5.0):
        """Closes the exec's connection (the Engine API cannot signal an exec): the program's next
        write fails and it exits; then waits (bounded by ``grace``) for the daemon to see it end.
        True when it was still running."""
        running = self._thread.is_alive()
        self._proc.kill()
        self._thread.join()
        if self._rc is None:
            os.close(self._fd)
            self._rc = self._proc.wait(grace)
        return running


def open_exclusive(path):
    """A new file for a program's output: 0600, never an existing file (a symlink planted there)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


class Runner:
    """Where programs run: this host, or a container (Docker exec)."""

    def __init__(self, container=None, docker_host=None, api=None):
        self.container = container
        self.docker_host = docker_host
        self._api = api
        if container and api is None:
            self._api = docker_exec.connect(docker_host)
            docker_exec.require_running(self._api, container)

    @property
    def in_container(self):
        return bool(self.container)

    def spawn(self, argv, env, stdin=False):
        if self.container:
            return docker_exec.ExecProcess(self._api, self.container, argv, env, stdin=stdin)
        return HostProcess(argv, env, stdin=stdin)

    def spawn_to_file(self, argv, env, path):
        """Start ``argv`` with its stdout going to the new file ``path`` (None: discarded, host only)."""
        if self.container:
            return StreamedProcess(docker_exec.ExecProcess(self._api, self.container, argv, env), path)
        return FileProcess(argv, env, path)

    def run(self, argv, env=None):
        """Run ``argv`` to the end here or in the container: (exit code, stdout bytes, stderr text)."""
        return communicate(self.spawn(argv, env or {}))

    def copy_in(self, path, name):
        """Copy a local file into a fresh private directory of the container; returns (dir, path)."""
        rc, out, err = communicate(self.spawn(["mktemp", "-d", "/tmp/rat-backup.XXXXXXXX"], {}))
        if rc != 0:
            raise RatBackupError(f"cannot create a temporary directory in container {self.container!r}: {first_lines(err)}")
        tmp_dir = out.decode().strip()
        docker_exec.put_file(self._api, self.container, path, tmp_dir, name)
        return tmp_dir, f"{tmp_dir}/{name}"

    def remove(self, path):
        rc, _out, err = communicate(self.spawn(["rm", "-rf", "--", path], {}))
        if rc != 0:
            raise RatBackupError(f"cannot remove {path} in container {self.container!r}: {first_lines(err)}")


def communicate(proc, stdin_path=None, sink=None):
    """Run ``proc`` to the end: feed ``stdin_path`` (a file, streamed), send stdout to ``sink`` or collect it.

    Returns (exit code, stdout bytes (empty when a sink took it), stderr text). A program that
    stops reading early (pg_restore --list reads only the TOC) just ends the feeding.
    """
    feeder = None
    fed = {"error": None}
    if stdin_path is not None:
        def feed():
            try:
                with open(stdin_path, "rb") as handle:
                    while True:
                        chunk = handle.read(fs.CHUNK)
                        if not chunk:
                            break
                        proc.write(chunk)
            except (BrokenPipeError, ConnectionResetError, ValueError):
                # The command stopped reading (or its output is complete and stdin was closed).
                pass
            except OSError as exc:
                fed["error"] = exc
            finally:
                proc.close_stdin()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    out = bytearray()
    err = bytearray()
    try:
        for stream, data in proc.frames():
            if stream == docker_exec.STDOUT:
                if sink is not None:
                    sink(data)
                else:
                    out += data
            elif len(err) < STDERR_LIMIT:
                err += data[:STDERR_LIMIT - len(err)]
    except BaseException:
        proc.kill()
        raise
    # All output is in: whatever input the command left unread is not needed.
    proc.close_stdin()
    if feeder is not None:
        feeder.join()
    rc = proc.wait()
    if fed["error"] is not None:
        raise RatBackupError(f"cannot read {stdin_path}: {fed['error']}")
    return rc, bytes(out), err.decode("utf-8", "replace")
