# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch targets of a restore drill: names, ownership marks, creation and removal.

A drill restores a backup into a database ``rat_drill_<YYYYmmdd_HHMMSS>`` and buckets
``rat-drill-<YYYYmmdd>-<HHMMSS>-<owner hash>-<n>-<bucket>`` beside the live ones. Each carries a
mark (the database's comment, the buckets' tags) saying which host's drill made it and when, so
a later drill removes what an interrupted one left behind, and nothing that merely looks similar.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import layout
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

DATABASE_RE = re.compile(r"^rat_drill_[0-9]{8}_[0-9]{6}$")
BUCKET_RE = re.compile(r"^rat-drill-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}-[0-9]+-")
MARK = "rat.backup drill"
TAG_OWNER = "rat-backup-drill-owner"
TAG_STARTED = "rat-backup-drill-started"
_BUCKET_MAX = 63


def owner_hash(owner):
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:6]


def database_name(now):
    return "rat_drill_" + layout.name_for(now)


def bucket_map(now, owner, buckets):
    """{backup bucket: scratch bucket}; the index keeps two truncated names apart."""
    stamp = layout.name_for(now).replace("_", "-")
    mapped = {}
    for index, bucket in enumerate(sorted(buckets)):
        head = f"rat-drill-{stamp}-{owner_hash(owner)}-{index}-"
        # A bucket name ends with a letter or digit: cut the original to fit, then trim separators.
        tail = re.sub(r"[^a-z0-9]+$", "", bucket.lower()[:_BUCKET_MAX - len(head)]) or "b"
        mapped[bucket] = head + re.sub(r"[^a-z0-9.-]", "-", tail)
    return mapped


def mark(owner, now):
    return {"owner": owner, "started_at": fs.iso(now)}


def database_comment(owner, now):
    return f"{MARK} {json.dumps(mark(owner, now), sort_keys=True)}"


def parse_comment(comment):
    """The mark in a database comment, or None when it is not a drill's."""
    if not comment or not comment.startswith(MARK + " "):
        return None
    try:
        found = json.loads(comment[len(MARK) + 1:])
    except ValueError:
        return None
    return found if isinstance(found, dict) and "owner" in found else None


def parse_tags(tags):
    """The mark in a bucket's tags ({key: value}), or None when it is not a drill's."""
    if TAG_OWNER not in tags:
        return None
    return {"owner": tags[TAG_OWNER], "started_at": tags.get(TAG_STARTED)}


def is_leftover(found, owner, now, max_age_hours):
    """A marked scratch target to remove: this host's (its drills run one at a time), or any
    host's once older than ``max_age_hours`` (a drill server shared by a fleet whose host died)."""
    if not found:
        return False
    if found.get("owner") == owner:
        return True
    started = fs.parse_time(found.get("started_at"))
    return started is None or now - started > datetime.timedelta(hours=max_age_hours)


def _literal(text):
    return "'" + text.replace("'", "''") + "'"


def _ident(text):
    return '"' + text.replace('"', '""') + '"'


class PostgresScratch:
    """Scratch databases on one server, through a pg_client session."""

    def __init__(self, session):
        self.session = session

    def marked(self):
        """{database: mark or None} of every database named like a drill's."""
        rows = self.session.query(
            "SELECT json_build_object('d', datname, 'c', shobj_description(oid, 'pg_database')) "
            "FROM pg_database WHERE datname ~ '^rat_drill_[0-9]{8}_[0-9]{6}$' ORDER BY datname;")
        found = {}
        for row in rows:
            item = json.loads(row)
            found[item["d"]] = parse_comment(item["c"])
        return found

    def create(self, now, owner, attempts=120):
        """Create a fresh marked database, a second later when the name is taken (a shared server).

        Two drills racing for the same free name in the same second: the loser fails naming it.
        """
        taken = set(self.marked())
        for _ignored in range(attempts):
            name = database_name(now)
            if name not in taken:
                try:
                    self.session.query(f"CREATE DATABASE {_ident(name)};")
                except RatBackupError as exc:
                    hint = " (the drill's PostgreSQL user needs CREATEDB)" if "permission denied" in exc.msg else ""
                    raise RatBackupError(f"cannot create the drill database {name}: {exc.msg}{hint}",
                                         database=name)
                self.session.query(f"COMMENT ON DATABASE {_ident(name)} IS {_literal(database_comment(owner, now))};")
                return name
            now = now + datetime.timedelta(seconds=1)
        raise RatBackupError(f"no free drill database name near {database_name(now)}")

    def drop(self, name):
        """Drop a scratch database; False when it was already gone."""
        if not DATABASE_RE.match(name):
            raise RatBackupError(f"refusing to drop {name!r}: not a drill database name", database=name)
        if name not in self.marked():
            return False
        self.session.query(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE);")
        if name in self.marked():
            raise RatBackupError(f"drill database {name} is still there after DROP DATABASE", database=name)
        return True


class S3Scratch:
    """Scratch buckets on one endpoint (calls through module_utils/s3)."""

    def __init__(self, client, endpoint):
        self.client = client
        self.endpoint = endpoint

    def marked(self):
        """{bucket: mark or None} of every bucket named like a drill's."""
        names = [n for n in s3.bucket_names(self.client, self.endpoint) if BUCKET_RE.match(n)]
        return {name: parse_tags(s3.bucket_tags(self.client, self.endpoint, name)) for name in names}

    def create(self, names, owner, now):
        """Create the buckets with the drill's mark; a name already there is an error (never reused)."""
        clash = sorted(set(names) & set(s3.bucket_names(self.client, self.endpoint)))
        if clash:
            raise RatBackupError(f"scratch bucket {', '.join(clash)} already exists on {self.endpoint.name}")
        for name in names:
            s3.create_bucket(self.client, self.endpoint, name, versioned=False)
            s3.put_bucket_tags(self.client, self.endpoint, name, {TAG_OWNER: owner, TAG_STARTED: fs.iso(now)})

    def drop(self, bucket):
        """Remove a scratch bucket with everything in it; False when it was already gone."""
        if not BUCKET_RE.match(bucket):
            raise RatBackupError(f"refusing to remove bucket {bucket!r}: not a drill bucket name", bucket=bucket)
        removed = s3.delete_bucket(self.client, self.endpoint, bucket)
        if s3.bucket_exists(self.client, self.endpoint, bucket):
            raise RatBackupError(f"scratch bucket {bucket} is still on {self.endpoint.name} after its removal",
                                 bucket=bucket)
        return removed


def leftovers(marked, owner, now, max_age_hours, keep=()):
    """Names among ``marked`` ({name: mark}) to remove, never those in ``keep``."""
    return sorted(n for n, found in marked.items() if n not in keep and is_leftover(found, owner, now, max_age_hours))
