# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import importlib.util
import io
import os
import socket
import struct
import subprocess
import sys
import tarfile
import threading

import pytest

from ansible_collections.rat.backup.plugins.module_utils._postgres import docker_exec
from ansible_collections.rat.backup.plugins.module_utils._postgres import programs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def frame(stream, data):
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeApi:
    """Engine API stand-in: exec_start hands out one end of a socketpair; the test plays the daemon."""

    def __init__(self, exit_code=0):
        self.client_end, self.daemon_end = socket.socketpair()
        self.exit_code = exit_code
        self.created = None
        self.running = True

    def exec_create(self, container, cmd, **kwargs):
        self.created = (container, cmd, kwargs)
        return {"Id": "exec1"}

    def exec_start(self, exec_id, socket=False):
        assert socket
        return self.client_end

    def exec_inspect(self, exec_id):
        return {"Running": self.running, "ExitCode": self.exit_code}


def test_exec_process_when_output_multiplexed_demuxes_and_returns_exit_code():
    api = FakeApi(exit_code=1)
    payload = os.urandom(100000)
    api.daemon_end.sendall(frame(1, payload[:60000]) + frame(2, b"warn\n") + frame(1, payload[60000:]))
    api.daemon_end.close()
    api.running = False
    proc = docker_exec.ExecProcess(api, "pg", ["pg_dump", "-Fc"], {"PGPASSWORD": "x"})
    got = bytearray()
    rc, _out, err = programs.communicate(proc, sink=got.extend)
    assert (rc, bytes(got), err) == (1, payload, "warn\n")
    assert api.created == ("pg", ["pg_dump", "-Fc"],
                           {"stdin": False, "stdout": True, "stderr": True, "tty": False,
                            "environment": ["PGPASSWORD=x"]})


def test_exec_process_when_command_stops_reading_input_communicate_returns(tmp_path):
    api = FakeApi()
    proc = docker_exec.ExecProcess(api, "pg", ["pg_restore", "--list"], {}, stdin=True)
    src = tmp_path / "big.dump"
    src.write_bytes(os.urandom(8 << 20))

    def daemon():
        # Reads a little input, answers, then never reads again (as dockerd does once the
        # command has exited): communicate must not wait for the rest to be sent.
        api.daemon_end.recv(10)
        api.daemon_end.sendall(frame(1, b"; TOC\n"))
        api.daemon_end.shutdown(socket.SHUT_WR)
    thread = threading.Thread(target=daemon)
    thread.start()
    api.running = False
    try:
        rc, out, _err = programs.communicate(proc, stdin_path=str(src))
    finally:
        thread.join()
    assert (rc, out) == (0, b"; TOC\n")


def test_tar_stream_when_read_back_holds_the_file(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(os.urandom(70000))
    archive = b"".join(docker_exec.tar_stream(str(src), "archive.dump"))
    assert len(archive) % tarfile.BLOCKSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.getmember("archive.dump")
        assert member.mode == 0o600
        assert tar.extractfile(member).read() == src.read_bytes()


def test_connect_when_daemon_unreachable_raises_naming_it(tmp_path):
    if importlib.util.find_spec("docker") is None:
        pytest.skip("docker SDK not installed")
    where = f"unix://{tmp_path}/no.sock"
    with pytest.raises(RatBackupError, match=f"cannot reach the Docker daemon at {where}"):
        docker_exec.connect(where, timeout=2)


def test_connect_when_docker_sdk_missing_raises_naming_it(monkeypatch):
    # None in sys.modules makes "import docker" raise ImportError, as on a host without the SDK.
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(RatBackupError, match=r"docker.*needed for container mode") as caught:
        docker_exec.connect("unix:///nonexistent/docker.sock", timeout=2)
    assert "import of docker" in caught.value.details["exception"]


def test_import_when_host_mode_leaves_docker_sdk_unimported():
    code = ("import sys; from ansible_collections.rat.backup.plugins.module_utils import postgres; "
            "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
