# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A kept-alive HTTP/1.1 client connection with only what S3 requests need.

``http.client`` parses every answer's headers with the email package and sends a request in
several calls; for a 2 KB object that was a third of the client's CPU. Here a request goes out
in one ``sendall`` (two for a large body) and the head of the answer is split from the first
read, which for a small object holds the body too; the rest of a large body is read through the
socket's BufferedReader, into the bytes it returns. Bodies are read by Content-Length,
chunked transfer coding or up to the close; none for HEAD, 1xx, 204 and 304. Failures are the
exception types ``http.client`` raises (OSError, RemoteDisconnected, BadStatusLine, LineTooLong),
and a body cut short is a ConnectionError, which the mirror's stream retries treat as a dropped
connection.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl

# One read's size: a small object's whole answer, and the most a head may take.
_RECV = 65536
# A request body above this is sent after the head rather than copied onto it.
_JOIN_BODY = 65536
# A body above this goes with "Expect: 100-continue" (as botocore sends PutObject/UploadPart
# bodies above 1 MB): a server refusing the request answers before the body is sent.
_EXPECT_BODY = 1 << 20
# How long to wait for "100 Continue" before sending the body anyway (servers that ignore Expect).
_EXPECT_WAIT = 1.0
_NO_BODY_STATUS = frozenset((204, 304))
_BODY_METHODS = frozenset(("PUT", "POST", "PATCH"))


class BodyCut(ConnectionError):
    """The connection ended (or sent garbage) before the body it announced did."""


class TLSFailed(OSError):
    """The TLS handshake failed (a certificate not trusted, no common protocol): trying again will not help."""


class Connection:
    """One socket to ``host``:``port`` (TLS when ``context``), opened on first use and again after a close.

    One request at a time: ``request`` returns a Body that must be read to its end (or the
    connection closed) before the next request; a request while a body is unread drops it.
    Bodiless requests may also go out several at once (``send``), each answer then read in turn
    (``answer``) under the same rule.
    """

    def __init__(self, host, port, host_header, context=None, connect_timeout=10, read_timeout=60):
        self.host = host
        self.port = port
        self.host_header = host_header
        self.context = context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sock = None
        self.reader = None
        self.buffer = b""
        # The Body of the last answer until it is read to its end.
        self.current = None

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                try:
                    sock = self.context.wrap_socket(sock, server_hostname=self.host)
                except ssl.SSLError as exc:
                    raise TLSFailed(str(exc)) from exc
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        # Large reads go through a BufferedReader, which receives straight into the bytes it returns.
        self.reader = sock.makefile("rb")
        self.buffer = b""

    def close(self):
        """Close the socket; a body still unread then reads as ended (b""), as http.client's does."""
        sock, self.sock = self.sock, None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.buffer = b""
        current, self.current = self.current, None
        if current is not None:
            current.connection = None
        if sock is not None:
            sock.close()

    def request(self, method, target, headers, body=b""):
        """Send one request (``headers``: name -> str value) and read the head of its answer:
        (status, headers with lower-case names, Body)."""
        if self.current is not None:
            # The last answer's body is still in the pipe: it would be read as this one's answer.
            self.close()
        if self.sock is None:
            self.connect()
        expect = len(body) > _EXPECT_BODY
        head = request_head(method, target, self.host_header, headers, len(body) if body or method in _BODY_METHODS
                            else None, expect)
        answer = None
        if len(body) <= _JOIN_BODY:
            self.sock.sendall(head + body if body else head)
        else:
            self.sock.sendall(head)
            if expect:
                answer = self._await_continue()
            if answer is None:
                answer = self._send_body(body)
        return self.answer(method, answer)

    def send(self, heads):
        """Send the heads of bodiless requests at once (HTTP/1.1 pipelining); ``answer`` reads their
        answers, in the order sent."""
        if self.sock is None:
            self.connect()
        self.sock.sendall(heads)

    def answer(self, method, answer=None):
        """The next answer on the connection (after any 1xx), to a ``method`` request already sent:
        (status, headers with lower-case names, Body). ``answer``: its head, when already read."""
        while True:
            status, version, fields = answer or self._read_head()
            answer = None
            # 100 Continue and the like precede the real answer.
            if not 100 <= status < 200 or status == 101:
                break
        body = self._body(method, status, version, fields)
        self.current = None if body.isclosed() else body
        return status, fields, body

    def _await_continue(self):
        """After a head with "Expect: 100-continue": None when the body is to be sent (100 came, or
        nothing within _EXPECT_WAIT), else the server's final answer's head (the body is not sent;
        the connection is closed after the answer, as the server may still expect it)."""
        if not self.buffer and not (self.context is not None and self.sock.pending()):
            ready, dummy, dummy = select.select([self.sock], [], [], _EXPECT_WAIT)
            if not ready:
                return None
        status, version, fields = self._read_head()
        if status == 100:
            return None
        fields["connection"] = "close"
        return status, version, fields

    def _send_body(self, body):
        """Send ``body``; None, or the head of an answer the server sent before it closed the
        connection on the body (a 403 or 413 before reading it): that answer says why."""
        try:
            self.sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError) as exc:
            try:
                status, version, fields = self._read_head()
            except (OSError, http.client.HTTPException):
                raise exc from None
            fields["connection"] = "close"
            return status, version, fields
        return None

    def _read_head(self):
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > _RECV:
                self.close()
                raise http.client.LineTooLong("header block")
            data = self.reader.read1(_RECV)
            if not data:
                self.close()
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            buffer = buffer + data if buffer else data
            end = buffer.find(b"\r\n\r\n", max(0, len(buffer) - len(data) - 3))
        self.buffer = buffer[end + 4:]
        # Header values are ISO-8859-1 (as http.client reads them); one decode for the whole head.
        lines = buffer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(None, 2)
        try:
            if not parts[0].startswith("HTTP/1."):
                raise ValueError(parts[0])
            status = int(parts[1])
        except (IndexError, ValueError):
            self.close()
            raise http.client.BadStatusLine(lines[0])
        fields = {}
        name = None
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and name is not None:
                # An obsolete folded line continues the value before it.
                fields[name] += " " + line.strip()
                continue
            raw, sep, value = line.partition(":")
            if sep:
                name = raw.strip().lower()
                fields[name] = value.strip()
        return status, parts[0], fields

    def _body(self, method, status, version, fields):
        keep = version != "HTTP/1.0"
        connection = fields.get("connection", "").lower()
        if "close" in connection:
            keep = False
        elif "keep-alive" in connection:
            keep = True
        if method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            return Body(self, keep, 0)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return ChunkedBody(self, keep)
        length = fields.get("content-length")
        if length is None:
            return Body(self, False, None)
        try:
            length = int(length)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close()
            raise http.client.HTTPException(f"bad Content-Length {length!r}")
        return Body(self, keep, length)

    # --- what the bodies read --------------------------------------------------------------------

    def take(self, amount):
        """Up to ``amount`` bytes: what the buffer holds, else ``amount`` unless the connection ends first."""
        buffer = self.buffer
        if not buffer:
            return self.reader.read(amount)
        if len(buffer) <= amount:
            self.buffer = b""
            return buffer
        self.buffer = buffer[amount:]
        return buffer[:amount]

    def read_exact(self, amount):
        """``amount`` bytes, or BodyCut when the connection ends first."""
        data = self.take(amount)
        if len(data) < amount:
            rest = self.reader.read(amount - len(data))
            if len(data) + len(rest) < amount:
                raise BodyCut("the connection ended within the body")
            data += rest
        return data

    def read_line(self):
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
                return line
            if len(self.buffer) > _RECV:
                raise BodyCut("a chunk header without end")
            data = self.reader.read1(_RECV)
            if not data:
                raise BodyCut("the connection ended within a chunk header")
            self.buffer += data

    def done(self, keep):
        self.current = None
        if not keep:
            self.close()


