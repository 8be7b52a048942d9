# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several GETs in flight per connection (_s3/pipeline.py): against moto and `rclone serve s3`
directly, and through a loopback proxy in front of moto that logs what it received ahead of each
answer and plays one fault on a chosen request (a reset, a 500, a body cut short, Connection:
close, a server that reads one request at a time, an answer for another key or with another
ETag), with the mirror in a worker process as bucket_mirror runs it."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import struct
import threading

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import mirror as mr  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import pipeline  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import TMP_DIR  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.object_manifest import read_manifest  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.s3_servers import (  # noqa: E402
    KEY, SECRET, Rclone, moto_in_process, rclone_binary, read_request)
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror import (  # noqa: E402
    options as mirror_options, tree)

KEYS = ["k%02d" % i for i in range(20)]
_ERROR = b"<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>scripted</Message></Error>"


def bodies():
    # No "HTTP/1.1" inside: the proxy counts requests received ahead by that text.
    return {key: hashlib.sha256(key.encode()).digest() * (10 + index) for index, key in enumerate(KEYS)}


@pytest.fixture(scope="module")
def moto():
    yield from moto_in_process()


@pytest.fixture
def lake(moto, monkeypatch):
    """A bucket with KEYS on moto: (URL, bucket, {key: body}). One per test: other test files' moto
    servers in the same process share its buckets, and some empty them all."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    client = s3.make_client(s3.Endpoint(moto, KEY, SECRET), retry_max_attempts=1)
    client.create_bucket(Bucket="pipelined")
    objects = bodies()
    for key, body in objects.items():
        client.put_object(Bucket="pipelined", Key=key, Body=body)
    yield moto, "pipelined", objects
    for key in objects:
        client.delete_object(Bucket="pipelined", Key=key)
    client.delete_bucket(Bucket="pipelined")


class Proxy:
    """A loopback server in front of ``upstream`` (URL), reading each connection's requests in order
    and answering each with the upstream's answer, except where ``faults`` ({path: [fault of its
    first request, of its second, ...]}) says otherwise. ``log``: (connection number, path, requests
    received ahead of it when it was answered, fault); ``delivered``: paths answered in full, 2xx.
    ``one_at_a_time``: a server that reads a request and drops what came with it (no pipelining)."""

    def __init__(self, upstream, faults=None, one_at_a_time=False):
        self.upstream = upstream.split("//")[1].split(":")
        self.faults = {path: list(plays) for path, plays in (faults or {}).items()}
        self.one_at_a_time = one_at_a_time
        self.log, self.delivered = [], []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.socks = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        number = 0
        while True:
            try:
                sock, dummy = self.listener.accept()
            except OSError:
                return
            number += 1
            self.socks.append(sock)
            threading.Thread(target=self.converse_until_closed, args=(sock, number), daemon=True).start()

    def converse_until_closed(self, sock, number):
        try:
            self.converse(sock, number)
        except OSError:
            # The client dropped the connection (as it does on an answer it will not take).
            pass

    def converse(self, sock, number):
        upstream = http.client.HTTPConnection(self.upstream[0], int(self.upstream[1]), timeout=30)
        buffer = b""
        with sock:
            while True:
                received = read_request(sock, buffer)
                if received is None:
                    return
                line, headers, body, buffer = received
                method, path = line.split(" ")[:2]
                if self.one_at_a_time:
                    buffer = b""
                plays = self.faults.get(path)
                fault = plays.pop(0) if plays else None
                self.log.append((number, path, buffer.count(b" HTTP/1.1\r\n"), fault))
                if fault == "reset":
                    # RST, not FIN: as a crashed server or a middlebox ends it.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if fault == "500":
                    sock.sendall(self.answer(500, [("Content-Type", "application/xml")], _ERROR % b"InternalError"))
                    continue
                if fault == "403":
                    sock.sendall(self.answer(403, [("Content-Type", "application/xml")], _ERROR % b"AccessDenied"))
                    continue
                asked = fault[3:] if fault and fault.startswith("as ") else path
                forwarded = {k: v for k, v in headers.items() if k.lower() not in ("connection", "host")}
                upstream.request(method, asked, body=body, headers=forwarded)
                got = upstream.getresponse()
                data = got.read()
                kept = [(k, v) for k, v in got.getheaders()
                        if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server")]
                if fault == "cut":
                    sock.sendall(self.answer(got.status, kept, data)[:-len(data) // 2])
                    return
                if fault == "close":
                    kept.append(("Connection", "close"))
                if fault == "etag":
                    # Written, but answered with an ETag that is not its body's MD5 (nor any listed one).
                    kept = [(k, '"%s"' % ("0" * 32) if k.lower() == "etag" else v) for k, v in kept]
                if got.status < 300 and method == "GET" and "?" not in path:
                    # Before the send: once sent, the client may read it before this thread goes on.
                    self.delivered.append(path)
                sock.sendall(self.answer(got.status, kept, data))
                if fault in ("close", "fin"):
                    # "fin": as a server ends a connection it finds idle, with no word in the answer.
                    return

    @staticmethod
    def answer(status, headers, data):
        lines = ["HTTP/1.1 %d X" % status] + ["%s: %s" % pair for pair in headers] + ["Content-Length: %d" % len(data)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data

    def requests_of(self, path):
        return [entry for entry in self.log if entry[1] == path]

    def close(self):
        self.listener.close()
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxy():
    started = []

    def start(*args, **kwargs):
        started.append(Proxy(*args, **kwargs))
        return started[-1]

    yield start
    for one in started:
        one.close()


def mirror(url, bucket, dest, **overrides):
    """bucket_mirror S3 -> disk as the module runs it: one worker process (its requests in one order)."""
    settings = mirror_options(src="s3://" + bucket, dest=str(dest), manifest=str(dest) + ".json", processes=1,
                              src_endpoint=url, dest_endpoint=url, src_access_key=KEY, src_secret_key=SECRET)
    settings.update(overrides)
    transport = fast_transport.Transport(s3.Endpoint(url, KEY, SECRET), attempts=3)
    return mr.Mirror(settings, None, None, src_http=transport).run()


def assert_mirrored(dest, bucket, objects):
    """Every object's bytes in place, its sha256 and size in the manifest, no temporary file left."""
    assert tree(str(dest)) == objects
    entries = {e.key: e for e in read_manifest(str(dest) + ".json", "manifest")[1]}
    assert {k: (e.sha256, e.size) for k, e in entries.items()} == {
        k: (hashlib.sha256(b).hexdigest(), len(b)) for k, b in objects.items()}
    assert not temp_files(dest)


