# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verdict of a point-in-time drill: what the recovered database and the scratch lake prove.

Three things, each a list of problems in words (empty: proven). The recovery point brackets the time:
the last transaction replayed committed at or before it, and the commit recovery stopped before (when
the server's log names it) after it. Every table of the recovered database can be read to its end
(exact row counts). Every Iceberg table of the JDBC catalog in the recovered database points at a
metadata file that exists in the scratch copy of its bucket: the database and the lake were taken at
the same time, or the catalog would name metadata the lake did not have yet.
"""

from __future__ import annotations

from ansible_collections.rat.backup.plugins.module_utils import fs, lake_select
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def recovery_problems(as_of, reached, next_commit):
    """``reached`` <= ``as_of`` < ``next_commit`` (aware datetimes; None: not known)."""
    problems = []
    if reached is not None and reached > as_of:
        problems.append(f"the recovered server replayed a transaction committed at {fs.iso(reached)}, after "
                        f"{fs.iso(as_of)}")
    if next_commit is not None and next_commit <= as_of:
        problems.append(f"recovery stopped before a commit at {fs.iso(next_commit)}, not after {fs.iso(as_of)}: "
                        "transactions up to the time are missing")
    return problems


def catalog_problems(entries, bucket_map, exists):
    """Entries whose metadata file is not in the scratch copy of its bucket; ``exists(bucket, key)``."""
    problems = []
    for entry in entries:
        what = f"Iceberg table {entry['namespace']}.{entry['name']} ({entry['catalog_name']})"
        location = entry["metadata_location"]
        if not location:
            continue
        try:
            bucket, key = lake_select.split_location(location, f"{what}: metadata location")
        except RatBackupError as exc:
            problems.append(exc.msg)
            continue
        if bucket not in bucket_map:
            problems.append(f"{what} points at {location}, in bucket {bucket}, which the drill did not copy")
        elif not exists(bucket_map[bucket], key):
            problems.append(f"{what} points at {location}, missing from the lake as of the time "
                            f"(scratch bucket {bucket_map[bucket]})")
    return problems
