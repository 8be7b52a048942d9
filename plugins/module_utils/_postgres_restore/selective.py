# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A selective restore: some tables (or schemas) of an archive, with what belongs to them.

Three reads of the archive, each through ``pg_restore -L <list>``, the list being the TOC entries
wanted (``selection.plan`` decides them):
1. the definitions of everything but rows and large objects (``--verbose`` adds each entry's
   dependencies): what belongs to which table, the foreign keys, the oid columns;
2. the selected tables' rows (``--file=-``, counted; oid columns read for the large objects they
   reference), in check mode as the preview and in a real run before anything is touched;
3. the restore: the script of the chosen entries (``--single-transaction --file=-``) piped into
   ``psql`` with ON_ERROR_STOP, so the first error rolls everything back. The script, not
   ``pg_restore --dbname``, because the large objects' data is one archive entry for all of them:
   only the blocks of the selected ones are passed on (``ScriptFilter``). A data-only restore
   empties the selected tables first, in the same transaction.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.masking import mask_argv
from ansible_collections.rat.backup.plugins.module_utils.postgres import STDERR, STDERR_LIMIT, communicate, first_lines, program
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore import selection

_DATA_FOR = re.compile(r"^-- Data for Name: (.*); Type: (?:TABLE DATA|MATERIALIZED VIEW DATA); Schema: (.*); Owner: ")
_COPY = re.compile(r"^COPY (.+?) (?:\((.*)\) )?FROM stdin;$")
_LO_OPEN = re.compile(r"^SELECT pg_catalog\.lo_open\('(\d+)', \d+\);$")
_LO_CLOSE = "SELECT pg_catalog.lo_close(0);"


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def quoted(table):
    """schema.name -> "schema"."name" (SQL identifier, and pg_dump's exact pattern for -t)."""
    schema, _dot, name = table.partition(".")
    return f"{ident(schema)}.{ident(name)}"


def _copy_columns(text):
    columns = []
    for part in re.findall(r'"(?:[^"]|"")*"|[^,\s]+', text or ""):
        columns.append(part[1:-1].replace('""', '"') if part.startswith('"') else part)
    return columns


class ScriptFilter:
    """A pg_restore script passed on line by line: rows counted per table, oid columns' values
    collected, large-object blocks of unwanted oids left out, ``after_begin`` put after BEGIN."""

    def __init__(self, oid_columns=None, wanted_oids=None, after_begin="", check_rows=False):
        self.oid_columns = oid_columns or {}     # {schema.table: [column]}
        self.wanted_oids = wanted_oids           # None: every large object block passes
        self.after_begin = after_begin
        # Before the script's COMMIT: each table must hold the rows sent, else the transaction fails.
        self.check_rows = check_rows
        self.rows = {}
        self.oids = set()
        self._pending = b""
        self._table = None
        self._copy = None                        # (table, [indexes of oid columns]) inside COPY
        self._skip_lo = False

    def feed(self, data):
        self._pending += data
        lines = self._pending.split(b"\n")
        self._pending = lines.pop()
        return b"".join(self._line(line) for line in lines)

    def finish(self):
        tail, self._pending = self._pending, b""
        return self._line(tail)[:-1] if tail else b""

    def _line(self, raw):
        line = raw.decode("utf-8", "replace")
        if self._copy is not None:
            if line == "\\.":
                self._copy = None
            else:
                table, indexes = self._copy
                self.rows[table] = self.rows.get(table, 0) + 1
                if indexes:
                    values = line.split("\t")
                    self.oids.update(int(values[i]) for i in indexes if i < len(values) and values[i].isdigit())
            return raw + b"\n"
        if self._skip_lo:
            self._skip_lo = line != _LO_CLOSE
            return b""
        match = _LO_OPEN.match(line)
        if match and self.wanted_oids is not None and int(match.group(1)) not in self.wanted_oids:
            self._skip_lo = True
            return b""
        match = _DATA_FOR.match(line)
        if match:
            self._table = f"{match.group(2)}.{match.group(1)}"
        match = _COPY.match(line)
        if match and self._table:
            wanted = self.oid_columns.get(self._table, [])
            columns = _copy_columns(match.group(2))
            self._copy = (self._table, [i for i, c in enumerate(columns) if c in wanted])
            self.rows.setdefault(self._table, 0)
        if line == "BEGIN;" and self.after_begin:
            raw += b"\n" + self.after_begin.encode("utf-8")
            self.after_begin = ""
        if line == "COMMIT;" and self.check_rows:
            raw = self.row_checks().encode("utf-8") + raw
        return raw + b"\n"

    def row_checks(self):
        """SQL failing the transaction when a table does not hold the rows its data block sent."""
        checks = []
        for table, rows in sorted(self.rows.items()):
            count = f"(SELECT count(*) FROM ONLY {quoted(table)})"
            message = f"rat.backup: {table} holds % rows after the restore, the backup {rows}".replace("'", "''")
            checks.append(f"DO $rat$ BEGIN IF {count} <> {rows} THEN RAISE EXCEPTION '{message}', {count}; "
                          "END IF; END $rat$;\n")
        return "".join(checks)


