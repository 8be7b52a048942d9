# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selective lake restore: which objects of a backup a selection names, and one Iceberg table.

A selection is a bucket and a key prefix (``rat/ecommerce/`` = bucket ``rat``, keys under
``ecommerce/``); bucket_mirror then restores exactly that prefix. An Iceberg table is named by
namespace and table; its entry comes from the JDBC catalog table (``iceberg_tables``) in the
backup's dump, its files are those under the table's location (read from the metadata file the
entry names, as the backup holds it), and the live entry is moved back through the JDBC catalog's
own commit: ``UPDATE ... SET metadata_location = new, previous_metadata_location = old WHERE ...
AND metadata_location = old``, a compare-and-swap that fails when another writer moved it first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest_format
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import DUMP_PATH, MANIFEST
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Iceberg's JdbcCatalog keeps its tables here (JdbcUtil.CATALOG_TABLE_VIEW_NAME).
CATALOG_TABLE = "iceberg_tables"
_SCHEMES = ("s3://", "s3a://", "s3n://")
_COPY = re.compile(r"^COPY (\S+) \((.*)\) FROM stdin;$")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


# --- selections -------------------------------------------------------------------------------

def parse_prefix(text):
    """``bucket/prefix`` -> (bucket, prefix ending in "/" or empty for the whole bucket)."""
    bucket, dummy, prefix = (text if isinstance(text, str) else "").partition("/")
    if not bucket or bucket.startswith(".") or bucket != bucket.strip():
        raise RatBackupError(f"prefixes: {text!r} is not bucket/prefix (for example rat/ecommerce/)")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def parse_table(text):
    """``namespace.table`` (a nested namespace as ``a.b.table``) -> (namespace, table)."""
    namespace, dummy, table = (text if isinstance(text, str) else "").rpartition(".")
    if not namespace or not table:
        raise RatBackupError(f"tables: {text!r} is not namespace.table (for example ecommerce.orders)")
    return namespace, table


def label(bucket, prefix):
    return f"{bucket}/{prefix}"


class BackupObjects:
    """What one backup's manifest holds, read line by line: its buckets and the objects selections name."""

    def __init__(self, backup_dir):
        self.backup_dir = backup_dir
        self.path = os.path.join(backup_dir, MANIFEST)
        reader = manifest_format.Reader(self.path)
        for dummy in reader.objects(parse=False):
            pass
        holder = manifest_format.objects_holder(reader.document)
        if not isinstance(holder, dict):
            raise RatBackupError(f"backup {backup_dir} holds no objects (no minio section in its manifest)",
                                 path=self.path)
        self.buckets = sorted(holder.get("buckets") or {})

    def scan(self, selections, keys=()):
        """({(bucket, prefix): {"objects", "bytes"}}, {(bucket, key): manifest item}) in one pass."""
        tallies = {s: {"objects": 0, "bytes": 0} for s in selections}
        wanted, found = set(keys), {}
        for item in manifest_format.Reader(self.path).objects():
            bucket, key = item.get("bucket"), item.get("key")
            for (b, p), tally in tallies.items():
                if bucket == b and key.startswith(p):
                    tally["objects"] += 1
                    tally["bytes"] += int(item.get("size") or 0)
            if (bucket, key) in wanted:
                found[(bucket, key)] = item
        return tallies, found

    def read(self, item):
        """The bytes of one object as the backup holds them, refused unless they match the manifest."""
        relpath = fs.safe_relpath(item.get("path"), self.path)
        path = os.path.join(self.backup_dir, relpath)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise RatBackupError(f"cannot read {path}: {exc.strerror}", path=path)
        if item.get("sha256") and hashlib.sha256(data).hexdigest() != item["sha256"]:
            raise RatBackupError(f"{path} does not match its manifest: the backup is damaged", path=path)
        return data


def refusals(buckets, tallies, name):
    """Why selections cannot be restored from backup ``name``: unknown buckets, prefixes outside it."""
    problems = []
    for (bucket, prefix), tally in sorted(tallies.items()):
        if bucket not in buckets:
            problems.append(f"bucket {bucket!r} is not in backup {name} (it holds {', '.join(buckets) or 'none'})")
        elif prefix and not tally["objects"]:
            problems.append(f"{label(bucket, prefix)} is outside backup {name} (no object of the backup under it)")
    return problems


# --- Iceberg: locations, the catalog's rows in a dump --------------------------------------------

def split_location(location, what):
    """``s3://bucket/key`` (or s3a://, s3n://) -> (bucket, key)."""
    for scheme in _SCHEMES:
        if isinstance(location, str) and location.startswith(scheme):
            bucket, dummy, key = location[len(scheme):].partition("/")
            if bucket:
                return bucket, key
    raise RatBackupError(f"{what} {location!r} is not an s3:// location")


