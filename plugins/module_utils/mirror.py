# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning and running a mirror: S3 -> disk, disk -> S3, or S3 -> S3.

What a no-change rerun relies on (S3 -> disk): the object manifest of the previous run at the
destination (plus its journal after an interrupted run), the size/ETag/version id of the
listing, and the local file still being a regular file with the recorded size and the
object's LastModified as mtime (this module sets it). ETags are compared only for equality
with an ETag recorded earlier; they are never read as an MD5 except for single-part objects
when no manifest tells us anything (then the local file is hashed).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import fnmatch
import hashlib
import json
import mimetypes
import os
import posixpath
import stat
import tempfile
import threading
import time
import uuid

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.keys import ESCAPE_DIR, TMP_DIR, KeyMapper
from ansible_collections.rat.backup.plugins.module_utils import layout
from ansible_collections.rat.backup.plugins.module_utils import s3

try:
    from boto3.s3.transfer import TransferConfig
except ImportError:
    # s3.HAS_BOTO3 tells the module; nothing here runs without boto3.
    pass

MANIFEST_FORMAT = 1
READ_CHUNK = 1 << 20
# Objects up to PART_SIZE travel in one request; larger ones in parts of this size. The same size
# lets a multipart ETag written by this module be recomputed from the local file.
PART_SIZE = 16 << 20
FIRST_KEYS = 10
PROGRESS_EVERY = 15.0
DELETE_BATCH = 1000

_UTC = datetime.timezone.utc
_ATTRIBUTES = (
    ("content_type", "ContentType"),
    ("cache_control", "CacheControl"),
    ("content_encoding", "ContentEncoding"),
    ("content_disposition", "ContentDisposition"),
)
_ATTRIBUTE_NAMES = tuple(name for name, header in _ATTRIBUTES)


def iso(dt):
    return dt.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_ms(dt):
    """Milliseconds since the epoch: S3's resolution, and an int is smaller in memory than text."""
    return int(round(dt.timestamp() * 1000))


def iso_ms(ms):
    return datetime.datetime.fromtimestamp(ms // 1000, _UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "{0:03d}Z".format(ms % 1000)


def ms_from_iso(text):
    return to_ms(datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))) if text else None


def parse_as_of(text):
    """``versions_as_of`` as an aware datetime; a naive time is UTC."""
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RatBackupError(
            "versions_as_of {0!r} is not an ISO 8601 time such as 2026-01-31T23:00:00Z".format(text))
    return when if when.tzinfo else when.replace(tzinfo=_UTC)


class Location:
    """``s3://``, ``s3://bucket[/prefix]`` or a local directory."""

    def __init__(self, text, option):
        self.text = text
        self.option = option
        self.is_s3 = text.startswith("s3://")
        if self.is_s3:
            bucket, dummy, prefix = text[len("s3://"):].partition("/")
            if not bucket and prefix:
                raise RatBackupError("{0} {1!r}: a prefix needs a bucket (s3://bucket/prefix)".format(option, text))
            self.bucket = bucket or None
            # A prefix names a "directory", as aws s3 sync and rclone read it.
            self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
            self.path = None
        else:
            if not text:
                raise RatBackupError("{0} must not be empty".format(option))
            self.bucket = None
            self.prefix = ""
            self.path = os.path.abspath(text)

    @property
    def single_bucket(self):
        return self.bucket is not None


