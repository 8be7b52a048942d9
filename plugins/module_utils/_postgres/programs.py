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