def temp_files(dest):
    return [name for dummy, dummy_dirs, files in os.walk(dest / TMP_DIR) for name in files]


def path_of(bucket, key):
    return "/%s/%s" % (bucket, key)


# --- against real servers ---------------------------------------------------------------------------


def pipelined_gets(url, bucket):
    """Expect every object, then get each: (answers as bytes, most requests the transport had in flight
    at once, the Pipeline, whether any request was made alone)."""
    transport = fast_transport.Transport(s3.Endpoint(url, KEY, SECRET), attempts=1)
    listed = list(transport.list_current(bucket))
    transport.close()
    transport.expect([(bucket, key, None, etag, size) for key, size, etag, dummy in listed])
    pipe = transport.local.pipeline
    most = pipe.sent
    got = {}
    for key, dummy_size, dummy_etag, dummy_time in listed:
        most = max(most, pipe.sent)
        got[key] = transport.get_object(bucket, key)["Body"].read()
    return got, most, pipe, getattr(transport.local, "conn", None) is not None


def test_pipeline_when_rclone_answers_several_gets_in_flight_reads_each_whole_in_order(monkeypatch):
    if rclone_binary() is None:
        pytest.skip("rclone with serve s3 is not installed (lab/deps.sh all)")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    server = Rclone()
    try:
        objects = bodies()
        os.makedirs(os.path.join(server.dir, "lake"))
        for key, body in objects.items():
            with open(os.path.join(server.dir, "lake", key), "wb") as handle:
                handle.write(body)
        got, most, pipe, alone = pipelined_gets(server.url, "lake")
    finally:
        server.stop()
    # DEPTH requests in flight on one connection, and every answer read from it: none asked alone.
    assert got == objects and most == pipeline.DEPTH
    assert pipe.enabled and not alone