def table_prefix(metadata, metadata_location, what):
    """(bucket, prefix) of a table's files: the ``location`` its metadata file records, which must
    hold the metadata file itself."""
    try:
        location = json.loads(metadata.decode("utf-8"))["location"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RatBackupError(f"{what}: {metadata_location} is not an Iceberg metadata file (no location)")
    bucket, key = split_location(location, f"{what}: location")
    prefix = key.rstrip("/") + "/"
    meta_bucket, meta_key = split_location(metadata_location, what)
    if prefix == "/" or meta_bucket != bucket or not meta_key.startswith(prefix):
        raise RatBackupError(f"{what}: metadata {metadata_location} lies outside the table's location {location}")
    return bucket, prefix


def _unescape(field):
    """One field of COPY's text format; None for \\N."""
    if field == "\\N":
        return None
    out, i = [], 0
    while i < len(field):
        char = field[i]
        if char != "\\" or i + 1 == len(field):
            out.append(char)
            i += 1
            continue
        nxt = field[i + 1]
        octal = re.match(r"[0-7]{1,3}", field[i + 1:])
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x" and re.match(r"[0-9a-fA-F]{1,2}", field[i + 2:]):
            digits = re.match(r"[0-9a-fA-F]{1,2}", field[i + 2:]).group(0)
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        elif octal:
            out.append(chr(int(octal.group(0), 8)))
            i += 1 + len(octal.group(0))
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


def copy_rows(sql, table):
    """The rows (dicts by column) of ``table`` (``name`` or ``schema.name``) in pg_restore's SQL output."""
    wanted = table.split(".")[-1]
    rows, columns = [], None
    for line in sql.splitlines():
        if columns is None:
            match = _COPY.match(line)
            if match and match.group(1).split(".")[-1].strip('"') == wanted:
                columns = [c.strip().strip('"') for c in match.group(2).split(",")]
            continue
        if line == "\\.":
            columns = None
            continue
        rows.append(dict(zip(columns, (_unescape(f) for f in line.split("\t")))))
    return rows


# --- the live JDBC catalog ---------------------------------------------------------------------

def _text(value):
    """A SQL text literal that no quoting can break: the UTF-8 bytes in hex."""
    if value is None:
        return "NULL"
    return f"convert_from(decode('{value.encode('utf-8').hex()}', 'hex'), 'UTF8')"


def _ident(table):
    return ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))


class Catalog:
    """The JDBC catalog table of the host's PostgreSQL, through a pg_client PsqlSession."""

    def __init__(self, session, table=CATALOG_TABLE):
        self.session = session
        self.table = table

    def rows(self, namespace, name, catalog=None):
        """[{catalog, metadata_location, previous_metadata_location}] of one table identifier."""
        where = f"table_namespace = {_text(namespace)} AND table_name = {_text(name)}"
        if catalog is not None:
            where += f" AND catalog_name = {_text(catalog)}"
        found = self.session.query(
            "SELECT json_build_object('catalog_name', catalog_name, 'metadata_location', metadata_location, "
            f"'previous_metadata_location', previous_metadata_location) FROM {_ident(self.table)} WHERE {where} "
            "ORDER BY catalog_name;")
        return [json.loads(row) for row in found]

    def entries(self):
        """Every entry [{catalog_name, namespace, name, metadata_location}]; [] when the table does not exist."""
        if self.session.query(f"SELECT to_regclass({_text(self.table)}) IS NOT NULL;") != ["t"]:
            return []
        found = self.session.query(
            "SELECT json_build_object('catalog_name', catalog_name, 'namespace', table_namespace, 'name', table_name, "
            f"'metadata_location', metadata_location) FROM {_ident(self.table)} "
            "ORDER BY catalog_name, table_namespace, table_name;")
        return [json.loads(row) for row in found]

    def commit(self, catalog, namespace, name, expected, new):
        """Move the entry from ``expected`` to ``new`` as JdbcTableOperations commits (None
        ``expected``: register the dropped table, as JdbcCatalog.registerTable inserts it).
        False when another writer got there first."""
        if expected is None:
            sql = (f"INSERT INTO {_ident(self.table)} (catalog_name, table_namespace, table_name, metadata_location, "
                   f"previous_metadata_location) VALUES ({_text(catalog)}, {_text(namespace)}, {_text(name)}, "
                   f"{_text(new)}, NULL) ON CONFLICT DO NOTHING RETURNING 1;")
        else:
            sql = (f"UPDATE {_ident(self.table)} SET metadata_location = {_text(new)}, previous_metadata_location = "
                   f"{_text(expected)} WHERE catalog_name = {_text(catalog)} AND table_namespace = {_text(namespace)} "
                   f"AND table_name = {_text(name)} AND metadata_location = {_text(expected)} RETURNING 1;")
        return self.session.query(sql) == ["1"]


# --- the plan: what a selective lake restore does ------------------------------------------------

