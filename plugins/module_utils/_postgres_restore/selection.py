# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which entries of a pg_dump archive a selective restore brings back (pure: text in, plan out).

Input: the entries ``pg_restore --list`` prints (``pg_archive.parse_toc``) and, for every entry but
the table data, the dependencies ``pg_restore --verbose --file=-`` writes above its SQL
(``parse_script``). pg_dump records there what each index, constraint, trigger, default, comment,
ACL and owned sequence belongs to, so the archive itself says what comes with a table; a foreign key
depends on its own table and on the table (and key) it references.

``plan(entries, script, tables, schemas, ...)`` returns a ``Plan``: the TOC ids to restore, the
tables (those asked for and those added), the large objects to restore (found by the caller in the
selected tables' oid columns: ``oid_columns``), or raises RatBackupError naming what is wrong
(unknown names, foreign keys that would break, objects that would block dropping a table).
"""

from __future__ import annotations

import re

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# What -t selects: relations with a name of their own.
RELATIONS = ("TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "SEQUENCE")
# Entries that only exist as part of another object: they come with that object.
ATTACHED = ("DEFAULT", "CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT", "INDEX", "INDEX ATTACH", "TRIGGER",
            "RULE", "POLICY", "ROW SECURITY", "COMMENT", "ACL", "SECURITY LABEL", "SEQUENCE OWNED BY",
            "SEQUENCE SET", "STATISTICS")
DATA = ("TABLE DATA", "MATERIALIZED VIEW DATA")
# Objects a dropped table takes along (their definitions come from the archive again): re-created with it.
DEPENDENT_VIEWS = ("VIEW", "MATERIALIZED VIEW")
# Where the script pass is not needed (or too costly): the rows and the large objects' bytes.
NOT_IN_SCRIPT = ("TABLE DATA", "MATERIALIZED VIEW DATA", "BLOBS", "LARGE OBJECTS", "BLOB DATA")
LARGE_OBJECT = ("BLOB", "LARGE OBJECT", "BLOB METADATA")
LARGE_OBJECT_DATA = ("BLOBS", "LARGE OBJECTS", "BLOB DATA")

_ENTRY = re.compile(r"^-- TOC entry (\d+) \(class \d+ OID \d+\)$")
_DEPS = re.compile(r"^-- Dependencies: ([\d ]+)$")
_OID_COLUMN = re.compile(r'^\s+("(?:[^"]|"")+"|[^\s"]+) (?:oid|(?:public\.)?lo)(?: |,|$)')


def parse_script(text):
    """``pg_restore --verbose --file=-`` output -> {toc id: {"deps": [ids], "sql": text}}."""
    found = {}
    current = None
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match:
            current = found.setdefault(int(match.group(1)), {"deps": [], "sql": []})
            continue
        if current is None:
            continue
        match = _DEPS.match(line)
        if match:
            current["deps"] = [int(d) for d in match.group(1).split()]
        elif not line.startswith("--"):
            current["sql"].append(line)
    return {k: {"deps": v["deps"], "sql": "\n".join(v["sql"])} for k, v in found.items()}


def oid_columns(sql):
    """Columns of type oid (or the lo extension's lo) in a CREATE TABLE: they may hold large objects."""
    columns = []
    for line in sql.splitlines():
        match = _OID_COLUMN.match(line)
        if match:
            name = match.group(1)
            columns.append(name[1:-1].replace('""', '"') if name.startswith('"') else name)
    return columns


def qualified(entry):
    return f"{entry['schema']}.{entry['name']}"


class Plan:
    """What a selective restore brings back; built by ``plan``."""

    def __init__(self, ids, tables, added, views, sequences, large_objects, data_only, supporting):
        self.ids = ids                      # TOC ids, in archive order
        self.tables = tables                # relations restored, schema.name, sorted
        self.added = added                  # [{table, reason}] brought in by with_referenced
        self.views = views                  # dependent views re-created with their tables
        self.sequences = sequences          # sequences whose position is restored
        self.large_objects = large_objects  # oids
        self.data_only = data_only
        self.supporting = supporting        # types, functions, schemas... restored for a new database

    def summary(self):
        return {"tables": self.tables, "added": self.added, "views": self.views, "sequences": self.sequences,
                "large_objects": self.large_objects, "data_only": self.data_only, "supporting": self.supporting,
                "entries": len(self.ids)}


class Archive:
    """The entries of one archive with their dependencies, and what belongs to which relation."""

    def __init__(self, entries, script):
        self.entries = list(entries)
        self.by_id = {e["id"]: e for e in self.entries}
        self.deps = {e["id"]: script.get(e["id"], {}).get("deps", []) for e in self.entries}
        self.sql = {e["id"]: script.get(e["id"], {}).get("sql", "") for e in self.entries}
        self.relations = {e["id"]: e for e in self.entries if e["kind"] in RELATIONS}
        self._by_oid = {e["oid"]: e["id"] for e in self.relations.values()}
        self._by_name = {(e["schema"], e["name"]): e["id"] for e in self.relations.values()}
        self.owner = {}
        for entry in self.entries:
            self.owner[entry["id"]] = self._owner(entry, set())

    def _owner(self, entry, seen):
        """The relation id an entry belongs to (itself for a free-standing relation), "lo:<oid>" for
        a large object's entries, None for everything else (types, functions, schemas...)."""
        eid, kind = entry["id"], entry["kind"]
        if eid in seen:
            return None
        seen.add(eid)
        if kind in DATA:
            return self._by_oid.get(entry["oid"]) or self._by_name.get((entry["schema"], entry["name"]))
        if kind in LARGE_OBJECT:
            return f"lo:{entry['oid']}"
        if kind == "SEQUENCE":
            tables = [d for d in self.deps[eid] if self.by_id.get(d, {}).get("kind") == "TABLE"]
            # An owned (serial, identity) sequence depends on its table; a free-standing one on nothing.
            return tables[0] if tables else eid
        if kind in RELATIONS:
            return eid
        if kind not in ATTACHED:
            return None
        owners = []
        for dep in self.deps[eid]:
            if dep in self.by_id:
                found = self._owner(self.by_id[dep], set(seen))
                if found is not None and found not in owners:
                    owners.append(found)
        if kind == "SEQUENCE SET" and not owners:
            seq = self._by_name.get((entry["schema"], entry["name"]))
            return self._owner(self.by_id[seq], set(seen)) if seq else None
        if len(owners) > 1:
            # A foreign key (or a trigger on one table calling into another) depends on several
            # relations: its own table is the one its tag starts with ("<table> <constraint>").
            own = [o for o in owners if isinstance(o, int) and entry["name"].startswith(self.by_id[o]["name"] + " ")]
            if own:
                return max(own, key=lambda o: len(self.by_id[o]["name"]))
        return owners[0] if owners else None

    def relation_ids(self, tables, schemas):
        """Ids of the relations named (-t: schema.name or a name unique across schemas) and of every
        relation in the schemas named (-n); unknown or ambiguous names fail, naming them."""
        chosen = []
        unknown = []
        for name in tables:
            exact = [i for i, e in self.relations.items() if qualified(e) == name]
            loose = exact or [i for i, e in self.relations.items() if e["name"] == name]
            if not loose:
                unknown.append(name)
            elif len(loose) > 1:
                raise RatBackupError(f"table {name!r} is in several schemas of the backup "
                                     f"({', '.join(sorted(qualified(self.relations[i]) for i in loose))}): "
                                     "name it as schema.table", table=name)
            elif self.owner[loose[0]] != loose[0]:
                owner = self.relations[self.owner[loose[0]]]
                raise RatBackupError(f"{name!r} is a sequence owned by table {qualified(owner)}: select the table",
                                     table=name)
            else:
                chosen.append(loose[0])
        all_schemas = {e["schema"] for e in self.entries}
        missing_schemas = [s for s in schemas if s not in all_schemas]
        if unknown or missing_schemas:
            what = [f"table {t!r}" for t in unknown] + [f"schema {s!r}" for s in missing_schemas]
            known = sorted(qualified(e) for i, e in self.relations.items() if self.owner[i] == i)
            raise RatBackupError(f"the backup holds no {', no '.join(what)} (it holds {', '.join(known[:30])}"
                                 f"{', ...' if len(known) > 30 else ''}): nothing was restored",
                                 unknown_tables=unknown, unknown_schemas=missing_schemas)
        for i, e in self.relations.items():
            if e["schema"] in schemas and self.owner[i] == i and i not in chosen:
                chosen.append(i)
        return chosen

    def foreign_keys(self):
        """[(fk entry, own relation id, [referenced relation ids])] of every FK constraint."""
        found = []
        for entry in self.entries:
            if entry["kind"] != "FK CONSTRAINT":
                continue
            own = self.owner[entry["id"]]
            referenced = []
            for dep in self.deps[entry["id"]]:
                target = self.owner.get(dep)
                if isinstance(target, int) and target != own and target not in referenced:
                    referenced.append(target)
            found.append((entry, own, referenced))
        return found

    def broken_keys(self, selected):
        """[(fk entry, own id, referenced id)] of foreign keys crossing the selection's edge (either way)."""
        return [(entry, own, ref) for entry, own, referenced in self.foreign_keys() for ref in referenced
                if (own in selected) != (ref in selected)]

    def dependents(self, selected):
        """Free-standing entries (not attached, not selected) that depend on a selected relation."""
        found = []
        for entry in self.entries:
            eid = entry["id"]
            if self.owner[eid] not in (None, eid) or entry["kind"] in ATTACHED or eid in selected:
                continue
            if any(self.owner.get(d) in selected for d in self.deps[eid]):
                found.append(entry)
        return found


def describe_key(archive, entry, own, other):
    """'<constraint> on <its table> references <other table>', whichever side is selected."""
    constraint = entry["name"][len(archive.by_id[own]["name"]) + 1:] or entry["name"]
    return f"{constraint} on {qualified(archive.by_id[own])} references {qualified(archive.by_id[other])}"


def plan(entries, script, tables=(), schemas=(), data_only=False, with_referenced=False, supporting=False,
         large_objects=()):
    """The entries of a selective restore; RatBackupError naming whatever makes the selection unsafe.

    ``supporting``: also the types, functions, schemas and extensions the selection needs (a new,
    empty database). ``large_objects``: oids found in the selected tables' oid columns.
    """
    if not tables and not schemas:
        raise RatBackupError("a selective restore needs tables or schemas")
    archive = Archive(entries, script)
    selected = set(archive.relation_ids(list(tables), list(schemas)))
    added = []
    while True:
        broken = archive.broken_keys(selected)
        if not broken:
            break
        if not with_referenced:
            names = sorted({describe_key(archive, *b) for b in broken})
            raise RatBackupError(
                "restoring only this selection would break foreign keys: " + "; ".join(names) +
                ". Select the tables on both sides, or set with_referenced to restore them too. Nothing was restored",
                foreign_keys=names)
        for entry, own, other in broken:
            new = other if own in selected else own
            if new not in selected:
                selected.add(new)
                added.append({"table": qualified(archive.by_id[new]), "reason": describe_key(archive, entry, own, other)})
    views = []
    if not data_only:
        while True:
            blocking = archive.dependents(selected)
            if not blocking:
                break
            others = [e for e in blocking if e["kind"] not in DEPENDENT_VIEWS]
            if others:
                names = sorted(f"{e['kind'].lower()} {qualified(e)}" for e in others)
                raise RatBackupError(
                    "restoring the definition of this selection would drop objects that depend on it: " +
                    ", ".join(names) + ". Restore the data only (data_only), or select them too. Nothing was restored",
                    dependents=names)
            for entry in blocking:
                selected.add(entry["id"])
                views.append(qualified(entry))
    ids = set()
    lo_wanted = {f"lo:{int(o)}" for o in large_objects} & set(archive.owner.values())
    for entry in archive.entries:
        eid, owner = entry["id"], archive.owner[entry["id"]]
        if owner in lo_wanted:
            ids.add(eid)
        elif owner in selected and (not data_only or entry["kind"] in DATA or entry["kind"] == "SEQUENCE SET"):
            ids.add(eid)
    if lo_wanted:
        ids.update(e["id"] for e in archive.entries if e["kind"] in LARGE_OBJECT_DATA)
    extra = []
    if supporting and not data_only:
        extra = _supporting(archive, ids)
        ids.update(extra)
    relations = sorted(qualified(archive.by_id[i]) for i in selected if archive.by_id[i]["kind"] != "SEQUENCE"
                       or archive.owner[i] == i)
    sequences = sorted(qualified(e) for e in archive.entries if e["kind"] == "SEQUENCE SET" and e["id"] in ids)
    return Plan([e["id"] for e in archive.entries if e["id"] in ids], relations, added, sorted(views), sequences,
                sorted(int(o[3:]) for o in lo_wanted), data_only,
                sorted(f"{archive.by_id[i]['kind'].lower()} {qualified(archive.by_id[i])}" for i in extra))


def _supporting(archive, ids):
    """Types, functions, schemas, extensions... that the entries ``ids`` depend on, transitively."""
    extra = set()
    pending = [d for i in ids for d in archive.deps[i]]
    schemas = {archive.by_id[i]["schema"] for i in ids}
    pending += [e["id"] for e in archive.entries if e["kind"] == "SCHEMA" and e["name"] in schemas]
    while pending:
        dep = pending.pop()
        if dep in ids or dep in extra or dep not in archive.by_id:
            continue
        # Free-standing sequences too: a selected table's default may draw from one.
        free_sequence = archive.by_id[dep]["kind"] == "SEQUENCE" and archive.owner[dep] == dep
        if archive.owner[dep] is not None and not free_sequence:
            continue
        extra.add(dep)
        pending.extend(archive.deps[dep])
    return extra


def table_data(entries, tables):
    """{toc id: schema.table} of the TABLE DATA entries of ``tables``."""
    wanted = set(tables)
    return {e["id"]: qualified(e) for e in entries if e["kind"] in DATA and qualified(e) in wanted}
