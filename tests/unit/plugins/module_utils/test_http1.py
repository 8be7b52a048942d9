# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""http1 (and Transport over it) against a scripted loopback server: every answer's bytes are ours."""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
import threading

import pytest

from ansible_collections.rat.backup.plugins.module_utils._s3 import http1
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.s3_servers import read_request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"e\"\r\n\r\n%s"


class Scripted:
    """A loopback server answering each request with the next scripted (bytes, then) of ``answers``:
    then "keep" waits for the next request on the connection, "close" closes it after the bytes."""

    def __init__(self, answers, context=None):
        self.answers = list(answers)
        self.requests = []
        self.connections = 0
        self.current = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = context
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.answers:
            try:
                sock, _address = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.context is not None:
                try:
                    sock = self.context.wrap_socket(sock, server_side=True)
                except OSError:
                    # The client refused our certificate.
                    sock.close()
                    continue
            self.current = sock
            with sock:
                self.converse(sock)

    def converse(self, sock):
        buffer = b""
        while self.answers:
            received = read_request(sock, buffer)
            if received is None:
                return
            line, headers, body, buffer = received
            self.requests.append((line, headers, body))
            answer, then = self.answers.pop(0)
            sock.sendall(answer)
            if then == "close":
                return

    def close(self):
        self.answers.clear()
        # shutdown, not close, wakes a thread blocked in accept or recv.
        for sock in filter(None, (self.listener, self.current)):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def scripted():
    servers = []

    def start(*answers, context=None):
        server = Scripted(answers, context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def connection(server, context=None):
    return http1.Connection("127.0.0.1", server.port, f"127.0.0.1:{server.port}", context, 5, 5)


def test_request_when_kept_alive_sends_one_head_and_reuses_the_socket(scripted):
    server = scripted((OK % (5, b"first"), "keep"), (OK % (6, b"second"), "keep"))
    conn = connection(server)
    status, headers, body = conn.request("GET", "/b/k?versionId=1", {"Range": "bytes=0-4"})
    assert (status, headers["etag"], body.read()) == (200, '"e"', b"first")
    assert body.isclosed()
    status, headers, body = conn.request("PUT", "/b/k", {}, b"payload")
    assert body.read(100) == b"second" and body.read(100) == b""
    assert server.connections == 1
    (line, sent, dummy), (line2, sent2, payload) = server.requests
    assert line == "GET /b/k?versionId=1 HTTP/1.1" and sent["Range"] == "bytes=0-4"
    assert sent["Host"] == f"127.0.0.1:{server.port}" and "Content-Length" not in sent
    assert (line2, sent2["Content-Length"], payload) == ("PUT /b/k HTTP/1.1", "7", b"payload")


def test_request_when_body_is_large_sends_all_of_it(scripted):
    server = scripted((OK % (2, b"ok"), "keep"))
    payload = os.urandom(3 * 65536 + 7)
    assert connection(server).request("PUT", "/b/k", {}, payload)[2].read() == b"ok"
    assert server.requests[0][2] == payload


def test_body_when_large_reads_it_whole_or_in_chunks_of_at_most_the_amount(scripted):
    payload = os.urandom(3 * (1 << 20) + 5)
    server = scripted((OK % (len(payload), payload), "keep"), (OK % (len(payload), payload), "keep"))
    conn = connection(server)
    assert conn.request("GET", "/a", {})[2].read() == payload
    body = conn.request("GET", "/a", {})[2]
    assert body.read(0) == b""
    chunks = list(iter(lambda: body.read(1 << 20), b""))
    assert b"".join(chunks) == payload and max(map(len, chunks)) == 1 << 20 and body.isclosed()


def test_body_when_chunked_reads_whole_or_in_pieces_and_keeps_the_connection(scripted):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = scripted((chunked, "keep"), (chunked, "keep"), (OK % (1, b"z"), "keep"))
    conn = connection(server)
    assert conn.request("GET", "/a", {})[2].read() == b"hello abcdefghijklmnopqrstuvwxy"
    body = conn.request("GET", "/a", {})[2]
    pieces = []
    while True:
        piece = body.read(4)
        if not piece:
            break
        assert len(piece) <= 4
        pieces.append(piece)
    assert b"".join(pieces) == b"hello abcdefghijklmnopqrstuvwxy" and body.isclosed()
    assert conn.request("GET", "/b", {})[2].read() == b"z"
    assert server.connections == 1


def test_body_when_connection_close_drops_the_socket_after_it(scripted):
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"
    server = scripted((close, "close"), (OK % (3, b"def"), "keep"))
    conn = connection(server)
    assert conn.request("GET", "/a", {})[2].read() == b"abc"
    assert conn.sock is None
    assert conn.request("GET", "/b", {})[2].read() == b"def"
    assert server.connections == 2


def test_body_when_no_length_reads_to_the_close(scripted):
    server = scripted((b"HTTP/1.0 200 OK\r\n\r\nuntil the end", "close"))
    conn = connection(server)
    assert conn.request("GET", "/a", {})[2].read() == b"until the end"
    assert conn.sock is None


@pytest.mark.parametrize("method, answer", [
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
    ("GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
])
def test_body_when_answer_has_none_is_empty_and_the_connection_serves_on(scripted, method, answer):
    server = scripted((answer, "keep"), (OK % (4, b"next"), "keep"))
    conn = connection(server)
    status, headers, body = conn.request(method, "/a", {})
    assert body.isclosed() and body.read() == b""
    assert conn.request("GET", "/b", {})[2].read() == b"next"
    assert server.connections == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly part",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nonly part\r\n",
])
@pytest.mark.parametrize("amount", [None, 4])
def test_body_when_cut_short_raises_body_cut_and_drops_the_connection(scripted, answer, amount):
    server = scripted((answer, "close"))
    conn = connection(server)
    body = conn.request("GET", "/a", {})[2]
    with pytest.raises(http1.BodyCut):
        while body.read(amount):
            pass
    assert conn.sock is None and isinstance(http1.BodyCut(), ConnectionError)