class Plan:
    """The selections of one backup, checked against it (refused together, naming each), and its
    Iceberg tables with their catalog entries in the backup and live."""

    def __init__(self, backup_dir, prefixes, tables, catalog_name=None, catalog_table=CATALOG_TABLE):
        self.backup = BackupObjects(backup_dir)
        self.name = os.path.basename(os.path.normpath(backup_dir))
        self.prefixes = list(dict.fromkeys(prefixes))
        self.table_names = list(dict.fromkeys(tables))
        self.catalog_name = catalog_name
        self.catalog_table = catalog_table
        self.catalog = None
        self.tables = []

    def run(self, catalog, client=None):
        """{"selections", "tables", "changed": False}; RatBackupError naming every refusal, before any change."""
        self.catalog = catalog
        problems = []
        rows = self._backup_rows(client) if self.table_names else []
        for namespace, name in self.table_names:
            problems.extend(self._find_table(rows, namespace, name))
        keys = [split_location(t["metadata_location"], t["name"]) for t in self.tables]
        tallies, found = self.backup.scan(self.prefixes, keys)
        for table, key in zip(self.tables, keys):
            if key not in found:
                problems.append(f"backup {self.name} lacks {table['metadata_location']}, the metadata file its catalog names")
                continue
            table["bucket"], table["prefix"] = table_prefix(self.backup.read(found[key]), table["metadata_location"],
                                                            table["name"])
        if self.tables and not problems:
            tallies.update(self.backup.scan([(t["bucket"], t["prefix"]) for t in self.tables])[0])
        problems.extend(refusals(self.backup.buckets, tallies, self.name))
        if problems:
            raise RatBackupError("Nothing was changed: " + "; ".join(problems), problems=problems)
        for table in self.tables:
            table["live_metadata_location"] = self._live(table)
        owner = {(t["bucket"], t["prefix"]): t["name"] for t in self.tables}
        selections = [dict(bucket=b, prefix=p, table=owner.get((b, p)), **tallies[(b, p)])
                      for b, p in dict.fromkeys(self.prefixes + list(owner))]
        return {"changed": False, "selections": selections, "tables": self.tables}

    def commit(self, expected, check_mode):
        """Move each table's live entry to the backup's metadata file; True when any moved (or would)."""
        moved = False
        for table in self.tables:
            now = self._live(table)
            table["moved"] = now != table["metadata_location"]
            if not table["moved"]:
                continue
            if table["name"] in expected and expected[table["name"]] != now:
                raise self._moved(table, expected[table["name"]], now)
            if not check_mode and not self.catalog.commit(table["catalog_name"], table["namespace"], table["table"],
                                                          now, table["metadata_location"]):
                raise self._moved(table, now, self._live(table))
            table["live_metadata_location"] = table["metadata_location"]
            moved = True
        return moved

    def _moved(self, table, expected, now):
        done = [t["name"] for t in self.tables if t.get("moved") and t["live_metadata_location"] == t["metadata_location"]]
        return RatBackupError(
            f"the catalog entry of Iceberg table {table['name']} moved underneath the restore (expected {expected}, "
            f"now {now}): it was not changed (another writer committed; restore again to take that into account)"
            + (f"; already moved back: {', '.join(done)}" if done else ""), table=table["name"])

    def _backup_rows(self, client):
        if not os.path.isfile(os.path.join(self.backup.backup_dir, *DUMP_PATH.split("/"))):
            raise RatBackupError(f"backup {self.name} holds no database dump, so no Iceberg catalog entry: "
                                 f"tables {', '.join('.'.join(t) for t in self.table_names)} cannot be restored")
        dump = os.path.join(self.backup.backup_dir, *DUMP_PATH.split("/"))
        return copy_rows(client.table_data(dump, self.catalog_table), self.catalog_table)

    def _find_table(self, rows, namespace, name):
        full = f"{namespace}.{name}"
        mine = [r for r in rows if r.get("table_namespace") == namespace and r.get("table_name") == name
                and (self.catalog_name is None or r.get("catalog_name") == self.catalog_name)]
        if not mine:
            return [f"Iceberg table {full} is not in backup {self.name} (no entry in its catalog table "
                    f"{self.catalog_table}{'' if self.catalog_name is None else ' of catalog ' + self.catalog_name})"]
        if len(mine) > 1:
            return [f"Iceberg table {full} is in several catalogs of backup {self.name} "
                    f"({', '.join(r['catalog_name'] for r in mine)}): set the catalog name"]
        self.tables.append({"name": full, "catalog_name": mine[0]["catalog_name"], "namespace": namespace,
                            "table": name, "metadata_location": mine[0]["metadata_location"]})
        return []

    def _live(self, table):
        found = self.catalog.rows(table["namespace"], table["table"], table["catalog_name"])
        return found[0]["metadata_location"] if found else None
