# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selective restore: which archive entries come with a table, foreign keys, the script filter.

The TOC and the dependency lines have the shape pg_restore 15 prints for the lab's RAT database
(``pg_restore --list`` and ``pg_restore --verbose --file=-``)."""

from __future__ import annotations

import pytest

from ansible_collections.rat.backup.plugins.module_utils._postgres import archive as pg_archive
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore import selection, selective
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

TOC = """;
;     dbname: rat
;     Format: CUSTOM
;
858; 1247 18234 TYPE public run_status rat
228; 1255 18343 FUNCTION public touch_updated_at() rat
214; 1259 18242 TABLE public namespaces rat
215; 1259 18252 TABLE public pipelines rat
217; 1259 18268 TABLE public runs rat
3442; 0 0 COMMENT public TABLE runs rat
224; 1259 18333 TABLE public ownership rat
226; 1259 18346 VIEW public run_stats rat
216; 1259 18267 SEQUENCE public runs_id_seq rat
218; 1259 18284 SEQUENCE public pipelines_n_seq rat
3443; 0 0 SEQUENCE OWNED BY public pipelines_n_seq rat
225; 1259 18342 SEQUENCE public run_number_seq rat
3242; 2604 18288 DEFAULT public pipelines n rat
3434; 2613 18351 BLOB - 18351 rat
3436; 2613 18352 BLOB - 18352 rat
3422; 0 18242 TABLE DATA public namespaces rat
3423; 0 18252 TABLE DATA public pipelines rat
3425; 0 18268 TABLE DATA public runs rat
3432; 0 18333 TABLE DATA public ownership rat
3446; 0 0 SEQUENCE SET public run_number_seq rat
3447; 0 0 SEQUENCE SET public runs_id_seq rat
3448; 0 0 SEQUENCE SET public pipelines_n_seq rat
3435; 0 0 BLOBS - BLOBS
3252; 2606 18249 CONSTRAINT public namespaces namespaces_pkey rat
3256; 2606 18259 CONSTRAINT public pipelines pipelines_pkey rat
3259; 2606 18275 CONSTRAINT public runs runs_pkey rat
3271; 2606 18341 CONSTRAINT public ownership ownership_pkey rat
3257; 1259 18283 INDEX public runs_started_idx rat
3278; 2620 18344 TRIGGER public pipelines pipelines_touch rat
3272; 2606 18262 FK CONSTRAINT public pipelines pipelines_namespace_id_fkey rat
3273; 2606 18278 FK CONSTRAINT public runs runs_pipeline_id_fkey rat
3279; 0 0 ACL public TABLE ownership rat
"""

DEPS = {217: [858], 3442: [217], 226: [217, 215], 216: [217], 218: [215], 3443: [218], 3242: [218, 215, 215],
        3447: [216], 3448: [218], 3446: [225], 3252: [214], 3256: [215], 3259: [217], 3271: [224], 3257: [217, 217],
        3278: [215, 228], 3272: [3252, 214, 215], 3273: [215, 3256, 217], 3279: [224]}
SQL = {214: "CREATE TABLE public.namespaces (\n    id uuid NOT NULL,\n    logo oid,\n    \"Odd \"\"pic\"\" \" oid\n);"}


def _script():
    parts = []
    for eid, deps in sorted(DEPS.items()) + [(214, [])]:
        parts.append(f"--\n-- TOC entry {eid} (class 1259 OID 1)\n")
        if deps:
            parts.append(f"-- Dependencies: {' '.join(map(str, deps))}\n")
        parts.append(f"-- Name: x; Type: X; Schema: public; Owner: rat\n--\n\n{SQL.get(eid, 'SELECT 1;')}\n\n")
    return selection.parse_script("".join(parts))


ENTRIES = pg_archive.parse_toc(TOC)["entries"]
SCRIPT = _script()


def kinds(found):
    by_id = {e["id"]: e for e in ENTRIES}
    return sorted(f"{by_id[i]['kind']} {by_id[i]['name']}" for i in found.ids)


def test_table_comes_with_its_constraints_data_and_acl():
    found = selection.plan(ENTRIES, SCRIPT, tables=["ownership"])
    assert kinds(found) == ["ACL TABLE ownership", "CONSTRAINT ownership ownership_pkey", "TABLE DATA ownership",
                            "TABLE ownership"]
    assert found.tables == ["public.ownership"] and found.added == []


def test_owned_sequence_default_trigger_come_with_their_table():
    found = selection.plan(ENTRIES, SCRIPT, tables=["public.pipelines"], with_referenced=True)
    names = kinds(found)
    for wanted in ("SEQUENCE pipelines_n_seq", "SEQUENCE OWNED BY pipelines_n_seq", "SEQUENCE SET pipelines_n_seq",
                   "DEFAULT pipelines n", "TRIGGER pipelines pipelines_touch", "INDEX runs_started_idx",
                   "COMMENT TABLE runs", "SEQUENCE runs_id_seq", "SEQUENCE SET runs_id_seq"):
        assert wanted in names
    # A live database keeps its types and functions; the free-standing sequence is not the table's.
    assert not [n for n in names if n.startswith(("TYPE", "FUNCTION")) or "run_number_seq" in n]


def test_foreign_key_to_an_unselected_table_is_refused_naming_it():
    with pytest.raises(RatBackupError) as err:
        selection.plan(ENTRIES, SCRIPT, tables=["runs"])
    assert "runs_pipeline_id_fkey on public.runs references public.pipelines" in err.value.msg
    assert err.value.details["foreign_keys"] == ["runs_pipeline_id_fkey on public.runs references public.pipelines"]


def test_unselected_table_referencing_a_selected_one_is_refused():
    with pytest.raises(RatBackupError) as err:
        selection.plan(ENTRIES, SCRIPT, tables=["namespaces"])
    assert "pipelines_namespace_id_fkey on public.pipelines references public.namespaces" in err.value.msg


def test_with_referenced_adds_both_directions_until_nothing_breaks():
    found = selection.plan(ENTRIES, SCRIPT, tables=["runs"], with_referenced=True)
    assert [a["table"] for a in found.added] == ["public.pipelines", "public.namespaces"]
    assert found.added[0]["reason"] == "runs_pipeline_id_fkey on public.runs references public.pipelines"
    # The view over runs and pipelines would block DROP TABLE: it is re-created with them.
    assert found.views == ["public.run_stats"]
    assert found.tables == ["public.namespaces", "public.pipelines", "public.run_stats", "public.runs"]


def test_data_only_takes_rows_and_sequence_positions_only():
    found = selection.plan(ENTRIES, SCRIPT, tables=["runs"], with_referenced=True, data_only=True)
    assert kinds(found) == ["SEQUENCE SET pipelines_n_seq", "SEQUENCE SET runs_id_seq", "TABLE DATA namespaces",
                            "TABLE DATA pipelines", "TABLE DATA runs"]
    assert found.views == []


def test_referenced_large_objects_only():
    found = selection.plan(ENTRIES, SCRIPT, tables=["namespaces"], with_referenced=True,
                           large_objects=[18351, 99999])
    names = kinds(found)
    assert "BLOB 18351" in names and "BLOBS BLOBS" in names and "BLOB 18352" not in names
    assert found.large_objects == [18351]


def test_unknown_table_and_schema_named_in_one_error():
    with pytest.raises(RatBackupError) as err:
        selection.plan(ENTRIES, SCRIPT, tables=["ownership", "nope"], schemas=["ghost"])
    assert "no table 'nope', no schema 'ghost'" in err.value.msg
    assert err.value.details == {"unknown_tables": ["nope"], "unknown_schemas": ["ghost"]}


def test_owned_sequence_alone_is_refused_naming_its_table():
    with pytest.raises(RatBackupError, match="owned by table public.runs"):
        selection.plan(ENTRIES, SCRIPT, tables=["runs_id_seq"])


def test_free_standing_sequence_selectable():
    found = selection.plan(ENTRIES, SCRIPT, tables=["run_number_seq"])
    assert kinds(found) == ["SEQUENCE SET run_number_seq", "SEQUENCE run_number_seq"]


def test_schema_selects_every_relation():
    found = selection.plan(ENTRIES, SCRIPT, schemas=["public"])
    assert found.added == [] and "public.ownership" in found.tables and "public.run_number_seq" in found.tables


def test_new_database_gets_types_and_functions_needed():
    found = selection.plan(ENTRIES, SCRIPT, tables=["runs"], with_referenced=True, supporting=True)
    assert found.supporting == ["function public.touch_updated_at()", "type public.run_status"]


def test_oid_columns_from_create_table():
    assert selection.oid_columns(SQL[214]) == ["logo", 'Odd "pic" ']


def test_filter_counts_rows_collects_oids_and_drops_unwanted_large_objects():
    script = (b"BEGIN;\n"
              b"-- Data for Name: namespaces; Type: TABLE DATA; Schema: public; Owner: rat\n"
              b"COPY public.namespaces (id, logo) FROM stdin;\n1\t18351\n2\t\\N\n\\.\n"
              b"SELECT pg_catalog.lo_open('18351', 131072);\nSELECT pg_catalog.lowrite(0, '\\x01');\n"
              b"SELECT pg_catalog.lo_close(0);\n"
              b"SELECT pg_catalog.lo_open('18352', 131072);\nSELECT pg_catalog.lowrite(0, '\\x02');\n"
              b"SELECT pg_catalog.lo_close(0);\nCOMMIT;\n")
    flt = selective.ScriptFilter({"public.namespaces": ["logo"]}, {18351}, "TRUNCATE ONLY x;\n", check_rows=True)
    # Fed in awkward pieces: lines are split across chunks.
    out = b"".join(flt.feed(script[i:i + 7]) for i in range(0, len(script), 7)) + flt.finish()
    assert flt.rows == {"public.namespaces": 2} and flt.oids == {18351}
    assert out.startswith(b"BEGIN;\nTRUNCATE ONLY x;\n")
    assert b"'18351'" in out and b"18352" not in out and b"\\x02" not in out
    # The rows sent are checked inside the transaction, before its COMMIT.
    assert out.endswith(b'DO $rat$ BEGIN IF (SELECT count(*) FROM ONLY "public"."namespaces") <> 2 THEN RAISE EXCEPTION '
                        b"'rat.backup: public.namespaces holds % rows after the restore, the backup 2', "
                        b'(SELECT count(*) FROM ONLY "public"."namespaces"); END IF; END $rat$;\nCOMMIT;\n')


def test_quoted_names_for_sql_and_pg_dump_patterns():
    assert selective.quoted('public.Odd "x".y') == '"public"."Odd ""x"".y"'
