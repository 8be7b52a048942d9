# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading pg_dump archives without a server: the table of contents ``pg_restore --list`` prints,
and the custom-format header, whose creation time is all that differs between dumps of
unchanged data."""

from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.rat.backup.plugins.module_utils import fs

# --- table of contents --------------------------------------------------------------------------

_TOC_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_TOC_HEADER = re.compile(r"^;\s+([A-Za-z][\w ]*?):\s+(.*)$")


def parse_toc(text):
    """``pg_restore --list`` output -> {"header": {...}, "entries": [{"id", "oid", "kind", "schema", "name"}]}.

    The kind is the leading run of upper-case words (TABLE DATA, FK CONSTRAINT, ...). Names
    containing spaces are kept whole; the owner (last word) is dropped when present.
    """
    header = {}
    entries = []
    for line in text.splitlines():
        match = _TOC_ENTRY.match(line)
        if match:
            words = match.group(4).split(" ")
            kind = []
            while words and re.fullmatch(r"[A-Z]+", words[0]):
                kind.append(words.pop(0))
            schema = words.pop(0) if words else "-"
            name_words = words[:-1] if len(words) > 1 else words
            entries.append({
                "id": int(match.group(1)),
                "oid": int(match.group(3)),
                "catalog": int(match.group(2)),
                "kind": " ".join(kind),
                "schema": schema,
                "name": " ".join(name_words),
            })
            continue
        match = _TOC_HEADER.match(line)
        if match:
            header[match.group(1).strip()] = match.group(2).strip()
    return {"header": header, "entries": entries}


def table_data_oids(toc):
    """OIDs of the tables whose rows the archive holds (their TABLE DATA entries carry the table's OID)."""
    return sorted({e["oid"] for e in toc["entries"] if e["kind"] == "TABLE DATA"})


def toc_summary(toc):
    """What a restore of this archive brings back: counts by kind and the tables."""
    counts = {}
    for entry in toc["entries"]:
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
    tables = sorted(f"{e['schema']}.{e['name']}" for e in toc["entries"] if e["kind"] == "TABLE")
    header = toc["header"]
    return {
        "format": header.get("Format"),
        "dumped_from": header.get("Dumped from database version"),
        "dumped_by": header.get("Dumped by pg_dump version"),
        "source_database": header.get("dbname"),
        "entries": len(toc["entries"]),
        "counts": dict(sorted(counts.items())),
        "tables": tables,
    }


# --- the header's creation time -----------------------------------------------------------------

_ARCHIVE_MAGIC = b"PGDMP"
_FORMAT_CUSTOM = 1
# The header fields that differ between two dumps of unchanged data: the struct tm of the creation
# time, in the order WriteHead writes them, with the values a real struct tm can hold.
_CREATION_TIME_FIELDS = (("tm_sec", 0, 61), ("tm_min", 0, 59), ("tm_hour", 0, 23), ("tm_mday", 1, 31),
                         ("tm_mon", 0, 11), ("tm_year", 0, 1100), ("tm_isdst", -1, 1))


def _read_archive_int(head, pos, int_size):
    """One integer as pg_dump's WriteInt stores it: a sign byte, then int_size bytes little-endian."""
    field = head[pos:pos + 1 + int_size]
    if len(field) != 1 + int_size or field[0] not in (0, 1):
        return None
    value = int.from_bytes(field[1:], "little")
    return -value if field[0] else value


def creation_time_span(head):
    """(start, end) offsets of the creation-time fields in the header of a custom-format archive.

    ``head`` is the start of the file. None when it is not a custom-format archive this code can
    read with certainty (other format, version before 1.4, which had no creation time, or fields
    that are not a plausible time): such archives are never treated as equal.
    """
    if len(head) < 11 or head[:5] != _ARCHIVE_MAGIC:
        return None
    version = tuple(head[5:8])
    int_size, fmt = head[8], head[10]
    if fmt != _FORMAT_CUSTOM or version < (1, 4, 0) or not 1 <= int_size <= 8:
        return None
    # From archive version 1.15 (PostgreSQL 16) the compression is one algorithm byte; before, an int.
    start = 12 if version >= (1, 15, 0) else 11 + 1 + int_size
    pos = start
    for _name, low, high in _CREATION_TIME_FIELDS:
        value = _read_archive_int(head, pos, int_size)
        if value is None or not low <= value <= high:
            return None
        pos += 1 + int_size
    return start, pos


def same_archive_but_creation_time(new_path, old_path):
    """SHA-256 of ``old_path`` when it equals ``new_path`` byte for byte outside the creation time; else None.

    pg_dump writes the time it started into the archive header, so dumps of unchanged data are
    never byte-identical; everything else (TOC, data blocks, which the server produces in the same
    order for unchanged tables) is compared exactly.
    """
    if os.path.getsize(new_path) != os.path.getsize(old_path):
        return None
    digest = hashlib.sha256()
    with open(new_path, "rb") as new, open(old_path, "rb") as old:
        new_chunk, old_chunk = new.read(fs.CHUNK), old.read(fs.CHUNK)
        span = creation_time_span(new_chunk)
        if span is None or span != creation_time_span(old_chunk):
            return None
        start, end = span
        if new_chunk[:start] != old_chunk[:start] or new_chunk[end:] != old_chunk[end:]:
            return None
        while old_chunk:
            digest.update(old_chunk)
            new_chunk, old_chunk = new.read(fs.CHUNK), old.read(fs.CHUNK)
            if new_chunk != old_chunk:
                return None
    return digest.hexdigest()