def test_request_when_server_closes_without_answer_raises_remote_disconnected(scripted):
    server = scripted((b"", "close"))
    with pytest.raises(http.client.RemoteDisconnected):
        connection(server).request("GET", "/a", {})


def test_request_when_status_line_is_not_http_raises_bad_status_line(scripted):
    server = scripted((b"SSH-2.0-OpenSSH\r\n\r\n", "close"))
    with pytest.raises(http.client.BadStatusLine):
        connection(server).request("GET", "/a", {})


def test_request_when_header_value_has_a_newline_sends_nothing(scripted):
    server = scripted((OK % (1, b"x"), "keep"))
    with pytest.raises(ValueError, match="x-amz-meta-a"):
        connection(server).request("PUT", "/a", {"x-amz-meta-a": "b\r\nInjected: 1"}, b"")
    assert server.requests == []


def test_request_when_last_body_unread_drops_that_connection_first(scripted):
    server = scripted((OK % (6, b"unread"), "keep"), (OK % (4, b"next"), "keep"))
    conn = connection(server)
    conn.request("GET", "/a", {})
    assert conn.request("GET", "/b", {})[2].read() == b"next"
    assert server.connections == 2


def test_headers_when_folded_or_repeated_reads_them_in_lower_case(scripted):
    answer = (b"HTTP/1.1 200 OK\r\nX-Amz-Meta-Long: one\r\n two\r\nx-amz-meta-dup: 1\r\nX-AMZ-META-DUP: 2\r\n"
              b"Content-Length: 0\r\n\r\n")
    server = scripted((answer, "keep"))
    headers = connection(server).request("GET", "/a", {})[1]
    assert headers["x-amz-meta-long"] == "one two" and headers["x-amz-meta-dup"] == "2"


