# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A "minimal S3" on loopback for failure paths: a moto server behind a proxy that refuses the
optional APIs as servers without them do (s3rver 3.7.1: bucket tagging ``NotImplemented``,
ListObjectVersions ``MethodNotAllowed``; a policy denying s3:PutBucketTagging: ``AccessDenied``).
Everything else is forwarded as it came, over real HTTP both ways."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
import urllib.parse

from moto.server import ThreadedMotoServer

_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{code}</Message>'
          '<Resource>{path}</Resource><RequestId>1</RequestId></Error>')


def _handler(upstream, refused):
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
            for (method, name), (status, code) in refused.items():
                if name in query and method in (self.command, "*"):
                    data = _ERROR.format(code=code, path=self.path).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
            conn = http.client.HTTPConnection(*upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Proxy


# s3rver's answers; a policy denying tagging answers AccessDenied (403) instead.
NO_OPTIONAL_APIS = {("*", "tagging"): (501, "NotImplemented"), ("GET", "versions"): (405, "MethodNotAllowed")}
TAGGING_DENIED = {("PUT", "tagging"): (403, "AccessDenied")}


@contextlib.contextmanager
def serve(refused):
    """URL of a proxy refusing ``refused`` ({(method or "*", query parameter): (status, code)})."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(moto.get_host_and_port(), refused))
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % proxy.server_address[1]
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
        moto.stop()
