# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A monitoring endpoint stand-in (healthchecks.io style): answers 200 and records each request.

    ping_server.py PORT RECORD_FILE      one "METHOD PATH" line per request, flushed at once
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def record(self):
        with open(sys.argv[2], "a", encoding="utf-8") as out:
            out.write("%s %s\n" % (self.command, self.path))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = record

    def log_message(self, *_args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