def request_head(method, target, host_header, headers, length=None, expect=False):
    """The bytes of a request's head: ``headers`` (name -> str value), Content-Length ``length``
    unless None, "Expect: 100-continue" when ``expect``."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nAccept-Encoding: identity\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            # Never the value in the message: it may be the Authorization header.
            raise ValueError(f"HTTP header {name.splitlines()[0][:40]!r}: a CR, LF or colon where HTTP allows none")
        lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    if expect:
        lines.append("Expect: 100-continue\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Body:
    """An answer's body of ``length`` bytes (None: up to the close), read as a file is."""

    def __init__(self, connection, keep, length):
        self.connection = connection
        self.keep = keep
        self.left = length
        if length == 0:
            self._finish()

    def isclosed(self):
        """True once the whole body is read (then the connection serves the next request)."""
        return self.connection is None

    def close(self):
        """Done with it: unless read to its end, its connection is dropped (the unread bytes would
        be taken for the next answer)."""
        self._fail()

    def read(self, amount=None):
        if self.connection is None or amount == 0:
            return b""
        try:
            if self.left is None:
                return self._read_to_close(amount)
            want = self.left if amount is None or amount > self.left else amount
            # A read of some bytes returns what the buffer holds, if anything, as a socket file does.
            data = self.connection.read_exact(want) if amount is None else self.connection.take(want)
            if not data:
                raise BodyCut(f"the connection ended with {self.left} bytes of the body unread")
        except BaseException:
            self._fail()
            raise
        self.left -= len(data)
        if not self.left:
            self._finish()
        return data

    def _read_to_close(self, amount):
        chunks = []
        while amount is None or amount > 0:
            connection = self.connection
            if connection.buffer:
                data = connection.take(len(connection.buffer) if amount is None else amount)
            else:
                data = connection.reader.read1(_RECV if amount is None else amount)
            if not data:
                self._finish()
                break
            chunks.append(data)
            if amount is not None:
                amount -= len(data)
        return b"".join(chunks)

    def _finish(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.done(self.keep)

    def _fail(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class ChunkedBody(Body):
    """A body in chunked transfer coding: size line, data, CRLF, ..., a zero size, trailers."""

    def __init__(self, connection, keep):
        super().__init__(connection, keep, None)
        self.chunk_left = 0

    def read(self, amount=None):
        if self.connection is None:
            return b""
        chunks = []
        try:
            while amount is None or amount > 0:
                if not self.chunk_left and not self._next_chunk():
                    break
                want = self.chunk_left if amount is None or amount > self.chunk_left else amount
                data = self.connection.read_exact(want)
                chunks.append(data)
                self.chunk_left -= want
                if amount is not None:
                    amount -= want
                if not self.chunk_left and self.connection.read_line():
                    raise BodyCut("a chunk longer than its size")
        except BaseException:
            self._fail()
            raise
        return b"".join(chunks)

    def _next_chunk(self):
        line = self.connection.read_line()
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise BodyCut(f"a bad chunk size line {line[:40]!r}")
        if size:
            self.chunk_left = size
            return True
        while self.connection.read_line():
            pass
        self._finish()
        return False
