# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak RSS of bucket_mirror planning an unchanged backup of N keys, against a synthetic listing.

Run by bench_lake.py as its own process: ``lake_plan_rss.py N WORKDIR`` prints one JSON line
{"keys", "rss_mb", "seconds", "linked"}. The previous backup's manifest (N objects) is written
first, then a check-mode S3 -> disk mirror with link_dest plans against a listing of the same N
keys served from memory: what a real run holds while it plans, without a server.
"""

from __future__ import annotations

import json
import os
import sys
import time

import bench_lake
from ansible_collections.rat.backup.plugins.module_utils import mirror
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree

MODIFIED = "2026-11-27T18:00:00.000Z"
PER_TABLE = 1000


def sorted_keys(count):
    """``count`` Iceberg-like keys, generated in S3's order (nothing holds them all)."""
    for index in range(count):
        table, part = divmod(index, PER_TABLE)
        yield "warehouse/db_%02d/table_%04d/data/part-%05d-%032x.parquet" % (table // 100, table, part, index)


def listed(index):
    return 256 + index % 3840, '"%032x"' % index


class Listing:
    """Stands in for the fast transport (_s3.transport.Transport): the bucket's keys in order, as list_current yields
    them, and the bucket calls planning makes through it (an unversioned bucket)."""

    def __init__(self, count):
        self.count = count

    @staticmethod
    def bucket_names():
        return [bench_lake.LAKE]

    @staticmethod
    def is_versioned(bucket):
        return False

    def list_current(self, bucket, prefix=""):
        modified = s3.parse_timestamp(MODIFIED)
        for index, key in enumerate(sorted_keys(self.count)):
            size, etag = listed(index)
            yield key, size, etag, modified


class Client:
    """The two bucket calls planning makes besides the listing."""

    @staticmethod
    def list_buckets():
        return {"Buckets": [{"Name": bench_lake.LAKE}]}

    @staticmethod
    def get_bucket_versioning(Bucket):  # pylint: disable=invalid-name
        return {}


def main():
    count, work = int(sys.argv[1]), sys.argv[2]
    previous = os.path.join(work, "previous")
    os.makedirs(os.path.join(previous, "minio"))
    # The previous backup's manifest as bucket_mirror writes it, one object per line.
    with open(os.path.join(previous, "manifest.json"), "w") as handle:
        handle.write('{"buckets": {"%s": {"versioned": false}}, "format": 1, "objects": [\n' % bench_lake.LAKE)
        for index, key in enumerate(sorted_keys(count)):
            size, etag = listed(index)
            handle.write(json.dumps({"bucket": bench_lake.LAKE, "content_type": "application/octet-stream",
                                     "etag": etag, "key": key, "last_modified": MODIFIED, "metadata": {},
                                     "path": "minio/%s/%s" % (bench_lake.LAKE, key), "sha256": "%064x" % index,
                                     "size": size, "version_id": None}, sort_keys=True))
            handle.write(",\n" if index + 1 < count else "\n")
        handle.write("]}\n")
    # Planning stats each link_dest file it links; a million files would only measure this disk.
    local_tree.is_same_size_file = lambda path, size: True
    options = {"src": "s3://" + bench_lake.LAKE, "dest": os.path.join(work, "next", "minio"),
               "manifest": os.path.join(work, "next", "minio.json"), "link_dest": os.path.join(previous, "minio"),
               "src_endpoint": "http://127.0.0.1:9", "concurrency": 8}
    started = time.monotonic()
    before = bench_lake.vm_hwm_mb()
    result = mirror.Mirror(options, Client(), None, check_mode=True, src_http=Listing(count)).run()
    print(json.dumps({"keys": count, "rss_mb": bench_lake.vm_hwm_mb(),
                      "rss_before_mb": before, "seconds": time.monotonic() - started,
                      "to_link": result["plan"]["to_link"]["count"], "to_copy": result["plan"]["to_copy"]["count"]}))


if __name__ == "__main__":
    main()