class ArchiveLists:
    """pg_restore runs over one archive, each with a list file of TOC entries (in the container
    too: the list is copied in, the archive streamed on stdin)."""

    def __init__(self, client, archive, name):
        self.client = client
        self.archive = archive
        self.name = name

    def run(self, entries, args, sink):
        listing = "".join(f"{e['id']}; {e['catalog']} {e['oid']} {e['kind']} {e['schema']} {e['name']}\n"
                          for e in entries)
        local = tempfile.mkdtemp(prefix="rat-backup-list.")
        inside_dir = None
        try:
            path = os.path.join(local, "restore.list")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(listing)
            runner = self.client.runner
            argv = [program(self.client.bin_dir, "pg_restore")] + args
            if runner.in_container:
                inside_dir, inside = runner.copy_in(path, "restore.list")
                proc = runner.spawn(argv + [f"--use-list={inside}"], {"LC_MESSAGES": "C"}, stdin=True)
                rc, _out, err = communicate(proc, stdin_path=self.archive, sink=sink)
            else:
                proc = runner.spawn(argv + [f"--use-list={path}", self.archive], {"LC_MESSAGES": "C"})
                rc, _out, err = communicate(proc, sink=sink)
        finally:
            shutil.rmtree(local, ignore_errors=True)
            if inside_dir:
                self.client.runner.remove(inside_dir)
        if rc != 0:
            raise RatBackupError(f"pg_restore cannot read the selection from {self.name}: {first_lines(err)}",
                                 src=self.name)
        return err


def read_definitions(lists, toc):
    """{toc id: {deps, sql}} of every entry but rows and large objects' data."""
    out = bytearray()
    lists.run([e for e in toc["entries"] if e["kind"] not in selection.NOT_IN_SCRIPT], ["--verbose", "--file=-"],
              out.extend)
    return selection.parse_script(out.decode("utf-8", "replace"))


def read_rows(lists, toc, tables, oid_columns):
    """(rows per table, oids in the tables' oid columns) read from the archive's data."""
    wanted = selection.table_data(toc["entries"], tables)
    found = ScriptFilter(oid_columns)
    if wanted:
        lists.run([e for e in toc["entries"] if e["id"] in wanted], ["--file=-"], found.feed)
        found.finish()
    return {t: found.rows.get(t, 0) for t in sorted(wanted.values())}, found.oids


def plan(lists, toc, sel):
    """The Selection's Plan and rows per table; RatBackupError for an unknown or unsafe selection."""
    script = read_definitions(lists, toc)
    options = dict(tables=sel.tables, schemas=sel.schemas, data_only=sel.data_only,
                   with_referenced=sel.with_referenced, supporting=sel.with_dependencies)
    first = selection.plan(toc["entries"], script, **options)
    tables = {e["id"]: selection.qualified(e) for e in toc["entries"] if e["kind"] == "TABLE"}
    oid_columns = {}
    for eid, table in tables.items():
        if table in first.tables:
            columns = selection.oid_columns(script.get(eid, {}).get("sql", ""))
            if columns:
                oid_columns[table] = columns
    rows, oids = read_rows(lists, toc, first.tables, oid_columns)
    return selection.plan(toc["entries"], script, large_objects=sorted(oids), **options), rows, oid_columns


