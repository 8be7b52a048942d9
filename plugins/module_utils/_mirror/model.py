# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a mirror talks about: locations, objects (Entry), filters, the plan, and its times."""

from __future__ import annotations

import datetime
import fnmatch
import functools
import os
import posixpath
import sys

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

FIRST_KEYS = 10

_UTC = datetime.timezone.utc
_ATTRIBUTES = (
    ("content_type", "ContentType"),
    ("cache_control", "CacheControl"),
    ("content_encoding", "ContentEncoding"),
    ("content_disposition", "ContentDisposition"),
)
_ATTRIBUTE_NAMES = tuple(name for name, header in _ATTRIBUTES)


def to_ms(dt):
    """Milliseconds since the epoch: S3's resolution, and an int is smaller in memory than text."""
    return int(round(dt.timestamp() * 1000))


def iso_ms(ms):
    return _iso_second(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(second):
    # Objects written together share their seconds: a manifest of 100,000 formats few of them.
    return datetime.datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def ms_from_iso(text):
    if not text:
        return None
    # iso_ms's shape (every manifest line this collection writes) is read a second at a time, as
    # it is written; any other ISO text as datetime reads it.
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit() and text[20:23].isascii():
        return _epoch_second(text[:19]) * 1000 + int(text[20:23])
    return to_ms(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")))


@functools.lru_cache(maxsize=4096)
def _epoch_second(text):
    return to_ms(datetime.datetime.fromisoformat(text + "+00:00")) // 1000


def parse_as_of(text):
    """``versions_as_of`` as an aware datetime; a naive time is UTC."""
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RatBackupError(
            f"versions_as_of {text!r} is not an ISO 8601 time such as 2026-01-31T23:00:00Z")
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
                raise RatBackupError(f"{option} {text!r}: a prefix needs a bucket (s3://bucket/prefix)")
            self.bucket = bucket or None
            # A prefix names a "directory", as aws s3 sync and rclone read it.
            self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
            self.path = None
        else:
            if not text:
                raise RatBackupError(f"{option} must not be empty")
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

    def listed(self):
        """A fresh Entry with only what the listing said (nothing a previous run learned)."""
        return Entry(self.bucket, self.key, self.size, self.etag, self.version_id, self.modified_ms)

    def take_attributes(self, other):
        self.sha256 = other.sha256
        self.metadata = other.metadata
        for name in _ATTRIBUTE_NAMES:
            setattr(self, name, getattr(other, name))

    def take_response(self, response):
        for name, header in _ATTRIBUTES:
            setattr(self, name, response.get(header))
        self.metadata = response.get("Metadata") or None

    def attributes_differ(self, head):
        """Whether ``head`` (s3.object_attributes of the object in place) shows other attributes than the
        ones a restore of this entry puts back. An attribute the entry leaves unset is the server's to
        choose (a PUT without Content-Type gets its default), so only user metadata is compared always."""
        if (self.metadata or {}) != (head.get("Metadata") or {}):
            return True
        return any(getattr(self, name) and getattr(self, name) != head.get(header) for name, header in _ATTRIBUTES)

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
            get = item.get
            # A manifest of 100,000 objects names few buckets and content types: one string each
            # instead of one per line (and no dict for the usual empty metadata) keeps it ~20 MB smaller.
            # Spelled out, not a loop over _ATTRIBUTES: this runs for every line of every manifest read.
            content_type, cache_control = get("content_type"), get("cache_control")
            content_encoding, content_disposition = get("content_encoding"), get("content_disposition")
            return cls(sys.intern(item["bucket"]), item["key"], int(item["size"]), get("etag"), get("version_id"),
                       ms_from_iso(get("last_modified")), below_root(item["path"], source), get("sha256"),
                       _interned(content_type) if content_type else content_type,
                       _interned(cache_control) if cache_control else cache_control,
                       _interned(content_encoding) if content_encoding else content_encoding,
                       _interned(content_disposition) if content_disposition else content_disposition,
                       get("metadata") or None)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RatBackupError(f"{source}: malformed object entry {item!r} ({exc})")


def _interned(value):
    return sys.intern(value) if isinstance(value, str) else value


def below_root(path, source):
    """The part of a manifest ``path`` below the mirror root (its first segment), by the one
    rule for manifest paths (fs.safe_relpath)."""
    below = fs.safe_relpath(path, source).partition("/")[2]
    if not below:
        raise RatBackupError(f"{source}: unsafe path {path!r} in manifest: no directory above the object", path=path)
    return below


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
        return f"{item.bucket}/{item.key}"
    return item