def test_pipeline_when_moto_closes_the_connection_after_each_answer_asks_the_rest_alone(lake):
    url, bucket, objects = lake
    got, most, pipe, alone = pipelined_gets(url, bucket)
    # moto (werkzeug) answers "Connection: close": its first answer is taken, pipelining stops.
    assert got == objects and most == pipeline.DEPTH
    assert not pipe.enabled and alone


def test_mirror_when_worker_fetches_small_objects_keeps_several_requests_in_flight(lake, proxy, tmp_path):
    url, bucket, objects = lake
    server = proxy(url)
    result = mirror(server.url, bucket, tmp_path / "minio")
    assert result["copied"] == len(KEYS)
    assert_mirrored(tmp_path / "minio", bucket, objects)
    gets = [entry for key in KEYS for entry in server.requests_of(path_of(bucket, key))]
    # Server-side: when the first GET was answered, the rest of the window had already come.
    assert len(gets) == len(KEYS) and max(entry[2] for entry in gets) == pipeline.DEPTH - 1
    assert len({entry[0] for entry in gets}) == 1 and sorted(server.delivered) == sorted(path_of(bucket, k) for k in KEYS)


def transport_of(url, bucket):
    transport = fast_transport.Transport(s3.Endpoint(url, KEY, SECRET), attempts=1)
    listed = {key: (bucket, key, None, etag, size) for key, size, etag, dummy in transport.list_current(bucket)}
    transport.close()
    return transport, listed


def test_pipeline_when_server_closed_it_while_idle_sends_again_and_keeps_pipelining(lake, proxy):
    url, bucket, objects = lake
    server = proxy(url, {path_of(bucket, KEYS[1]): ["fin"]})
    transport, listed = transport_of(server.url, bucket)
    transport.expect([listed[KEYS[0]], listed[KEYS[1]]])
    assert [transport.get_object(bucket, k)["Body"].read() for k in KEYS[:2]] == [objects[k] for k in KEYS[:2]]
    # The next requests go out on the connection the server has closed since.
    transport.expect([listed[k] for k in KEYS[2:6]])
    assert [transport.get_object(bucket, k)["Body"].read() for k in KEYS[2:6]] == [objects[k] for k in KEYS[2:6]]
    # Not a server that ends pipelines: the first answer failed, so it went alone, the rest again pipelined.
    assert transport.local.pipeline.enabled
    assert sorted(server.delivered) == sorted(path_of(bucket, k) for k in KEYS[:6])
    assert [entry[2] for entry in server.requests_of(path_of(bucket, KEYS[3]))] == [2]


def test_pipeline_when_expected_objects_are_not_asked_for_forgets_them_and_answers_the_next(lake, proxy):
    url, bucket, objects = lake
    server = proxy(url)
    transport, listed = transport_of(server.url, bucket)
    transport.expect([listed[k] for k in KEYS[:4]])
    # KEYS[0] and KEYS[1] were expected but are not fetched after all (say, their directory failed).
    assert transport.get_object(bucket, KEYS[2])["Body"].read() == objects[KEYS[2]]
    assert transport.get_object(bucket, KEYS[3])["Body"].read() == objects[KEYS[3]]
    assert transport.get_object(bucket, KEYS[0])["Body"].read() == objects[KEYS[0]]
    assert transport.local.pipeline.enabled and not transport.local.pipeline.slots
    # KEYS[0] went alone, on a connection of its own.
    assert server.requests_of(path_of(bucket, KEYS[0]))[-1][0] not in [e[0] for e in server.requests_of(path_of(bucket, KEYS[3]))]


# --- one fault in the middle of a pipeline ----------------------------------------------------------


