# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch targets of a restore drill: names, ownership marks, creation and removal.

A drill restores a backup into a database ``rat_drill_<YYYYmmdd_HHMMSS>`` and buckets
``rat-drill-<YYYYmmdd>-<HHMMSS>-<owner hash>-<n>-<bucket>`` beside the live ones. Each carries a
mark (the database's comment; in a bucket the marker object ``MARKER_KEY``, plus tags where the
server takes them) saying which host's drill made it and when, so a later drill removes what an
interrupted one left behind, and nothing that merely looks similar. The marker object needs no
optional S3 API: bucket tagging is missing on some servers (s3rver) or denied by a policy.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

DATABASE_RE = re.compile(r"^rat_drill_[0-9]{8}_[0-9]{6}$")
BUCKET_RE = re.compile(r"^rat-drill-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}-[0-9]+-")
MARK = "rat.backup drill"
TAG_OWNER = "rat-backup-drill-owner"
TAG_STARTED = "rat-backup-drill-started"
# The marker object of a scratch bucket: the mark as JSON. The restore leaves it (a drill restores
# without pruning) and the comparison passes over it (compare.list_buckets).
MARKER_KEY = ".rat-backup-drill.json"
# What a server without bucket tagging, or a policy denying it, answers.
_TAGS_UNAVAILABLE = frozenset(("NotImplemented", "MethodNotAllowed", "AccessDenied", "501", "405", "403"))
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


def mark(owner, now, keep=False):
    """The mark of a scratch target; ``keep`` (a selective restore's scratch buckets) makes it no
    drill's leftover: it stays until removed by name."""
    found = {"owner": owner, "started_at": fs.iso(now)}
    if keep:
        found["keep"] = True
    return found


def database_comment(owner, now, keep=False):
    return f"{MARK} {json.dumps(mark(owner, now, keep), sort_keys=True)}"


def parse_comment(comment):
    """The mark in a database comment, or None when it is not a drill's."""
    if not comment or not comment.startswith(MARK + " "):
        return None
    try:
        found = json.loads(comment[len(MARK) + 1:])
    except ValueError:
        return None
    return found if isinstance(found, dict) and "owner" in found else None


def is_scratch_bucket(name):
    """True for a drill's scratch bucket name: never a backup's bucket."""
    return bool(BUCKET_RE.match(name))


def parse_marker(data):
    """The mark in a marker object's bytes, or None when it is not a drill's."""
    try:
        found = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, AttributeError):
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
    if not found or found.get("keep"):
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
    """Scratch databases on one server, through a psql session (from ``postgres.client_from_params``)."""

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

    def require_createdb(self):
        """Fail naming the privilege when the user may not create databases (check mode asks too)."""
        rows = self.session.query(
            "SELECT json_build_object('u', current_user, 'ok', rolcreatedb OR rolsuper) "
            "FROM pg_roles WHERE rolname = current_user;")
        found = json.loads(rows[0]) if rows else {}
        if not found.get("ok"):
            raise RatBackupError(f"the drill's PostgreSQL user {found.get('u', '?')!r} may not create databases: "
                                 "it needs CREATEDB (ALTER ROLE ... CREATEDB, or a drill user that has it: "
                                 "rat_drill_postgres_user)")

    def create(self, now, owner, attempts=120, keep=False):
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
                try:
                    self.session.query(
                        f"COMMENT ON DATABASE {_ident(name)} IS {_literal(database_comment(owner, now, keep))};")
                except RatBackupError as exc:
                    # Made but not marked: named in the error, so the caller removes it by name.
                    raise RatBackupError(f"cannot mark the drill database {name}: {exc.msg}",
                                         **dict(exc.details, scratch_database=name))
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
        return {name: self.mark_of(name) for name in s3.bucket_names(self.client, self.endpoint)
                if is_scratch_bucket(name)}

    def mark_of(self, bucket):
        """The bucket's mark: its marker object, else its tags (an older drill's); None when unmarked."""
        try:
            marker = s3.get_object(self.client, self.endpoint, bucket, MARKER_KEY, missing_ok=True)
        except RatBackupError as exc:
            if exc.details.get("error_code") == "NoSuchBucket":
                # Removed since the listing (another host's drill on a shared drill server).
                return None
            raise
        if marker is not None:
            with s3.translated(self.endpoint, "reading the drill marker of", bucket, MARKER_KEY):
                found = parse_marker(marker["Body"].read())
            if found:
                return found
        try:
            return parse_tags(s3.bucket_tags(self.client, self.endpoint, bucket))
        except RatBackupError as exc:
            if exc.details.get("error_code") in _TAGS_UNAVAILABLE:
                return None
            raise

    def create(self, names, owner, now, created, keep=False):
        """Create the buckets with the drill's mark; a name already there is an error (never reused).

        Each bucket goes into ``created`` as soon as it exists, so a failure later on still leaves
        the caller every name to remove. Tags are set where the server takes them, in addition."""
        clash = sorted(set(names) & set(s3.bucket_names(self.client, self.endpoint)))
        if clash:
            raise RatBackupError(f"scratch bucket {', '.join(clash)} already exists on {self.endpoint.name}")
        body = json.dumps(mark(owner, now, keep), sort_keys=True).encode("utf-8")
        for name in names:
            s3.create_bucket(self.client, self.endpoint, name, versioned=False)
            created.append(name)
            s3.put_bytes(self.client, self.endpoint, name, MARKER_KEY, body)
            try:
                s3.put_bucket_tags(self.client, self.endpoint, name, {TAG_OWNER: owner, TAG_STARTED: fs.iso(now)})
            except RatBackupError as exc:
                if exc.details.get("error_code") not in _TAGS_UNAVAILABLE:
                    raise

    def drop(self, bucket):
        """Remove a scratch bucket with everything in it; False when it was already gone."""
        if not is_scratch_bucket(bucket):
            raise RatBackupError(f"refusing to remove bucket {bucket!r}: not a drill bucket name", bucket=bucket)
        removed = s3.delete_bucket(self.client, self.endpoint, bucket)
        if s3.bucket_exists(self.client, self.endpoint, bucket):
            raise RatBackupError(f"scratch bucket {bucket} is still on {self.endpoint.name} after its removal",
                                 bucket=bucket)
        return removed


def leftovers(marked, owner, now, max_age_hours, keep=()):
    """Names among ``marked`` ({name: mark}) to remove, never those in ``keep``."""
    return sorted(n for n, found in marked.items() if n not in keep and is_leftover(found, owner, now, max_age_hours))
