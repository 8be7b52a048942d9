# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several requests in flight on one kept-alive connection (HTTP/1.1 pipelining), for small objects.

A worker that sends one request and waits for its answer leaves the server idle between two of
its requests: every request wakes the server, then the worker. On `rclone serve s3` that cost the
server 0.28-0.31 ms of CPU per GET against 0.22 ms serving rclone's 16 requests in flight. Here
the requests a worker is about to make (``Transport.expect``: GETs of listed objects; PUTs whose
bytes are read and checked already) go out DEPTH at a time in one write, on a connection of
their own, and each answer is read when its request is made, in the order sent, as HTTP/1.1
answers come.

A pipelined answer is taken only when its head was read whole and, for a 2xx, its ETag (and for
a GET its length) are the expected ones: a GET's the listed object's, a PUT's the MD5 of its body;
anything else (the connection ended, timed out or sent garbage before it, or a head not the
request's) leaves the request to be made alone with the transport's usual retries, as if it had
never been pipelined. The requests behind it are sent again on a new connection: so only requests
that may be sent twice are pipelined (GETs: asking twice changes nothing; a PUT into a bucket
without versioning writes the same bytes again, where a versioned one would keep a version more).
Pipelining stops for good in this process when the server shows it does not keep a pipeline: it
ends the connection after an answer while requests are in flight behind it (Connection: close or
not), an answer behind another one does not come within STALL seconds (a server that reads only
the first request of a pipeline never answers the rest), or an answer is not the expected one (a
server that mixes up answers; an object changed since the listing, or a server whose PUT ETag is
not the body's MD5, also stops it, which costs only speed).
"""

from __future__ import annotations

import collections
import http.client
import socket

# Requests in flight at most, and sent again when half of them are answered (one write per half).
DEPTH = 8
# Seconds an answer may take once the one before it came (the first one of a pipeline waits the
# connection's read timeout): a server that answers one request of a pipeline and ignores the rest
# is found out after this long, once.
STALL = 10.0


class Slot:
    """One expected request: its method, request target (path and query as sent), path and query
    as signed, the ETag (quoted) a 2xx answer must carry, the length of the body a 2xx answer must
    have (None: any), and what the transport needs to send it (``extra``: a PUT's headers and body)."""

    __slots__ = ("method", "target", "path", "query", "etag", "size", "extra")

    def __init__(self, method, target, path, query, etag, size, extra=None):
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.etag = etag
        self.size = size
        self.extra = extra


class Pipeline:
    """The pipelined requests of one thread: ``connect()`` makes a new (unconnected) http1.Connection,
    ``head_of(slot)`` the bytes of a slot's signed request (its body too), ``etag_of(fields)`` the
    quoted ETag of an answer's headers."""

    def __init__(self, connect, head_of, etag_of, read_timeout):
        self.connect = connect
        self.head_of = head_of
        self.etag_of = etag_of
        self.read_timeout = read_timeout
        self.conn = None
        # Expected, in order; the first ``sent`` are in flight on ``conn``.
        self.slots = collections.deque()
        self.sent = 0
        # Answers read on ``conn`` while the request behind each was already in flight.
        self.answered = 0
        self.enabled = True

    def expect(self, slots):
        """Expect ``slots`` after those still expected; send what the window allows."""
        if not self.enabled:
            return
        self.slots.extend(slots)
        try:
            self._fill()
        except (OSError, http.client.HTTPException):
            # Found again (and sent again on a new connection) when the first answer is asked for.
            self._drop_connection()

    def take(self, method, target):
        """The Slot of a ``method`` request to ``target`` when it is expected, else None. Slots
        expected before it (asked for no more: their objects were not sent after all) are forgotten."""
        if not self.enabled:
            return None
        for index, slot in enumerate(self.slots):
            if slot.target == target and slot.method == method:
                break
        else:
            return None
        if index:
            # Their answers come first on the connection: rather than read them, send again from here.
            for dummy in range(index):
                self.slots.popleft()
            self._drop_connection()
        return slot

    def answer(self, slot):
        """(status, headers, http1.Body) of ``slot``'s request (taken, so first in line), or None
        when the request is to be made alone. Raises nothing of the network's."""
        stall = False
        try:
            conn = self.conn
            if conn is None or conn.sock is None or conn.current is not None:
                # Ended (a body cut, closed or left unread): what was in flight goes again on a new one.
                self._drop_connection()
            self._fill()
            stall = self.answered > 0
            if stall:
                self.conn.sock.settimeout(min(STALL, self.read_timeout))
            status, fields, body = self.conn.answer(slot.method)
            if stall and self.conn.sock is not None:
                self.conn.sock.settimeout(self.read_timeout)
        except socket.timeout:
            self._failed(stop=stall)
            return None
        except (OSError, http.client.HTTPException):
            # Ended after an answer while this request was in flight behind it: the server does not
            # keep pipelines. Failing first (a connection closed while idle, or this request's own
            # failure) only sends it alone.
            self._failed(stop=self.answered > 0)
            return None
        self.slots.popleft()
        self.sent -= 1
        self.answered = self.answered + 1 if self.sent else 0
        if 200 <= status < 300 and (self.etag_of(fields) != slot.etag or (
                slot.size is not None and "content-length" in fields and fields["content-length"] != str(slot.size))):
            body.close()
            self._stop()
            return None
        if self.sent and not body.keep:
            # The server ends the connection after this answer: the requests behind it go alone.
            # The connection is left to the body, which closes it once read.
            self.conn = None
            self._stop()
        return status, fields, body

    def _failed(self, stop):
        self.slots.popleft()
        self._drop_connection()
        if stop:
            self._stop()

    def _stop(self):
        """No more pipelining in this process: what is still expected is asked for alone."""
        self.enabled = False
        self.slots.clear()
        self._drop_connection()

    def _fill(self):
        """With at most half of DEPTH in flight, send what is expected up to DEPTH in flight, at once."""
        if self.sent > DEPTH // 2 or self.sent == len(self.slots):
            return
        if self.conn is None:
            self.conn = self.connect()
        end = min(len(self.slots), DEPTH)
        heads = [self.head_of(self.slots[index]) for index in range(self.sent, end)]
        self.sent = end
        self.conn.send(b"".join(heads))

    def _drop_connection(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.sent = 0
        self.answered = 0