@pytest.fixture
def quick(monkeypatch):
    # The download's own wait before it asks again for a body cut short, and the stall limit.
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    monkeypatch.setattr(pipeline, "STALL", 0.5)


@pytest.mark.parametrize("fault, plays, pipelining_goes_on", [
    # The connection reset before the answer: asked again alone; pipelining stops.
    ("reset", ["reset", None], False),
    # An error answer: retried alone as an error answer is; the pipeline goes on.
    ("500", ["500", None], True),
    # The body cut short: the download asks again; what was in flight is sent again.
    ("cut", ["cut", None], True),
    # Answered with Connection: close while requests were in flight behind it: those go alone.
    ("close", ["close"], False),
])
def test_mirror_when_one_answer_of_a_pipeline_fails_asks_again_for_that_object_only(
        lake, proxy, tmp_path, quick, fault, plays, pipelining_goes_on):
    url, bucket, objects = lake
    faulty = path_of(bucket, KEYS[3])
    server = proxy(url, {faulty: [fault]})
    result = mirror(server.url, bucket, tmp_path / "minio")
    assert result["copied"] == len(KEYS)
    assert_mirrored(tmp_path / "minio", bucket, objects)
    # Each object was answered in full once, and only the faulty one was asked for again.
    assert sorted(server.delivered) == sorted(path_of(bucket, k) for k in KEYS)
    assert [entry[3] for entry in server.requests_of(faulty)] == plays
    assert all(len(server.requests_of(path_of(bucket, key))) == 1 for key in KEYS if key != KEYS[3])
    later = [entry for key in KEYS[8:] for entry in server.requests_of(path_of(bucket, key))]
    assert (max(entry[2] for entry in later) > 0) == pipelining_goes_on


def test_mirror_when_server_reads_one_request_at_a_time_stops_pipelining_after_the_stall(lake, proxy, tmp_path, quick):
    url, bucket, objects = lake
    server = proxy(url, one_at_a_time=True)
    result = mirror(server.url, bucket, tmp_path / "minio")
    assert result["copied"] == len(KEYS)
    assert_mirrored(tmp_path / "minio", bucket, objects)
    assert sorted(server.delivered) == sorted(path_of(bucket, k) for k in KEYS)
    # The pipeline's first answer came; its second never did: from then on one request at a time.
    assert len(server.requests_of(path_of(bucket, KEYS[0]))) == 1
    assert all(entry[2] == 0 for key in KEYS[2:] for entry in server.requests_of(path_of(bucket, key)))


def test_mirror_when_server_answers_with_another_objects_bytes_asks_again_alone(lake, proxy, tmp_path, quick):
    url, bucket, objects = lake
    # The answer to KEYS[3] is KEYS[4]'s object: its ETag and length are not the listed ones.
    server = proxy(url, {path_of(bucket, KEYS[3]): ["as " + path_of(bucket, KEYS[4])]})
    result = mirror(server.url, bucket, tmp_path / "minio")
    assert result["copied"] == len(KEYS) and not result.get("changed_during")
    assert_mirrored(tmp_path / "minio", bucket, objects)
    assert [entry[3] for entry in server.requests_of(path_of(bucket, KEYS[3]))] == ["as " + path_of(bucket, KEYS[4]), None]


def test_mirror_when_one_object_is_refused_fails_naming_it_and_leaves_no_file_of_it(lake, proxy, tmp_path, quick):
    url, bucket, objects = lake
    faulty = path_of(bucket, KEYS[3])
    server = proxy(url, {faulty: ["403"] * 5})
    with pytest.raises(RatBackupError) as failed:
        mirror(server.url, bucket, tmp_path / "minio")
    assert KEYS[3] in failed.value.msg and "AccessDenied" in failed.value.msg
    assert not (tmp_path / "minio" / KEYS[3]).exists()
    assert not temp_files(tmp_path / "minio")
    # A refusal is not retried, pipelined or not.
    assert [entry[3] for entry in server.requests_of(faulty)] == ["403"]
    # Every file that is there holds its object's bytes.
    for key, body in tree(str(tmp_path / "minio")).items():
        assert body == objects[key]
