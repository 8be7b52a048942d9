# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from ansible_collections.rat.backup.plugins.module_utils import drill_report

RESULTS = {
    "rat-b": {"status": "failed", "backup": "20260216_093000", "rpo_seconds": 7200, "rto_seconds": 3.25,
              "reason": 'backup damaged: minio/rat/a.csv: sha256 differs <&"|>'},
    "rat-a": {"status": "passed", "backup": "20260216_093000", "rpo_seconds": 5400, "rto_seconds": 12.5,
              "rows": 1050, "objects": 40},
}


def test_rows_when_host_without_result_then_failed_saying_so_and_sorted():
    table = drill_report.rows(RESULTS, ["rat-a", "rat-b", "rat-c"])
    assert [r["host"] for r in table] == ["rat-a", "rat-b", "rat-c"]
    assert [r["status"] for r in table] == ["passed", "failed", "failed"]
    assert table[2]["reason"] == drill_report.NO_RESULT
    assert drill_report.summary(table) == {"hosts": 3, "passed": 1, "failed": 2, "failed_hosts": ["rat-b", "rat-c"]}


def test_rows_when_status_unknown_then_failed_never_passed():
    assert drill_report.rows({"h": {"status": "ok"}})[0]["status"] == "failed"


def test_render_junit_when_failure_has_markup_then_valid_xml_one_case_per_host():
    xml = drill_report.render_junit(drill_report.rows(RESULTS), "2026-02-16T11:00:00Z")
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("timestamp")) == ("2", "1", "2026-02-16T11:00:00Z")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["rat-a"].find("failure") is None and cases["rat-a"].get("time") == "12.500"
    failure = cases["rat-b"].find("failure")
    assert failure.get("message") == RESULTS["rat-b"]["reason"]
    assert json.loads(failure.text)["host"] == "rat-b"


def test_render_markdown_when_reason_has_pipe_then_table_keeps_its_columns():
    md = drill_report.render_markdown(drill_report.rows(RESULTS))
    lines = md.splitlines()
    assert "2 hosts: 1 passed, 1 failed." in lines
    table = [line for line in lines if line.startswith("| rat-")]
    assert table[0] == "| rat-a | 20260216_093000 | 1.5 h | 12.5 s | 1050 | 40 | passed |  |"
    assert table[1].count(" | ") == len(drill_report.COLUMNS) - 1 and "\\|" in table[1]


def test_render_json_when_rendered_then_summary_and_rows_round_trip():
    data = json.loads(drill_report.render_json(drill_report.rows(RESULTS), "t"))
    assert data["summary"]["failed_hosts"] == ["rat-b"] and data["hosts"][0]["rows"] == 1050