def live_relations(session):
    """schema.name of every table, view, sequence... in the target database."""
    return set(session.query(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema');"))


def restore(client, lists, toc, chosen, spec, oid_columns):
    """The chosen entries' script into psql, one transaction; returns (rows restored, argv masked)."""
    entries = [e for e in toc["entries"] if e["id"] in set(chosen.ids)]
    truncate = ""
    if chosen.data_only:
        tables = [t for t in chosen.tables if t in selection.table_data(toc["entries"], chosen.tables).values()]
        if tables:
            truncate = f"TRUNCATE ONLY {', '.join(quoted(t) for t in tables)};\n"
    flt = ScriptFilter(oid_columns, set(chosen.large_objects), truncate, check_rows=True)
    conn = client.conn
    psql = [program(client.bin_dir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--output=/dev/null",
            "--file=-"] + conn.args()
    args = ["--single-transaction", "--file=-"]
    if spec.clean:
        args += ["--clean", "--if-exists"]
    if spec.no_owner:
        args.append("--no-owner")
    consumer = client.runner.spawn(psql, conn.env(), stdin=True)
    errors = bytearray()

    def drain():
        for stream, data in consumer.frames():
            if stream == STDERR and len(errors) < STDERR_LIMIT:
                errors.extend(data[:STDERR_LIMIT - len(errors)])

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    gone = []

    def send(out):
        if out and not gone:
            try:
                consumer.write(out)
            except (OSError, ValueError) as exc:
                # psql stopped at an error and exited: its stderr says why; the transaction is rolled back.
                gone.append(exc)

    try:
        lists.run(entries, args, lambda data: send(flt.feed(data)))
        send(flt.finish())
    finally:
        consumer.close_stdin()
        reader.join()
        rc = consumer.wait()
    if rc != 0 or gone:
        message = first_lines(errors.decode("utf-8", "replace"), 10)
        raise RatBackupError(f"selective restore into {conn.database} failed (rolled back: the database is as "
                             f"before): {message}", rc=rc, errors=[message])
    return flt.rows, mask_argv(psql, [conn.password])


class Selection:
    """What a selective restore brings back (module options, validated)."""

    def __init__(self, tables=(), schemas=(), data_only=False, with_referenced=False, with_dependencies=False):
        self.tables = list(tables)
        self.schemas = list(schemas)
        self.data_only = data_only
        self.with_referenced = with_referenced
        self.with_dependencies = with_dependencies

    def validate(self, jobs):
        if not self.tables and not self.schemas:
            raise RatBackupError("a selective restore needs tables or schemas")
        empty = [n for n in self.tables + self.schemas if not n.strip()]
        if empty:
            raise RatBackupError("tables and schemas must not hold empty names")
        if jobs > 1:
            raise RatBackupError("a selective restore runs in one transaction: jobs must be 1")


class Prepared:
    """A selection planned against the archive and the target (nothing touched yet).

    ``found``: the plan's summary, rows per table from the archive, which selected relations the
    target database has (``existing``, ``dump_patterns`` for a safety dump of them) and lacks
    (``missing``); ``entries``: the TOC entries to restore. ``restore()`` does it. ``session`` is
    open on the target, None for a database still to be created (``new_database``: the types,
    functions and schemas the selection needs are restored too).
    """

    def __init__(self, client, spec, archive, toc, session, new_database=False):
        self.client = client
        self.spec = spec
        self.toc = toc
        self.lists = ArchiveLists(client, archive, spec.src)
        sel = spec.selection
        if new_database:
            sel = Selection(sel.tables, sel.schemas, sel.data_only, sel.with_referenced, True)
        if new_database and sel.data_only:
            raise RatBackupError("data_only restores rows into existing tables, but the database is still to be "
                                 "created. Nothing was restored")
        self.chosen, rows, self.oid_columns = plan(self.lists, toc, sel)
        live = live_relations(session) if session is not None else set()
        existing = [t for t in self.chosen.tables if t in live]
        missing = [t for t in self.chosen.tables if t not in live]
        if self.chosen.data_only and missing:
            raise RatBackupError(f"data_only restores rows into existing tables, but {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not in database {client.conn.database}: "
                                 "restore definition and data (data_only: false). Nothing was restored",
                                 missing=missing)
        self.found = dict(self.chosen.summary(), rows=rows, existing=existing, missing=missing,
                          dump_patterns=[quoted(t) for t in existing])
        self.entries = [e for e in toc["entries"] if e["id"] in set(self.chosen.ids)]

    def restore(self):
        """Restore the selection in one transaction; returns the psql argv (masked)."""
        rows, cmd = restore(self.client, self.lists, self.toc, self.chosen, self.spec, self.oid_columns)
        self.found["rows"] = {t: rows.get(t, 0) for t in self.found["rows"]}
        return cmd


def diff(found, live_rows):
    """--diff of a selection: the target's rows per table before, the archive's after."""
    before, after = [], []
    for table in sorted(set(found["tables"]) | set(found["rows"])):
        if table in found["missing"]:
            before.append(f"{table}: missing")
        else:
            before.append(f"{table}: {live_rows[table]} rows" if table in live_rows else f"{table}: present")
        after.append(f"{table}: {found['rows'][table]} rows" if table in found["rows"] else f"{table}: definition")
    after += [f"sequence {s}: position" for s in found["sequences"]]
    after += [f"large object {o}" for o in found["large_objects"]]
    return {"before": "".join(line + "\n" for line in before), "after": "".join(line + "\n" for line in after),
            "before_header": "target database", "after_header": "backup (selected)"}
