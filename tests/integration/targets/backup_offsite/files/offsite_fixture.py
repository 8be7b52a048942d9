# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the offsite target.

    offsite_fixture.py proxy PORT UPSTREAM_PORT COUNTER_FILE   TCP proxy on 127.0.0.1:PORT counting bytes
                                                            sent to the upstream (written to COUNTER_FILE)
    offsite_fixture.py bytes COUNTER_FILE                    prints the bytes counted so far
    offsite_fixture.py bucket create|remove BUCKET           on the endpoint of RAT_LAB_S3_ENDPOINT
(setup_backup_lab's files directory must be on PYTHONPATH: its s3_fixture gives the client)
    offsite_fixture.py put BUCKET KEY FILE                   upload FILE's bytes
    offsite_fixture.py get BUCKET KEY FILE                   download into FILE
    offsite_fixture.py keys BUCKET PREFIX                    JSON list of the keys under PREFIX
    offsite_fixture.py scan BUCKET PREFIX DIR NEEDLE_FILE    JSON {keys, files, found}: every object under
                                                            PREFIX and file under DIR searched for the needle
    offsite_fixture.py tamper-s3 BUCKET KEY                  rewrite the object, same size, one byte changed
    offsite_fixture.py tamper-file PATH                      flip one byte in place (same size and mtime)
"""

import json
import os
import select
import socket
import sys
import threading

# The shared S3 fixture of setup_backup_lab (its directory is on PYTHONPATH): one client, one bucket removal.
from s3_fixture import client, remove


def proxy(port, upstream, counter_file):
    total = [0]
    lock = threading.Lock()

    def save():
        with lock:
            tmp = counter_file + ".tmp"
            with open(tmp, "w") as handle:
                handle.write(str(total[0]))
            os.rename(tmp, counter_file)

    def pump(conn):
        up = socket.create_connection(("127.0.0.1", upstream))
        pairs = {conn: up, up: conn}
        try:
            while True:
                ready, _w, _x = select.select(list(pairs), [], [], 60)
                if not ready:
                    break
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pairs[sock].sendall(data)
                    if sock is conn:
                        with lock:
                            total[0] += len(data)
        except OSError:
            pass
        finally:
            conn.close()
            up.close()
            save()

    save()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    while True:
        conn, _addr = server.accept()
        threading.Thread(target=pump, args=(conn,), daemon=True).start()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "proxy":
        proxy(int(args[0]), int(args[1]), args[2])
    elif cmd == "bytes":
        with open(args[0]) as handle:
            print(handle.read().strip())
    elif cmd == "bucket":
        s3 = client()
        if args[0] == "create":
            s3.create_bucket(Bucket=args[1])
        else:
            remove(s3, args[1])
    elif cmd == "put":
        with open(args[2], "rb") as handle:
            client().put_object(Bucket=args[0], Key=args[1], Body=handle.read(), ContentType="text/plain")
    elif cmd == "get":
        body = client().get_object(Bucket=args[0], Key=args[1])["Body"].read()
        with open(args[2], "wb") as handle:
            handle.write(body)
    elif cmd == "keys":
        s3 = client()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1])
                for o in page.get("Contents", [])]
        print(json.dumps(keys))
    elif cmd == "scan":
        s3 = client()
        with open(args[3], "rb") as handle:
            needle = handle.read().strip()
        found, keys, files = [], [], []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            for item in page.get("Contents", []):
                keys.append(item["Key"])
                if needle in s3.get_object(Bucket=args[0], Key=item["Key"])["Body"].read():
                    found.append(item["Key"])
        for parent, _dirs, names in os.walk(args[2]):
            for name in names:
                path = os.path.join(parent, name)
                files.append(os.path.relpath(path, args[2]))
                with open(path, "rb") as handle:
                    if needle in handle.read():
                        found.append(path)
        print(json.dumps({"keys": keys, "files": files, "found": found}))
    elif cmd == "tamper-s3":
        s3 = client()
        body = bytearray(s3.get_object(Bucket=args[0], Key=args[1])["Body"].read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=args[0], Key=args[1], Body=bytes(body))
    elif cmd == "tamper-file":
        st = os.stat(args[0])
        with open(args[0], "r+b") as handle:
            handle.seek(st.st_size // 2)
            byte = handle.read(1)
            handle.seek(st.st_size // 2)
            handle.write(bytes([byte[0] ^ 0xFF]))
        os.utime(args[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        sys.exit("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
