# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 servers for the unit tests, each on its own loopback port: moto (writes a listed space as
%20) and `rclone serve s3` (writes it as "+", as AWS and MinIO do; lab/deps.sh all installs it
into .venv/bench-tools). Also the awkward-key corpus both the differential tests and the
integration target use."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

KEY, SECRET = "rat-test", "rat-test-secret"
# Keys people and programs write: spaces, "+", "%", "&", "=", unicode, "//", a trailing "/",
# a 1,024-byte key (in 200-byte segments: a file-backed server keeps each as a file name),
# control characters, XML's own characters, and what a URL would read as query or fragment.
CORPUS = [
    "plain.txt",
    "landing/a b+c=d&e.csv",
    "plus+only",
    "sp ace",
    "pct%25and%",
    "amp&eq=sign",
    "ünïcødé/ключ/鍵.bin",
    "emoji 😀.txt",
    "dir//double",
    "dir/trailing/",
    "q?x=1&y#z",
    "~tilde",
    "xml<&>'\"",
    "tab\there",
    "ctl\x01char",
]
_LONG = "/".join("long-%d-" % i + "x" * 192 for i in range(5)) + "/"
CORPUS.append(_LONG + "y" * (1024 - len(_LONG)))


def moto_in_process():
    """For a module-scoped fixture (``yield from``): moto's ThreadedMotoServer on a free loopback port,
    its URL, then the server stopped."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield "http://%s:%d" % (host, port)
    server.stop()


def read_request(sock, buffer=b""):
    """The next request a scripted HTTP/1.1 server receives on ``sock``, ``buffer`` being what it has
    read beyond the last one: (request line, {header: value}, body, what was read beyond it), or
    None once the client has closed."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("Content-Length", 0))
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    return lines[0], headers, buffer[:length], buffer[length:]


def rclone_binary():
    """The `rclone` with `serve s3` that lab/deps.sh all installs (.venv/bench-tools), or None."""
    here = os.path.realpath(__file__)
    for venv in (os.path.join(here.rsplit(os.sep + "tests" + os.sep, 1)[0], ".venv"),
                 os.path.dirname(os.path.dirname(sys.executable))):
        path = os.path.join(venv, "bench-tools", "bin", "rclone")
        if os.access(path, os.X_OK):
            return path
    return None


def worker_port(base):
    """``base`` + a step per pytest-xdist worker, so two workers never share a port."""
    return base + 4 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


def free_port():
    """A loopback port nothing listens on now (a server left behind by a killed run keeps its own)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


# $1: the server's directory; the rest: its command line. TERM (stop(), or the parent's death)
# ends the server, then its directory and log go; a server that exits by itself leaves its log
# for the error that says why.
_END_WITH_PARENT = '''dir=$1; shift
"$@" & server=$!
trap 'kill $server; wait $server; rm -rf "$dir" "$dir.log"; exit 143' TERM
wait $server
'''


class Rclone:
    """`rclone serve s3` over a temporary directory on 127.0.0.1:``port`` (a free one by default);
    stop() ends it. ``detach``: in its own session, to outlive a short-lived starter (the
    integration target's); a unit test's server ends with the process that started it, also when
    that process ends without stopping it (setpriv's parent-death signal, where setpriv exists)."""

    def __init__(self, port=None, key=KEY, secret=SECRET, detach=False):
        port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="rat-rclone-s3-")
        self.url = "http://127.0.0.1:%d" % port
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
        self.log = open(self.dir + ".log", "wb")
        argv = [rclone_binary(), "serve", "s3", "--addr", "127.0.0.1:%d" % port, "--auth-key",
                "%s,%s" % (key, secret), "--etag-hash", "MD5", "--config", "/dev/null", self.dir]
        if not detach and shutil.which("setpriv"):
            # ansible-test runs each unit test in a fork that ends with os._exit, so a module-scoped
            # fixture's stop() never runs there: the server must end with the process that started
            # it, and take its directory and log along (a shell between them, since rclone cannot).
            argv = ["setpriv", "--pdeathsig", "TERM", "--", "sh", "-c", _END_WITH_PARENT, "sh", self.dir] + argv
        self.proc = subprocess.Popen(argv,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
                                     start_new_session=detach)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # Exited: the port was taken, or rclone refused its arguments (its log says which).
                break
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rclone serve s3 did not listen on %d" % port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log.name)
        shutil.rmtree(self.dir, ignore_errors=True)
