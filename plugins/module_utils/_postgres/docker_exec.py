# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes inside a running container through the Docker Engine API, with pipes like subprocess.

postgres.py runs PostgreSQL's client programs either on the host (subprocess) or inside the
database container (this module); both expose the same small process interface, so dump and
restore are written once. Output is read frame by frame from the exec socket, so memory stays
bounded whatever the size of a dump.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import tarfile
import threading
import time
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

STDOUT = 1
STDERR = 2
# Multiplexed exec stream (no TTY): 1 byte stream id, 3 bytes padding, 4 bytes big-endian size.
_FRAME_HEADER = struct.Struct(">BxxxL")
# Seconds a blocked stdin write waits before checking that the command still runs.
_WRITE_POLL = 0.5


# Stand-ins for the SDK's exception classes until it is imported: nothing can raise those before.
_UNRAISED = {}


def _sdk_error(name):
    """The docker SDK exception class ``name``, for ``except`` (fake clients in tests never import it)."""
    module = sys.modules.get("docker.errors")
    if module:
        return getattr(module, name)
    return _UNRAISED.setdefault(name, type(name, (Exception,), {}))


def connect(docker_host=None, timeout=60):
    """Low-level API client for ``docker_host`` (default: DOCKER_HOST or the local socket)."""
    # Imported here, not with this module: the PostgreSQL layer imports this module in host mode too, and the
    # SDK (requests, urllib3) costs about 0.1 s to import.
    try:
        import docker  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise RatBackupError(missing_required_lib("docker") + " (needed for container mode)",
                             exception=traceback.format_exc())
    where = docker_host or os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        if docker_host:
            api = docker.APIClient(base_url=docker_host, version="auto", timeout=timeout)
        else:
            api = docker.APIClient(version="auto", timeout=timeout, **docker.utils.kwargs_from_env())
        api.ping()
    except _sdk_error("DockerException") as exc:
        raise RatBackupError(f"cannot reach the Docker daemon at {where}: {exc}", docker_host=docker_host)
    return api


def require_running(api, container):
    """Fail clearly unless ``container`` exists and runs."""
    try:
        state = api.inspect_container(container)["State"]
    except _sdk_error("NotFound"):
        raise RatBackupError(f"container {container!r} does not exist", container=container)
    except _sdk_error("APIError") as exc:
        raise RatBackupError(f"cannot inspect container {container!r}: {exc.explanation or exc}", container=container)
    if not state.get("Running"):
        raise RatBackupError(f"container {container!r} is not running (status: {state.get('Status')})", container=container)


class ExecProcess:
    """One command running in a container: write stdin, read (stream, bytes) frames, wait for the exit code."""

    def __init__(self, api, container, argv, env=None, stdin=False):
        self._api = api
        self.argv = list(argv)
        try:
            self._exec_id = api.exec_create(
                container, self.argv, stdin=stdin, stdout=True, stderr=True, tty=False,
                environment=[f"{k}={v}" for k, v in (env or {}).items()],
            )["Id"]
            response_socket = api.exec_start(self._exec_id, socket=True)
        except _sdk_error("NotFound"):
            raise RatBackupError(f"container {container!r} does not exist", container=container)
        except _sdk_error("APIError") as exc:
            raise RatBackupError(f"cannot run {self.argv[0]} in container {container!r}: {exc.explanation or exc}",
                                 container=container)
        # Keep the SDK's wrapper alive (it owns the HTTP response) but talk to the raw socket:
        # a dump may be silent for minutes (big index), so no read timeout applies.
        self._holder = response_socket
        self._sock = getattr(response_socket, "_sock", response_socket)
        self._sock.settimeout(None)
        self._reader = self._sock.makefile("rb", buffering=fs.CHUNK)
        self._input_closed = threading.Event()

    def write(self, data):
        """Send ``data`` to the command's stdin; BrokenPipeError once the command has exited.

        The daemon stops reading stdin when the command exits but keeps the exec "running" until
        stdin ends, so a blocking sendall would hang: writability is awaited in short steps,
        and close_stdin (called by the reader once all output is in) ends the wait.
        """
        view = memoryview(data)
        while view:
            if self._input_closed.is_set():
                raise BrokenPipeError(f"{self.argv[0]} in the container stopped reading its input")
            _readable, writable, _errors = select.select([], [self._sock], [], _WRITE_POLL)
            if writable:
                view = view[self._sock.send(view):]

    def close_stdin(self):
        self._input_closed.set()
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def frames(self):
        """Yield (STDOUT|STDERR, bytes) until the command closes its output."""
        while True:
            header = self._reader.read(_FRAME_HEADER.size)
            if len(header) < _FRAME_HEADER.size:
                return
            stream, size = _FRAME_HEADER.unpack(header)
            payload = self._reader.read(size)
            if len(payload) < size:
                return
            if stream in (STDOUT, STDERR):
                yield stream, payload

    def wait(self, timeout=60.0):
        """Exit code, from exec_inspect once the command has finished (polled, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self._api.exec_inspect(self._exec_id)
            if not info.get("Running"):
                self.close()
                code = info.get("ExitCode")
                return 255 if code is None else code
            if time.monotonic() > deadline:
                self.close()
                raise RatBackupError(f"{self.argv[0]} in the container did not exit within {timeout:.0f}s after closing its output")
            time.sleep(0.05)

    def kill(self):
        # The Engine API cannot signal an exec; closing the connection closes its pipes, which
        # ends pg_dump/pg_restore/psql (they exit on a broken pipe or EOF). Shut down first: that
        # wakes a read blocked in another thread (the dump's copier), which close alone would wait for.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close()

    def close(self):
        for closer in (self._reader.close, self._sock.close):
            try:
                closer()
            except OSError:
                pass


def tar_stream(path, name):
    """A one-file tar archive of ``path`` (stored as ``name``), produced in chunks for put_archive."""
    size = os.path.getsize(path)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(fs.CHUNK)
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
    if sent != size:
        raise RatBackupError(f"{path} changed size while being copied into the container ({size} -> {sent} bytes)")
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def put_file(api, container, path, dest_dir, name):
    """Copy the local file ``path`` to ``dest_dir/name`` inside ``container`` without loading it into memory."""
    try:
        ok = api.put_archive(container, dest_dir, tar_stream(path, name))
    except _sdk_error("APIError") as exc:
        raise RatBackupError(f"cannot copy {path} into container {container!r}: {exc.explanation or exc}",
                             container=container)
    if not ok:
        raise RatBackupError(f"cannot copy {path} into container {container!r}:{dest_dir}", container=container)