class Entry:
    """One object: what S3 said about it and where it lives under the local mirror root."""

    __slots__ = ("bucket", "key", "size", "etag", "version_id", "modified_ms", "relpath", "sha256",
                 "content_type", "cache_control", "content_encoding", "content_disposition", "metadata")

    def __init__(self, bucket, key, size, etag=None, version_id=None, modified_ms=None, relpath=None,
                 sha256=None, content_type=None, cache_control=None, content_encoding=None,
                 content_disposition=None, metadata=None):
        self.bucket = bucket
        self.key = key
        self.size = size
        self.etag = etag
        self.version_id = version_id
        self.modified_ms = modified_ms
        self.relpath = relpath
        self.sha256 = sha256
        self.content_type = content_type
        self.cache_control = cache_control
        self.content_encoding = content_encoding
        self.content_disposition = content_disposition
        self.metadata = metadata

    def take_attributes(self, other):
        self.sha256 = other.sha256
        self.metadata = other.metadata
        for name in _ATTRIBUTE_NAMES:
            setattr(self, name, getattr(other, name))

    def take_response(self, response):
        for name, header in _ATTRIBUTES:
            setattr(self, name, response.get(header))
        self.metadata = response.get("Metadata") or {}

    def extra_args(self):
        """Upload arguments that restore the object's attributes."""
        args = {header: getattr(self, name) for name, header in _ATTRIBUTES if getattr(self, name)}
        if self.metadata:
            args["Metadata"] = dict(self.metadata)
        return args

    def to_manifest(self, root_name):
        item = {"bucket": self.bucket, "key": self.key, "path": posixpath.join(root_name, self.relpath),
                "size": self.size, "sha256": self.sha256, "etag": self.etag, "version_id": self.version_id,
                "last_modified": None if self.modified_ms is None else iso_ms(self.modified_ms)}
        for name in _ATTRIBUTE_NAMES:
            # Content-Type is always recorded; the rarer HTTP attributes only when the object has them.
            if name == "content_type" or getattr(self, name) is not None:
                item[name] = getattr(self, name)
        item["metadata"] = self.metadata or {}
        return item

    @classmethod
    def from_manifest(cls, item, source):
        try:
            entry = cls(item["bucket"], item["key"], int(item["size"]), item.get("etag"), item.get("version_id"),
                        ms_from_iso(item.get("last_modified")), safe_relpath(item["path"], source), item.get("sha256"),
                        metadata=item.get("metadata") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RatBackupError("{0}: malformed object entry {1!r} ({2})".format(source, item, exc))
        for name in _ATTRIBUTE_NAMES:
            setattr(entry, name, item.get(name))
        return entry


def safe_relpath(path, source):
    """The part of a manifest ``path`` below the mirror root, refusing anything that could escape it."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise RatBackupError("{0}: object path {1!r} is not a relative path".format(source, path))
    parts = path.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") or any(ord(c) < 0x20 for c in p) for p in parts):
        raise RatBackupError("{0}: object path {1!r} is not a clean path inside the backup".format(source, path))
    return "/".join(parts[1:])


class Filter:
    """include/exclude glob patterns on the key relative to the location's prefix."""

    def __init__(self, include, exclude, prefix):
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        self.prefix = prefix

    @property
    def active(self):
        return bool(self.include or self.exclude)

    def __call__(self, key):
        rel = key[len(self.prefix):] if key.startswith(self.prefix) else key
        if self.include and not any(fnmatch.fnmatchcase(rel, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(rel, p) for p in self.exclude)


# --- object manifests -------------------------------------------------------------------------

def read_manifest(path, what):
    """(header, entries) from an object manifest or a backup manifest whose "minio" key holds one.

    Our own manifests put one object per line, which is read line by line so a 100,000-object
    manifest never exists as 100,000 dicts at once; any other layout falls back to json.load.
    """
    try:
        with open(path, "r", encoding="utf-8") as handle:
            header = _read_line_layout(handle, path)
            if header is not None:
                return header
            handle.seek(0)
            document = json.load(handle)
    except OSError as exc:
        raise RatBackupError("cannot read {0} {1}: {2}".format(what, path, exc.strerror), path=path)
    except ValueError as exc:
        raise RatBackupError("{0} {1} is not valid JSON: {2}".format(what, path, exc), path=path)
    if isinstance(document, dict) and isinstance(document.get("minio"), dict):
        document = document["minio"]
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise RatBackupError("{0} {1} is not an object manifest (no \"objects\" list)".format(what, path), path=path)
    entries = [Entry.from_manifest(item, path) for item in document.pop("objects")]
    return document, entries


def _read_line_layout(handle, path):
    first = handle.readline()
    if not first.rstrip().endswith('"objects": ['):
        return None
    header = json.loads(first.rstrip() + "]}")
    entries = []
    for line in handle:
        line = line.rstrip()
        if line == "]}":
            return header, entries
        entries.append(Entry.from_manifest(json.loads(line.rstrip(",")), path))
    raise RatBackupError("object manifest {0} is truncated".format(path), path=path)


def write_manifest(path, header, entries, root_name):
    """Atomically write an object manifest (0600), one object per line, sorted by bucket and key."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, ".{0}.{1}.tmp".format(os.path.basename(path), uuid.uuid4().hex))
    entries = sorted(entries, key=lambda e: (e.bucket, e.key))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(header, sort_keys=True)[:-1] + ', "objects": [\n')
            for index, entry in enumerate(entries):
                handle.write(json.dumps(entry.to_manifest(root_name), sort_keys=True))
                handle.write(",\n" if index + 1 < len(entries) else "\n")
            handle.write("]}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise RatBackupError("cannot write object manifest {0}: {1}".format(path, exc.strerror), path=path)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# --- local files ------------------------------------------------------------------------------

class LocalDigest:
    """sha256, MD5 and the multipart ETag this module's uploads would produce, from one read."""

    __slots__ = ("size", "sha256", "md5", "multipart_etag")

    def __init__(self, size, sha256, md5, multipart_etag):
        self.size = size
        self.sha256 = sha256
        self.md5 = md5
        self.multipart_etag = multipart_etag

    def matches_etag(self, etag):
        """True only when the ETag proves equal content; unknown ETag shapes never match."""
        value = (etag or "").strip('"')
        if "-" in value:
            return value == self.multipart_etag
        return value == self.md5


def open_regular(path):
    """A read-only fd of a regular file, never following a symlink at the last component."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = "is a symlink" if exc.errno == 40 else exc.strerror
        raise RatBackupError("cannot read local file {0}: {1}".format(path, reason), path=path)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RatBackupError("local file {0} is not a regular file".format(path), path=path)
    return fd


def local_digest(path):
    fd = open_regular(path)
    sha, md5, part, parts = hashlib.sha256(), hashlib.md5(), hashlib.md5(), []
    size = in_part = 0
    try:
        with os.fdopen(fd, "rb", buffering=0) as handle:
            while True:
                chunk = handle.read(min(READ_CHUNK, PART_SIZE - in_part))
                if not chunk:
                    break
                sha.update(chunk)
                md5.update(chunk)
                part.update(chunk)
                size += len(chunk)
                in_part += len(chunk)
                if in_part == PART_SIZE:
                    parts.append(part.digest())
                    part, in_part = hashlib.md5(), 0
    except OSError as exc:
        raise RatBackupError("cannot read local file {0}: {1}".format(path, exc.strerror), path=path)
    if in_part:
        parts.append(part.digest())
    multipart = None
    if size > PART_SIZE:
        multipart = "{0}-{1}".format(hashlib.md5(b"".join(parts)).hexdigest(), len(parts))
    return LocalDigest(size, sha.hexdigest(), md5.hexdigest(), multipart)


class LocalTree:
    """The local side: paths under a root, created 0700/0600, never through a symlink."""

    def __init__(self, root):
        self.root = root
        self.tmp = os.path.join(root, TMP_DIR)
        self._real_root = None
        self._checked = set()
        self._lock = threading.Lock()

    def path(self, relpath):
        return os.path.join(self.root, *relpath.split("/"))

    def prepare(self):
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RatBackupError("cannot create {0}: {1}".format(self.root, exc.strerror), path=self.root)
        self._real_root = os.path.realpath(self.root)
        # Leftovers of an interrupted run are partial transfers by construction.
        for name in os.listdir(self.tmp):
            _unlink_quietly(os.path.join(self.tmp, name))

    def finish(self):
        try:
            os.rmdir(self.tmp)
        except OSError:
            pass

    def parent_for(self, relpath):
        """Create the parent directory of ``relpath`` and prove it resolves inside the root."""
        parent = os.path.dirname(self.path(relpath))
        if parent in self._checked:
            return
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RatBackupError("cannot create directory {0}: {1}".format(parent, exc.strerror), path=parent)
        self.ensure_inside(parent)
        with self._lock:
            self._checked.add(parent)

    def ensure_inside(self, parent):
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        real = os.path.realpath(parent)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise RatBackupError("{0} resolves outside {1} (symlink in the tree); refusing to use it".format(
                parent, self.root), path=parent)

    def temp_path(self):
        return os.path.join(self.tmp, uuid.uuid4().hex)

    def matches(self, entry):
        """True when the local file is the one a previous run wrote for this entry."""
        try:
            st = os.lstat(self.path(entry.relpath))
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        return entry.modified_ms is None or int(st.st_mtime) == entry.modified_ms // 1000

    def walk(self, top_relpath=""):
        """(relpath, kind) of every non-directory under ``top_relpath``; kind: file, symlink, special."""
        top = self.path(top_relpath) if top_relpath else self.root
        if top_relpath and os.path.islink(top):
            # os.walk would list the target's files as if they were ours.
            yield top_relpath, "symlink", 0
            return
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir
            names = list(filenames)
            for name in list(dirnames):
                if os.path.islink(os.path.join(dirpath, name)):
                    dirnames.remove(name)
                    names.append(name)
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                kind = "file" if stat.S_ISREG(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "special"
                yield posixpath.join(rel_dir, name) if rel_dir else name, kind, st.st_size

    def prune_empty(self, relpath, keep):
        """Remove empty directories left above ``relpath``, stopping at any directory in ``keep``."""
        parent = posixpath.dirname(relpath)
        while parent and parent not in keep:
            try:
                os.rmdir(self.path(parent))
            except OSError:
                return
            self._checked.discard(self.path(parent))
            parent = posixpath.dirname(parent)


# --- the plan ---------------------------------------------------------------------------------

class Plan:
    """What a run will do; check mode returns its summary, a real run executes it."""

    def __init__(self):
        self.copy = []
        self.link = []
        self.delete = []
        self.keep = []
        self.create_buckets = []
        self.skipped_files = []

    def summary(self):
        def part(items, key_of, size_of=None):
            result = {"count": len(items), "first": [key_of(i) for i in items[:FIRST_KEYS]]}
            if size_of:
                result["bytes"] = sum(size_of(i) for i in items)
            return result
        # "copy" would shadow dict.copy in Jinja (result.plan.copy), hence the to_ names.
        return {
            "to_copy": part(self.copy, _label, lambda i: _entry(i).size),
            "to_link": part(self.link, _label, lambda i: _entry(i).size),
            "to_delete": part(self.delete, _label),
            "unchanged": {"count": len(self.keep)},
            "create_buckets": list(self.create_buckets),
        }


def _entry(item):
    return item[0] if isinstance(item, tuple) else item


def _label(item):
    item = _entry(item)
    if isinstance(item, Entry):
        return "{0}/{1}".format(item.bucket, item.key)
    return item


class Mirror:
    """One bucket_mirror run. ``options`` is the module's params dict."""

    def __init__(self, options, src_client=None, dest_client=None, log=None, check_mode=False):
        self.options = options
        self.src = Location(options["src"], "src")
        self.dest = Location(options["dest"], "dest")
        self.src_endpoint = s3.Endpoint.from_params(options, "src_")
        self.dest_endpoint = s3.Endpoint.from_params(options, "dest_")
        self.src_client = src_client
        self.dest_client = dest_client
        self.log = log or (lambda message: None)
        self.check_mode = check_mode
        self.concurrency = max(1, int(options.get("concurrency") or 8))
        self.attempts = max(1, int(options.get("retry_max_attempts") or 1))
        self.as_of = parse_as_of(options["versions_as_of"]) if options.get("versions_as_of") else None
        self.changed_during = []
        self.stats = {"copied": 0, "linked": 0, "deleted": 0, "bytes": 0}
        self._src_tree = None if self.src.is_s3 else LocalTree(self.src.path)
        self._validate()
        listed = self.src if self.src.is_s3 else self.dest
        self.filter = Filter(options.get("include"), options.get("exclude"), listed.prefix)

    def _validate(self):
        o = self.options
        if not self.src.is_s3 and not self.dest.is_s3:
            raise RatBackupError("src and dest are both local directories; one side must be an s3:// location")
        buckets = o.get("buckets") or []
        for side in (self.src, self.dest):
            if side.is_s3 and side.single_bucket and buckets:
                raise RatBackupError("buckets only applies to an s3:// location without a bucket, not {0}".format(side.text))
        for name in buckets:
            if not name or "/" in name or name.startswith("."):
                raise RatBackupError("buckets: {0!r} is not a bucket name".format(name))
        if self.src.is_s3 and self.dest.is_s3 and o.get("manifest"):
            raise RatBackupError("manifest needs a local src or dest (S3 -> S3 keeps no manifest)")
        if o.get("link_dest") and not (self.src.is_s3 and not self.dest.is_s3):
            raise RatBackupError("link_dest only applies to S3 -> local directory mirrors")
        if (o.get("versions_as_of") or o.get("use_versions")) and not self.src.is_s3:
            raise RatBackupError("versions_as_of and use_versions need an s3:// src")
        if not self.src.is_s3 and not os.path.isdir(self.src.path):
            raise RatBackupError("src {0} is not a directory".format(self.src.path), path=self.src.path)
        if self.concurrency > 64:
            raise RatBackupError("concurrency {0} is above the limit of 64".format(self.concurrency))

    # --- entry point --------------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        if self.options.get("probe"):
            result = self._probe()
        elif self.src.is_s3 and not self.dest.is_s3:
            result = self._download()
        elif self.dest.is_s3 and not self.src.is_s3:
            result = self._upload()
        else:
            result = self._s3_copy()
        seconds = time.monotonic() - started
        result.update(self.stats)
        result["unchanged"] = result["plan"]["unchanged"]["count"]
        result["seconds"] = round(seconds, 3)
        result["mb_per_s"] = round(self.stats["bytes"] / 1e6 / seconds, 2) if seconds > 0 else 0.0
        result["changed_during"] = self.changed_during
        return result

    def _probe(self):
        """Ask each S3 side what a mirror needs before it starts (endpoint, credentials, the source's
        buckets and their versioning) without listing a single object: cheap on any lake."""
        probed = {}
        if self.src.is_s3:
            probed["src"] = {bucket: {"versioned": self._versioned(self.src_client, self.src_endpoint, bucket)}
                             for bucket in self._buckets(self.src_client, self.src_endpoint, self.src)}
        if self.dest.is_s3:
            try:
                self.dest_client.list_buckets()
            except s3.sdk_errors() as exc:
                raise s3.translate(exc, self.dest_endpoint, "listing buckets")
            probed["dest"] = {}
        return {"plan": Plan().summary(), "changed": False, "probed": probed}

    # --- listing ------------------------------------------------------------------------------

    def _buckets(self, client, endpoint, location):
        if location.single_bucket:
            return [location.bucket]
        try:
            names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
        except s3.sdk_errors() as exc:
            raise s3.translate(exc, endpoint, "listing buckets")
        wanted = self.options.get("buckets") or []
        missing = [b for b in wanted if b not in names]
        if missing:
            raise RatBackupError("bucket(s) {0} not found on {1}".format(", ".join(missing), endpoint.name),
                                 endpoint=endpoint.name, bucket=missing[0])
        return sorted(wanted) if wanted else sorted(names)

    def _versioned(self, client, endpoint, bucket):
        try:
            status = client.get_bucket_versioning(Bucket=bucket).get("Status")
        except s3.sdk_errors() as exc:
            raise s3.translate(exc, endpoint, "reading versioning", bucket)
        return status in ("Enabled", "Suspended")

    def _list(self, client, endpoint, bucket, prefix, versioned, *known):
        """The objects of one bucket to mirror, as Entries without relpath.

        An object that one of the ``known`` maps (the previous run's entries, then link_dest's)
        already describes with the same size, ETag and version id is returned as that very Entry,
        so an unchanged 100,000-object bucket is not held in memory twice.
        """
        try:
            if self.as_of is not None or (versioned and self.options.get("use_versions")):
                listed = self._list_versions(client, bucket, prefix)
            else:
                listed = self._list_current(client, bucket, prefix)
            entries = []
            for key, size, etag, version, modified in listed:
                for entries_by_key in known:
                    before = entries_by_key.get((bucket, key))
                    if before is not None and (before.size, before.etag, before.version_id) == (size, etag, version):
                        entries.append(before)
                        break
                else:
                    entries.append(Entry(bucket, key, size, etag, version, to_ms(modified)))
            return entries
        except s3.sdk_errors() as exc:
            raise s3.translate(exc, endpoint, "listing objects", bucket)

    def _list_current(self, client, bucket, prefix):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", ()):
                if self.filter(o["Key"]):
                    yield o["Key"], o["Size"], o.get("ETag"), None, o["LastModified"]

    def _list_versions(self, client, bucket, prefix):
        chosen = {}

        def consider(item, deleted):
            key, modified = item["Key"], item["LastModified"]
            if self.as_of is None:
                if item.get("IsLatest"):
                    chosen[key] = (modified, None if deleted else item)
                return
            if modified <= self.as_of and (key not in chosen or modified > chosen[key][0]):
                chosen[key] = (modified, None if deleted else item)

        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Versions", ()):
                consider(item, False)
            for item in page.get("DeleteMarkers", ()):
                consider(item, True)
        for key in sorted(chosen):
            item = chosen[key][1]
            if item is not None and self.filter(key):
                version = item.get("VersionId")
                yield key, item["Size"], item.get("ETag"), None if version in (None, "null") else version, \
                    item["LastModified"]

    def _list_dest_objects(self, bucket, prefix):
        """{key: (size, etag)} of a destination bucket; empty when it does not exist yet."""
        found = {}
        try:
            for page in self.dest_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", ()):
                    found[o["Key"]] = (o["Size"], o.get("ETag"))
        except s3.sdk_errors() as exc:
            if s3.error_code(exc) == "NoSuchBucket":
                return found
            raise s3.translate(exc, self.dest_endpoint, "listing objects", bucket)
        return found

    # --- S3 -> disk ---------------------------------------------------------------------------

    def _download(self):
        o = self.options
        tree = LocalTree(self.dest.path)
        manifest_path = o.get("manifest")
        previous, manifest_complete = self._previous_state(manifest_path)
        linkable, link_tree = self._link_candidates()
        buckets = self._buckets(self.src_client, self.src_endpoint, self.src)
        header = {"format": MANIFEST_FORMAT, "endpoint": self.src_endpoint.name,
                  "listed_at": iso(datetime.datetime.now(_UTC)), "buckets": {}}
        if self.as_of is not None:
            header["versions_as_of"] = iso(self.as_of)
        if self.src.single_bucket:
            header["prefix"] = self.src.prefix
        plan = Plan()
        expected = set()
        unknown = []
        for bucket in buckets:
            versioned = self._versioned(self.src_client, self.src_endpoint, bucket)
            header["buckets"][bucket] = {"versioned": versioned}
            entries = self._list(self.src_client, self.src_endpoint, bucket, self.src.prefix, versioned, previous,
                                 linkable)
            mapper = KeyMapper(bucket, "" if self.src.single_bucket else bucket, self.src.prefix,
                               [e.key for e in entries])
            for index, entry in enumerate(entries):
                entries[index] = None
                relpath = mapper.relpath(entry.key)
                if o.get("delete"):
                    expected.add(relpath)
                before = previous.pop((bucket, entry.key), None)
                if before is entry:
                    if before.relpath == relpath and tree.matches(before):
                        plan.keep.append(before)
                        continue
                    entry = Entry(bucket, entry.key, entry.size, entry.etag, entry.version_id, entry.modified_ms)
                if linkable.get((bucket, entry.key)) is entry:
                    # The previous mirror's Entry, reused by _list: same size, ETag and version id.
                    source = link_tree.path(entry.relpath)
                    if _is_same_size_file(source, entry.size):
                        entry.relpath = relpath
                        plan.link.append((entry, source))
                        continue
                    entry = Entry(bucket, entry.key, entry.size, entry.etag, entry.version_id, entry.modified_ms)
                entry.relpath = relpath
                if before is None and not manifest_path and _is_same_size_file(tree.path(entry.relpath), entry.size):
                    unknown.append(entry)
                    continue
                plan.copy.append(entry)
        linkable = None
        self._settle_unknown(tree, unknown, plan)
        if o.get("delete") and os.path.isdir(tree.root):
            plan.delete = self._local_extras(tree, buckets, expected, previous)
        result = {"plan": plan.summary(), "manifest": manifest_path}
        self._check_room(tree, plan)
        changed = bool(plan.copy or plan.link or plan.delete) or (manifest_path is not None and not manifest_complete)
        result["changed"] = changed
        if self.check_mode:
            return result
        tree.prepare()
        self._delete_local(tree, plan.delete, buckets)
        done = list(plan.keep)
        journal = _Journal(manifest_path + ".journal" if manifest_path else None, self.dest.path)
        try:
            for entry, path in plan.link:
                self._link(tree, entry, path)
                journal.add(entry)
                done.append(entry)
            self._parallel(plan.copy, lambda e: self._fetch(tree, e), self._counted(done, journal))
        finally:
            journal.close()
        if manifest_path and changed:
            write_manifest(manifest_path, header, [e for e in done if e is not None], _root_name(self.dest.path))
            journal.remove()
        tree.finish()
        return result

    def _check_room(self, tree, plan):
        """Fail before the first byte is written when the planned downloads cannot fit."""
        needed = sum(entry.size for entry in plan.copy) + max(0, self.options.get("min_free_bytes") or 0)
        existing = layout.nearest_existing_dir(tree.root)
        free = layout.free_bytes(existing)
        if needed > free:
            raise RatBackupError(
                "not enough free space in {0}: {1} objects to download need {2} MiB (with min_free_bytes), "
                "{3} MiB free".format(existing, len(plan.copy), -(-needed // 2 ** 20), free // 2 ** 20),
                path=existing, free_bytes=free, required_bytes=needed)

    def _settle_unknown(self, tree, entries, plan):
        """Without a manifest, a same-size local file is kept only if its content proves equal."""
        digests = self._digests(entries, tree)
        for entry in entries:
            if digests[id(entry)].matches_etag(entry.etag):
                plan.keep.append(entry)
            else:
                entry.sha256 = None
                plan.copy.append(entry)

    def _previous_state(self, manifest_path):
        """{(bucket, key): Entry} this destination already holds, and whether its manifest was
        complete (a journal left behind means the last run was interrupted)."""
        state = {}
        complete = False
        if manifest_path and os.path.exists(manifest_path):
            entries = read_manifest(manifest_path, "manifest")[1]
            state = {(e.bucket, e.key): e for e in entries}
            complete = True
        journal_path = manifest_path + ".journal" if manifest_path else None
        if journal_path and os.path.exists(journal_path):
            complete = False
            for entry in _Journal.read(journal_path):
                state[(entry.bucket, entry.key)] = entry
        return state, complete

    def _link_candidates(self):
        """({(bucket, key): Entry}, LocalTree) of the previous mirror given as link_dest."""
        link_dest = self.options.get("link_dest")
        if not link_dest:
            return {}, None
        link_dest = os.path.abspath(link_dest)
        manifest = self.options.get("link_dest_manifest") or os.path.join(os.path.dirname(link_dest), "manifest.json")
        if not os.path.isdir(link_dest):
            raise RatBackupError("link_dest {0} is not a directory".format(link_dest), path=link_dest)
        entries = read_manifest(manifest, "link_dest_manifest")[1]
        return {(e.bucket, e.key): e for e in entries}, LocalTree(link_dest)

    def _local_extras(self, tree, buckets, expected, previous):
        """Local files the source no longer has, within the buckets this run mirrors."""
        by_path = {e.relpath: e.key for e in previous.values()}
        own_files = set()
        for path in (self.options.get("manifest"), (self.options.get("manifest") or "") + ".journal"):
            if path and os.path.dirname(os.path.abspath(path)) == tree.root:
                own_files.add(os.path.basename(path))
        tops = []
        if self.src.single_bucket:
            tops.append(("", self.src.bucket))
        else:
            everything = not self.options.get("buckets")
            present = [n for n in os.listdir(tree.root) if not n.startswith(".")]
            tops.extend((n, n) for n in present if everything or n in buckets)
        escape_root = os.path.join(tree.root, ESCAPE_DIR)
        if os.path.isdir(escape_root):
            everything = not self.options.get("buckets") or self.src.single_bucket
            for name in os.listdir(escape_root):
                wanted = [self.src.bucket] if self.src.single_bucket else (None if everything else buckets)
                if wanted is None or name in wanted:
                    tops.append((posixpath.join(ESCAPE_DIR, name), name))
        extras = []
        for top, bucket in tops:
            for relpath in (found[0] for found in tree.walk(top)):
                if relpath in expected or relpath in own_files or relpath.split("/")[0] == TMP_DIR or \
                        (top == "" and relpath.startswith(".rat-")):
                    continue
                if top.startswith(ESCAPE_DIR):
                    key = by_path.get(relpath)
                    if key is None and self.filter.active:
                        continue
                else:
                    key = self.src.prefix + (relpath if top == "" else relpath[len(top) + 1:])
                if key is None or self.filter(key):
                    extras.append(relpath)
        return extras

    def _delete_local(self, tree, relpaths, buckets):
        keep = {"", ESCAPE_DIR} | set(buckets) | {posixpath.join(ESCAPE_DIR, b) for b in buckets}
        for relpath in relpaths:
            try:
                os.unlink(tree.path(relpath))
            except OSError as exc:
                raise RatBackupError("cannot delete {0}: {1}".format(tree.path(relpath), exc.strerror),
                                     path=tree.path(relpath))
            self.stats["deleted"] += 1
            tree.prune_empty(relpath, keep)

    def _link(self, tree, entry, source):
        tree.parent_for(entry.relpath)
        tmp = tree.temp_path()
        try:
            os.link(source, tmp)
            os.replace(tmp, tree.path(entry.relpath))
        except OSError as exc:
            _unlink_quietly(tmp)
            raise RatBackupError("cannot hard-link {0} to {1}: {2}".format(
                source, tree.path(entry.relpath), exc.strerror), path=tree.path(entry.relpath))
        self.stats["linked"] += 1

    def _fetch(self, tree, entry):
        """Download one object into a temp file, hashing on the way, then rename it into place."""
        tree.parent_for(entry.relpath)
        final = tree.path(entry.relpath)
        for attempt in range(self.attempts):
            tmp = tree.temp_path()
            try:
                return self._fetch_once(entry, tmp, final)
            except _StreamBroken as exc:
                if attempt + 1 == self.attempts:
                    raise s3.translate(exc.cause, self.src_endpoint, "reading", entry.bucket, entry.key)
                time.sleep(min(0.5 * 2 ** attempt, 8))
            finally:
                _unlink_quietly(tmp)

    def _fetch_once(self, entry, tmp, final):
        request = {"Bucket": entry.bucket, "Key": entry.key}
        if entry.version_id:
            request["VersionId"] = entry.version_id
        try:
            response = self.src_client.get_object(**request)
        except s3.sdk_errors() as exc:
            if s3.is_not_found(exc) and not entry.version_id:
                self.changed_during.append({"bucket": entry.bucket, "key": entry.key, "change": "deleted"})
                return None
            raise s3.translate(exc, self.src_endpoint, "reading", entry.bucket, entry.key)
        digest = hashlib.sha256()
        written = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            # Buffered: a raw write may write part of a chunk (ENOSPC) without raising.
            with os.fdopen(fd, "wb") as handle:
                try:
                    for chunk in response["Body"].iter_chunks(READ_CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
                        written += len(chunk)
                except s3.sdk_errors() + (OSError,) as exc:
                    if isinstance(exc, OSError) and not _is_network_error(exc):
                        raise
                    raise _StreamBroken(exc)
                if written != response.get("ContentLength", written):
                    raise _StreamBroken(OSError("body ended after {0} of {1} bytes".format(
                        written, response.get("ContentLength"))))
                handle.flush()
                os.fsync(handle.fileno())
                if os.fstat(handle.fileno()).st_size != written:
                    raise OSError(5, "file is {0} bytes after writing {1}".format(
                        os.fstat(handle.fileno()).st_size, written))
        except OSError as exc:
            raise RatBackupError("cannot write {0} for {1}/{2}: {3}".format(
                final, entry.bucket, entry.key, exc.strerror), path=final, bucket=entry.bucket, key=entry.key)
        finally:
            response["Body"].close()
        etag = response.get("ETag")
        if etag != entry.etag and not entry.version_id:
            self.changed_during.append({"bucket": entry.bucket, "key": entry.key, "change": "modified",
                                        "listed_etag": entry.etag, "etag": etag})
        entry.etag = etag
        entry.size = written
        entry.sha256 = digest.hexdigest()
        if response.get("LastModified"):
            entry.modified_ms = to_ms(response["LastModified"])
        entry.take_response(response)
        try:
            stamp = entry.modified_ms / 1000.0
            os.utime(tmp, (stamp, stamp))
            os.replace(tmp, final)
        except OSError as exc:
            raise RatBackupError("cannot move {0} into place: {1}".format(final, exc.strerror), path=final)
        return entry

    # --- disk -> S3 ---------------------------------------------------------------------------

    def _upload(self):
        o = self.options
        plan = Plan()
        sources, versioning = self._local_sources(plan)
        buckets = sorted(set(e.bucket for e in sources) | set(versioning))
        for bucket in buckets:
            if not self._dest_bucket_exists(bucket):
                if not o.get("create_buckets"):
                    raise RatBackupError("bucket {0!r} does not exist on {1} (set create_buckets to create it)".format(
                        bucket, self.dest_endpoint.name), endpoint=self.dest_endpoint.name, bucket=bucket)
                plan.create_buckets.append(bucket)
        existing = {b: {} if b in plan.create_buckets else self._list_dest_objects(b, self.dest.prefix)
                    for b in buckets}
        # With a manifest every file is checked against it before anything is uploaded; without
        # one only files that may already be there (same size) are worth reading.
        digests = self._digests([e for e in sources if e.sha256 or
                                 existing[e.bucket].get(e.key, (None,))[0] == e.size])
        for entry in sources:
            if id(entry) not in digests:
                # Unreadable files fail the run here, before the first upload.
                os.close(open_regular(self._source_path(entry)))
        by_bucket = {}
        for entry in sources:
            by_bucket.setdefault(entry.bucket, []).append(entry)
        for bucket in buckets:
            present = existing[bucket]
            for entry in by_bucket.get(bucket, ()):
                digest = digests.get(id(entry))
                if digest is not None and entry.sha256 and digest.sha256 != entry.sha256:
                    raise RatBackupError("{0} does not match its manifest (sha256 {1}, manifest {2}); the backup is "
                                         "damaged, nothing was uploaded".format(self._source_path(entry), digest.sha256,
                                                                                entry.sha256),
                                         path=self._source_path(entry))
                current = present.pop(entry.key, None)
                if current is not None and digest is not None and current[0] == entry.size and (
                        (entry.etag is not None and current[1] == entry.etag) or digest.matches_etag(current[1])):
                    plan.keep.append(entry)
                else:
                    plan.copy.append(entry)
            if o.get("delete"):
                plan.delete.extend("{0}/{1}".format(bucket, key) for key in sorted(present) if self.filter(key))
        result = {"plan": plan.summary(), "skipped_files": plan.skipped_files,
                  "changed": bool(plan.copy or plan.delete or plan.create_buckets)}
        if self.check_mode:
            return result
        for bucket in plan.create_buckets:
            self._create_bucket(bucket, versioning.get(bucket, False))
        self._parallel(plan.copy, self._put, self._counted())
        self._delete_s3(plan.delete)
        return result

    def _local_sources(self, plan):
        """Entries to upload (with ``relpath`` under src) and {bucket: versioned} from the manifest."""
        o = self.options
        root = self.src.path
        if o.get("manifest"):
            header, entries = read_manifest(o["manifest"], "manifest")
            versioning = {b: bool((v or {}).get("versioned")) for b, v in (header.get("buckets") or {}).items()}
            keep = []
            # A one-bucket manifest restores into whichever bucket dest names (migration, drills).
            rename = self.dest.single_bucket and len(set(e.bucket for e in entries)) == 1
            for entry in entries:
                if self.dest.single_bucket:
                    if rename:
                        entry.bucket = self.dest.bucket
                    if entry.bucket != self.dest.bucket or not entry.key.startswith(self.dest.prefix):
                        continue
                elif o.get("buckets") and entry.bucket not in o["buckets"]:
                    continue
                if self.filter(entry.key):
                    keep.append(entry)
            if rename and versioning:
                versioning = {self.dest.bucket: any(versioning.values())}
            versioning = {b: v for b, v in versioning.items() if b in set(e.bucket for e in keep) or
                          (not self.dest.single_bucket and (not o.get("buckets") or b in o["buckets"]))}
            return keep, versioning
        tree = LocalTree(root)
        entries = []
        if self.dest.single_bucket:
            tops = [("", self.dest.bucket)]
        else:
            tops = [(n, n) for n in sorted(os.listdir(root)) if not n.startswith(".") and
                    os.path.isdir(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n))
                    and (not o.get("buckets") or n in o["buckets"])]
            loose = [n for n in os.listdir(root) if n not in dict(tops) and not n.startswith(".")
                     and (not o.get("buckets"))]
            plan.skipped_files.extend({"path": os.path.join(root, n), "reason": "not inside a bucket directory"}
                                      for n in sorted(loose))
        for top, bucket in tops:
            for relpath, kind, size in tree.walk(top):
                inner = relpath if top == "" else relpath[len(top) + 1:]
                if top == "" and relpath.startswith(".rat-"):
                    if relpath.startswith(ESCAPE_DIR + "/"):
                        plan.skipped_files.append({"path": tree.path(relpath),
                                                   "reason": "escaped key; restore it with its manifest"})
                    continue
                if kind != "file":
                    plan.skipped_files.append({"path": tree.path(relpath), "reason": kind})
                    continue
                key = self.dest.prefix + inner
                if self.filter(key):
                    entries.append(Entry(bucket, key, size, relpath=relpath,
                                         content_type=mimetypes.guess_type(key)[0]))
        if not self.dest.single_bucket and os.path.isdir(os.path.join(root, ESCAPE_DIR)):
            plan.skipped_files.append({"path": os.path.join(root, ESCAPE_DIR),
                                       "reason": "escaped keys; restore them with their manifest"})
        return entries, {}

    def _source_path(self, entry, tree=None):
        tree = tree or self._src_tree
        path = tree.path(entry.relpath)
        tree.ensure_inside(os.path.dirname(path))
        return path

    def _digests(self, entries, tree=None):
        """{id(entry): LocalDigest}, hashing in parallel; fails on the first unreadable file."""
        digests = {}

        def digest(entry):
            return entry, local_digest(self._source_path(entry, tree))

        def store(result):
            entry, value = result
            if value.size != entry.size:
                path = self._source_path(entry, tree)
                raise RatBackupError("{0} is {1} bytes, expected {2}".format(path, value.size, entry.size), path=path)
            digests[id(entry)] = value
            entry.sha256 = entry.sha256 or value.sha256

        self._parallel(entries, digest, store, count=False)
        return digests

    def _dest_bucket_exists(self, bucket):
        try:
            self.dest_client.head_bucket(Bucket=bucket)
        except s3.sdk_errors() as exc:
            if s3.error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise s3.translate(exc, self.dest_endpoint, "checking", bucket)
        return True

    def _create_bucket(self, bucket, versioned):
        try:
            request = {"Bucket": bucket}
            if self.dest_endpoint.region and self.dest_endpoint.region != "us-east-1":
                request["CreateBucketConfiguration"] = {"LocationConstraint": self.dest_endpoint.region}
            self.dest_client.create_bucket(**request)
            if versioned:
                self.dest_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        except s3.sdk_errors() as exc:
            raise s3.translate(exc, self.dest_endpoint, "creating", bucket)

    def _put(self, entry):
        path = self._source_path(entry)
        fd = open_regular(path)
        extra = entry.extra_args()
        try:
            with os.fdopen(fd, "rb") as handle:
                if entry.size <= PART_SIZE:
                    self.dest_client.put_object(Bucket=entry.bucket, Key=entry.key, Body=handle, **extra)
                else:
                    with _LARGE:
                        self.dest_client.upload_fileobj(handle, entry.bucket, entry.key, ExtraArgs=extra,
                                                        Config=_transfer_config())
        except s3.sdk_errors() as exc:
            raise s3.translate(exc, self.dest_endpoint, "writing", entry.bucket, entry.key)
        except OSError as exc:
            raise RatBackupError("cannot read local file {0}: {1}".format(path, exc.strerror), path=path)
        return entry

    def _delete_s3(self, labels):
        by_bucket = {}
        for label in labels:
            bucket, dummy, key = label.partition("/")
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start:start + DELETE_BATCH]
                try:
                    response = self.dest_client.delete_objects(
                        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                except s3.sdk_errors() as exc:
                    raise s3.translate(exc, self.dest_endpoint, "deleting objects", bucket)
                errors = response.get("Errors") or []
                if errors:
                    raise RatBackupError("deleting {0} object(s) in bucket {1!r} on {2} failed, first: {3} ({4})".format(
                        len(errors), bucket, self.dest_endpoint.name, errors[0].get("Key"), errors[0].get("Code")),
                        endpoint=self.dest_endpoint.name, bucket=bucket)
                self.stats["deleted"] += len(batch)

    # --- S3 -> S3 -----------------------------------------------------------------------------

    def _s3_copy(self):
        o = self.options
        plan = Plan()
        buckets = self._buckets(self.src_client, self.src_endpoint, self.src)
        if len(buckets) > 1 and self.dest.single_bucket:
            raise RatBackupError("dest {0} names one bucket but src has {1}".format(self.dest.text, len(buckets)))
        for bucket in buckets:
            target = self.dest.bucket if self.dest.single_bucket else bucket
            versioned = self._versioned(self.src_client, self.src_endpoint, bucket)
            if not self._dest_bucket_exists(target):
                if not o.get("create_buckets"):
                    raise RatBackupError("bucket {0!r} does not exist on {1} (set create_buckets to create it)".format(
                        target, self.dest_endpoint.name), endpoint=self.dest_endpoint.name, bucket=target)
                plan.create_buckets.append((target, versioned))
                existing = {}
            else:
                existing = self._list_dest_objects(target, self.dest.prefix)
            for entry in self._list(self.src_client, self.src_endpoint, bucket, self.src.prefix, versioned):
                dest_key = self.dest.prefix + entry.key[len(self.src.prefix):]
                current = existing.pop(dest_key, None)
                if current is not None and current == (entry.size, entry.etag):
                    plan.keep.append(entry)
                else:
                    plan.copy.append((entry, target, dest_key))
            if o.get("delete"):
                plan.delete.extend("{0}/{1}".format(target, k) for k in sorted(existing) if self.filter(k))
        summary = plan.summary()
        summary["create_buckets"] = [created[0] for created in plan.create_buckets]
        result = {"plan": summary, "changed": bool(plan.copy or plan.delete or plan.create_buckets)}
        if self.check_mode:
            return result
        for bucket, versioned in plan.create_buckets:
            self._create_bucket(bucket, versioned)
        self._parallel(plan.copy, self._transfer, self._counted())
        self._delete_s3(plan.delete)
        return result

    def _transfer(self, item):
        entry, bucket, key = item
        source = {"Bucket": entry.bucket, "Key": entry.key}
        if entry.version_id:
            source["VersionId"] = entry.version_id
        if self.src_endpoint.same_service(self.dest_endpoint):
            try:
                if entry.size <= PART_SIZE:
                    self.dest_client.copy_object(CopySource=source, Bucket=bucket, Key=key)
                else:
                    with _LARGE:
                        self.dest_client.copy(source, bucket, key, Config=_transfer_config())
            except s3.sdk_errors() as exc:
                raise s3.translate(exc, self.dest_endpoint, "copying {0}/{1} to".format(entry.bucket, entry.key),
                                   bucket, key)
            return entry
        # Across endpoints the bytes pass through a local spool file: bounded memory, and a
        # dropped source stream never becomes a truncated destination object.
        with tempfile.TemporaryFile(prefix="rat-mirror-") as spool:
            try:
                response = self.src_client.get_object(**source)
                for chunk in response["Body"].iter_chunks(READ_CHUNK):
                    spool.write(chunk)
            except s3.sdk_errors() as exc:
                raise s3.translate(exc, self.src_endpoint, "reading", entry.bucket, entry.key)
            except OSError as exc:
                raise RatBackupError("cannot spool {0}/{1}: {2}".format(entry.bucket, entry.key, exc.strerror))
            if spool.tell() != entry.size and not entry.version_id:
                self.changed_during.append({"bucket": entry.bucket, "key": entry.key, "change": "modified"})
            spool.seek(0)
            entry.take_response(response)
            try:
                if entry.size <= PART_SIZE:
                    self.dest_client.put_object(Bucket=bucket, Key=key, Body=spool, **entry.extra_args())
                else:
                    with _LARGE:
                        self.dest_client.upload_fileobj(spool, bucket, key, ExtraArgs=entry.extra_args(),
                                                        Config=_transfer_config())
            except s3.sdk_errors() as exc:
                raise s3.translate(exc, self.dest_endpoint, "writing", bucket, key)
        return entry

    # --- execution ----------------------------------------------------------------------------

    def _counted(self, done=None, journal=None):
        def record(entry):
            if entry is None:
                return
            if done is not None:
                done.append(entry)
            if journal is not None:
                journal.add(entry)
            self.stats["copied"] += 1
            self.stats["bytes"] += entry.size
        return record

    def _parallel(self, items, work, record, count=True):
        """Run ``work`` on every item with ``concurrency`` threads; ``record`` runs in this thread.

        At most 2 x concurrency items are in flight, so 100,000 objects never become 100,000
        futures. The first failure stops new work; the ones already running finish first.
        """
        if not items:
            return
        total = len(items)
        failures = []
        finished = 0
        last_log = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending = set()
            queue = iter(items)
            exhausted = False
            while True:
                while not exhausted and not failures and len(pending) < 2 * self.concurrency:
                    item = next(queue, _END)
                    if item is _END:
                        exhausted = True
                    else:
                        pending.add(pool.submit(work, item))
                if not pending:
                    break
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    try:
                        record(future.result())
                        finished += 1
                    except RatBackupError as exc:
                        failures.append(exc)
                    except Exception as exc:  # pylint: disable=broad-except
                        # A worker bug must still stop the run with a message, not a traceback.
                        failures.append(RatBackupError("{0}: {1}".format(type(exc).__name__, exc)))
                if count and time.monotonic() - last_log > PROGRESS_EVERY:
                    last_log = time.monotonic()
                    self.log("bucket_mirror: {0}/{1} objects, {2} bytes copied".format(
                        finished, total, self.stats["bytes"]))
        if failures:
            first = failures[0]
            details = dict(first.details)
            details.update({"failed": len(failures), "completed": finished, "planned": total,
                            "errors": [f.msg for f in failures[:FIRST_KEYS]]})
            raise RatBackupError("{0} ({1} of {2} transfers done before the failure; a rerun finishes the rest)".format(
                first.msg, finished, total) if count else first.msg, **details)


_END = object()
# Large transfers run one at a time: each already uses several threads, and this bounds memory.
_LARGE = threading.Semaphore(1)


def _transfer_config():
    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4,
                          use_threads=True)


def _root_name(path):
    return os.path.basename(os.path.normpath(path))


def _is_same_size_file(path, size):
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def _is_network_error(exc):
    return isinstance(exc, (ConnectionError, TimeoutError))


class _StreamBroken(Exception):
    """The body of a GET stopped early; the whole object is fetched again."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class _Journal:
    """Entries finished by this run, one JSON line each, so an interrupted run's work is reused.

    Lines reach the file at most FLUSH_EVERY seconds apart and on close (also when the run fails):
    a write per object costs the thread that feeds the workers a GIL handover each time. A
    process killed outright loses at most the last second of lines; those objects are fetched
    again, as objects without a line always are.
    """

    FLUSH_EVERY = 1.0

    def __init__(self, path, root):
        self.path = path
        self.root_name = _root_name(root)
        self.handle = None
        self.flushed = 0.0

    def add(self, entry):
        if self.path:
            if self.handle is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                self.handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 20)
                self.flushed = time.monotonic()
            self.handle.write(json.dumps(entry.to_manifest(self.root_name), sort_keys=True) + "\n")
            if time.monotonic() - self.flushed >= self.FLUSH_EVERY:
                self.handle.flush()
                self.flushed = time.monotonic()

    def close(self):
        if self.handle:
            self.handle.close()
            self.handle = None

    def remove(self):
        if self.path:
            _unlink_quietly(self.path)

    @staticmethod
    def read(path):
        entries = []
        with open(path, "r", encoding="utf-8") as handle:
            for line in handle:
                try:
                    entries.append(Entry.from_manifest(json.loads(line), path))
                except (ValueError, RatBackupError):
                    # The last line of a killed run may be cut short; its object is fetched again.
                    continue
        return entries
