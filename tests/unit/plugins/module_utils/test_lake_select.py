# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils import lake_select
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

ORDERS = "s3://rat/ecommerce/warehouse/orders"
META_OLD = ORDERS + "/metadata/00001-a.metadata.json"
META_NEW = ORDERS + "/metadata/00002-b.metadata.json"


def _object(backup, bucket, key, data):
    path = f"minio/{bucket}/{key}"
    full = os.path.join(backup, *path.split("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as handle:
        handle.write(data)
    return {"bucket": bucket, "key": key, "path": path, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "etag": None}


@pytest.fixture
def backup(tmp_path):
    root = str(tmp_path / "20260216_093000")
    os.makedirs(root)
    objects = [
        _object(root, "rat", "ecommerce/landing/a.csv", b"a,b\n"),
        _object(root, "rat", "ecommerce/warehouse/orders/data/f1.parquet", b"PAR1"),
        _object(root, "rat", "ecommerce/warehouse/orders/metadata/00001-a.metadata.json",
                json.dumps({"location": ORDERS, "format-version": 2}).encode()),
        _object(root, "rat", "finance/landing/b.csv", b"x"),
    ]
    data = mf.build("20260216_093000", "backup", "h", "t", "t", {}, None,
                    {"buckets": {"rat": {"versioned": True}, "empty": {"versioned": False}}, "objects": objects})
    mf.write(root, data)
    return root


class FakeSession:
    """The catalog table as psql would answer: rows as JSON, RETURNING 1 when a row changed."""

    def __init__(self, rows):
        self.rows = rows
        self.sql = []

    def query(self, sql):
        self.sql.append(sql)

        def text(literal):
            return bytes.fromhex(literal).decode()
        if sql.startswith("SELECT"):
            return [json.dumps({"catalog_name": r["catalog_name"], "metadata_location": r["metadata_location"],
                                "previous_metadata_location": r.get("previous")}) for r in self.rows]
        if sql.startswith("UPDATE"):
            hexes = [text(h) for h in __import__("re").findall(r"decode\('([0-9a-f]*)'", sql)]
            new, previous, expected = hexes[0], hexes[1], hexes[-1]
            assert previous == expected
            for row in self.rows:
                if row["metadata_location"] == expected:
                    row.update(metadata_location=new, previous=expected)
                    return ["1"]
            return []
        raise AssertionError(sql)


class FakeClient:
    def __init__(self, sql):
        self.sql = sql
        self.asked = []

    def table_data(self, src, table):
        self.asked.append((src, table))
        return self.sql


DUMP_SQL = (
    "SET statement_timeout = 0;\n\n"
    "COPY public.iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, "
    "previous_metadata_location) FROM stdin;\n"
    "rat\tecommerce\torders\t" + META_OLD + "\t\\N\n"
    "rat\tfinance\tledger\ts3://rat/finance/warehouse/ledger/metadata/1.json\t\\N\n"
    "\\.\n\n")


def _with_dump(backup):
    os.makedirs(os.path.join(backup, "postgres"))
    open(os.path.join(backup, "postgres", "rat.dump"), "wb").close()


def test_parse_prefix_when_forms_given_then_bucket_and_directory_prefix():
    assert lake_select.parse_prefix("rat/ecommerce/") == ("rat", "ecommerce/")
    assert lake_select.parse_prefix("rat/ecommerce") == ("rat", "ecommerce/")
    assert lake_select.parse_prefix("rat/") == ("rat", "")
    assert lake_select.parse_prefix("rat") == ("rat", "")
    for bad in ("", "/ecommerce/", ".hidden/x", None):
        with pytest.raises(RatBackupError, match="is not bucket/prefix"):
            lake_select.parse_prefix(bad)


def test_parse_table_when_nested_namespace_then_split_at_last_dot():
    assert lake_select.parse_table("ecommerce.orders") == ("ecommerce", "orders")
    assert lake_select.parse_table("a.b.orders") == ("a.b", "orders")
    for bad in ("orders", ".orders", "ecommerce."):
        with pytest.raises(RatBackupError, match="namespace.table"):
            lake_select.parse_table(bad)


def test_copy_rows_when_escapes_and_nulls_then_decoded():
    sql = ("COPY public.iceberg_tables (catalog_name, \"table_name\", x) FROM stdin;\n"
           "c\\tat\tname\\\\with\\nnewline\t\\N\n\\.\n"
           "COPY public.other (a) FROM stdin;\nz\n\\.\n")
    assert lake_select.copy_rows(sql, "iceberg_tables") == [
        {"catalog_name": "c\tat", "table_name": "name\\with\nnewline", "x": None}]
    assert lake_select.copy_rows(sql, "public.iceberg_tables")[0]["catalog_name"] == "c\tat"


def test_plan_when_prefixes_in_backup_then_tallies_of_each(backup):
    result = lake_select.Plan(backup, [("rat", "ecommerce/"), ("rat", "finance/")], []).run(None)
    assert result["selections"] == [
        {"bucket": "rat", "prefix": "ecommerce/", "table": None, "objects": 3, "bytes": 4 + 4 + len(
            json.dumps({"location": ORDERS, "format-version": 2}))},
        {"bucket": "rat", "prefix": "finance/", "table": None, "objects": 1, "bytes": 1}]
    # A whole bucket the backup holds empty is a selection too (restoring it empties the live one).
    assert lake_select.Plan(backup, [("empty", "")], []).run(None)["selections"][0]["objects"] == 0


def test_plan_when_unknown_bucket_and_prefix_outside_then_both_named_together(backup):
    with pytest.raises(RatBackupError) as caught:
        lake_select.Plan(backup, [("nope", "x/"), ("rat", "ecommerce/"), ("rat", "nowhere/")], []).run(None)
    message = caught.value.msg
    assert message.startswith("Nothing was changed")
    assert "bucket 'nope' is not in backup 20260216_093000 (it holds empty, rat)" in message
    assert "rat/nowhere/ is outside backup 20260216_093000" in message
    assert "ecommerce" not in message


def test_plan_when_table_then_location_from_backup_metadata_and_live_entry(backup):
    _with_dump(backup)
    session = FakeSession([{"catalog_name": "rat", "metadata_location": META_NEW}])
    client = FakeClient(DUMP_SQL)
    plan = lake_select.Plan(backup, [], [("ecommerce", "orders")])
    result = plan.run(lake_select.Catalog(session), client)
    assert client.asked == [(os.path.join(backup, "postgres", "rat.dump"), "iceberg_tables")]
    assert result["tables"] == [{"name": "ecommerce.orders", "catalog_name": "rat", "namespace": "ecommerce",
                                 "table": "orders", "metadata_location": META_OLD, "bucket": "rat",
                                 "prefix": "ecommerce/warehouse/orders/", "live_metadata_location": META_NEW}]
    assert result["selections"][0]["prefix"] == "ecommerce/warehouse/orders/"
    assert result["selections"][0]["objects"] == 2 and result["selections"][0]["table"] == "ecommerce.orders"


def test_plan_when_table_unknown_then_refused_naming_it(backup):
    _with_dump(backup)
    with pytest.raises(RatBackupError, match=r"Iceberg table ecommerce.nope is not in backup 20260216_093000"):
        lake_select.Plan(backup, [], [("ecommerce", "nope")]).run(
            lake_select.Catalog(FakeSession([])), FakeClient(DUMP_SQL))


def test_commit_when_entry_as_planned_then_compare_and_swap_moves_it_back(backup):
    _with_dump(backup)
    session = FakeSession([{"catalog_name": "rat", "metadata_location": META_NEW}])
    plan = lake_select.Plan(backup, [], [("ecommerce", "orders")])
    plan.run(lake_select.Catalog(session), FakeClient(DUMP_SQL))
    assert plan.commit({"ecommerce.orders": META_NEW}, check_mode=True) is True
    assert session.rows[0]["metadata_location"] == META_NEW
    assert plan.commit({"ecommerce.orders": META_NEW}, check_mode=False) is True
    assert session.rows[0] == {"catalog_name": "rat", "metadata_location": META_OLD, "previous": META_NEW}
    update = [s for s in session.sql if s.startswith("UPDATE")]
    assert len(update) == 1 and "AND metadata_location = convert_from" in update[0]
    # Already there: nothing to do.
    assert plan.commit({}, check_mode=False) is False


def test_commit_when_entry_moved_since_plan_then_refused_and_unchanged(backup):
    _with_dump(backup)
    session = FakeSession([{"catalog_name": "rat", "metadata_location": META_NEW}])
    plan = lake_select.Plan(backup, [], [("ecommerce", "orders")])
    plan.run(lake_select.Catalog(session), FakeClient(DUMP_SQL))
    session.rows[0]["metadata_location"] = ORDERS + "/metadata/00003-c.metadata.json"
    with pytest.raises(RatBackupError, match="moved underneath the restore"):
        plan.commit({"ecommerce.orders": META_NEW}, check_mode=False)
    assert not [s for s in session.sql if s.startswith("UPDATE")]


def test_commit_when_row_moves_between_read_and_update_then_refused(backup):
    _with_dump(backup)
    session = FakeSession([{"catalog_name": "rat", "metadata_location": META_NEW}])
    plan = lake_select.Plan(backup, [], [("ecommerce", "orders")])
    plan.run(lake_select.Catalog(session), FakeClient(DUMP_SQL))
    racing = ORDERS + "/metadata/00003-c.metadata.json"
    original = session.query

    def race(sql):
        if sql.startswith("UPDATE"):
            session.rows[0]["metadata_location"] = racing
        return original(sql)
    session.query = race
    with pytest.raises(RatBackupError, match=f"expected {META_NEW}, now {racing}"):
        plan.commit({}, check_mode=False)
    assert session.rows[0]["metadata_location"] == racing


def test_catalog_entries_when_table_exists_then_every_entry_else_none():
    entry = {"catalog_name": "rat", "namespace": "ns", "name": "t", "metadata_location": "s3://lake/ns/t/m/v1.json"}

    class Session:
        def __init__(self, exists):
            self.exists = exists
            self.sql = []

        def query(self, sql):
            self.sql.append(sql)
            if "to_regclass" in sql:
                return ["t" if self.exists else "f"]
            return [json.dumps(entry)]
    found = Session(True)
    assert lake_select.Catalog(found, "cat.iceberg_tables").entries() == [entry]
    assert 'FROM "cat"."iceberg_tables" ORDER BY' in found.sql[1]
    missing = Session(False)
    assert lake_select.Catalog(missing).entries() == [] and len(missing.sql) == 1
