# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An HTTP proxy in front of an S3 server whose Date header runs OFFSET seconds ahead (negative: behind).

    fake_date_proxy.py PORT UPSTREAM_URL OFFSET

Only the Date header is changed, so the backup measures a skewed S3 clock through its real code path.
"""

import email.utils
import http.client
import http.server
import sys
import time
import urllib.parse


def handler(upstream, offset):
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() in ("date", "connection", "transfer-encoding") or \
                        name.lower() == "content-length" and self.command != "HEAD":
                    continue
                self.send_header(name, value)
            self.send_header("Date", email.utils.formatdate(time.time() + offset, usegmt=True))
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        def log_message(self, *args):
            pass

    return Proxy


def main():
    port, upstream, offset = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), float(sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler(upstream, offset))
    server.serve_forever()


if __name__ == "__main__":
    main()