def test_transport_when_server_closed_the_idle_connection_retries_on_a_new_one(scripted):
    fast_transport = pytest.importorskip("ansible_collections.rat.backup.plugins.module_utils._s3.transport")
    server = scripted((OK % (3, b"one"), "close"), (OK % (3, b"two"), "keep"))
    transport = fast_transport.Transport(s3.Endpoint(f"http://127.0.0.1:{server.port}", "k", "s"), attempts=1)
    # The server answered without Connection: close, then closed while the connection sat idle.
    assert transport.get("b", "k1").read() == b"one"
    assert transport.local.conn.sock is not None
    assert transport.get("b", "k2").read() == b"two"
    assert server.connections == 2
    assert [request[0] for request in server.requests] == ["GET /b/k1 HTTP/1.1", "GET /b/k2 HTTP/1.1"]
    assert server.requests[1][1]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=k/")


def test_transport_when_body_left_unread_close_drops_the_connection(scripted):
    fast_transport = pytest.importorskip("ansible_collections.rat.backup.plugins.module_utils._s3.transport")
    server = scripted((OK % (6, b"unread"), "keep"), (OK % (4, b"next"), "keep"))
    transport = fast_transport.Transport(s3.Endpoint(f"http://127.0.0.1:{server.port}", "k", "s"))
    got = transport.get_object("b", "a")
    assert got["Body"].read(2) == b"un"
    got["Body"].close()
    # The socket the body was on is closed (whichever connection it came on: a pipeline's or this one).
    assert transport.local.conn.sock is None and got["Body"].read() == b""
    assert transport.get_object("b", "c")["Body"].read() == b"next"


def self_signed(tmp_path):
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    return str(cert_file), server_context


def test_transport_when_https_verifies_the_server_with_the_ca_bundle(scripted, tmp_path):
    fast_transport = pytest.importorskip("ansible_collections.rat.backup.plugins.module_utils._s3.transport")
    ca_file, server_context = self_signed(tmp_path)
    server = scripted((OK % (3, b"tls"), "keep"), (OK % (4, b"more"), "keep"), context=server_context)
    transport = fast_transport.Transport(s3.Endpoint(f"https://127.0.0.1:{server.port}", "k", "s", ca_bundle=ca_file))
    assert transport.get("b", "k").read() == b"tls"
    assert transport.get("b", "k").read() == b"more"
    assert server.connections == 1


def test_transport_when_https_gets_are_pipelined_answers_each_in_order_on_one_connection(scripted, tmp_path):
    fast_transport = pytest.importorskip("ansible_collections.rat.backup.plugins.module_utils._s3.transport")
    ca_file, server_context = self_signed(tmp_path)
    bodies = [b"one", b"two!", b"three"]
    server = scripted(*[(OK % (len(body), body), "keep") for body in bodies], context=server_context)
    transport = fast_transport.Transport(s3.Endpoint(f"https://127.0.0.1:{server.port}", "k", "s", ca_bundle=ca_file))
    transport.expect([("b", "k%d" % index, None, '"e"', len(body)) for index, body in enumerate(bodies)])
    # All three sent before the first answer is read, over TLS as over plain TCP.
    assert transport.local.pipeline.sent == 3
    assert [transport.get("b", "k%d" % index).read() for index in range(3)] == bodies
    assert server.connections == 1 and transport.local.pipeline.enabled
    assert [request[0] for request in server.requests] == ["GET /b/k%d HTTP/1.1" % index for index in range(3)]


def test_transport_when_https_certificate_unknown_names_tls_and_does_not_retry(scripted, tmp_path):
    fast_transport = pytest.importorskip("ansible_collections.rat.backup.plugins.module_utils._s3.transport")
    _ca_file, server_context = self_signed(tmp_path)
    server = scripted((b"", "close"), (b"", "close"), (b"", "close"), context=server_context)
    endpoint = s3.Endpoint(f"https://127.0.0.1:{server.port}", "k", "s")
    transport = fast_transport.Transport(endpoint, attempts=3)
    with pytest.raises(s3.sdk_errors()) as caught:
        transport.get("b", "k")
    assert type(caught.value).__name__ == "SSLError"
    assert server.connections == 1
    message = s3.translate(caught.value, endpoint, "reading", "b", "k").msg
    assert "TLS handshake refused" in message and "certificate verify failed" in message and "ca_bundle" in message
