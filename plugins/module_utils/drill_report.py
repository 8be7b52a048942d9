# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report of a restore drill: one row per host, as JSON, JUnit XML and Markdown.

JUnit XML because CI systems and AWX show it per test case: one test case per host, failed with
the drill's reason. Pure functions of the per-host results the restore_drill role records.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

COLUMNS = ("host", "backup", "age", "RTO", "rows", "objects", "result", "reason")
NO_RESULT = "no drill result: the host was unreachable or failed before the drill started"


def rows(results, hosts=None):
    """One normalised row per host, sorted; hosts without a result are failures saying so."""
    hosts = sorted(set(hosts or ()) | set(results))
    found = []
    for host in hosts:
        item = dict(results.get(host) or {})
        if not item:
            item = {"status": "failed", "reason": NO_RESULT}
        item["host"] = host
        item["status"] = "passed" if item.get("status") == "passed" else "failed"
        item.setdefault("reason", "" if item["status"] == "passed" else "failed (no reason recorded)")
        found.append(item)
    return found


def summary(table):
    failed = [r["host"] for r in table if r["status"] != "passed"]
    return {"hosts": len(table), "passed": len(table) - len(failed), "failed": len(failed), "failed_hosts": failed}


def _hours(seconds):
    return "-" if seconds is None else f"{seconds / 3600.0:.1f} h"


def _seconds(value):
    return "-" if value is None else f"{value:.1f} s"


def _count(value):
    return "-" if value is None else str(value)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_json(table, started_at=None):
    return json.dumps({"format": 1, "kind": "rat.backup restore drill", "started_at": started_at,
                       "summary": summary(table), "hosts": table}, indent=1, sort_keys=True) + "\n"


def render_markdown(table, started_at=None):
    stats = summary(table)
    lines = [f"# Restore drill{' ' + started_at if started_at else ''}", "",
             f"{stats['hosts']} hosts: {stats['passed']} passed, {stats['failed']} failed.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        cells = (r["host"], r.get("backup") or "-", _hours(r.get("rpo_seconds")), _seconds(r.get("rto_seconds")),
                 _count(r.get("rows")), _count(r.get("objects")), r["status"], r.get("reason") or "")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_junit(table, started_at=None):
    stats = summary(table)
    total = sum(float(r.get("rto_seconds") or 0) for r in table)
    timestamp = f" timestamp={quoteattr(started_at)}" if started_at else ""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f"<testsuites name=\"rat.backup restore drill\" tests=\"{stats['hosts']}\" failures=\"{stats['failed']}\" "
           f"time=\"{total:.3f}\">",
           f"  <testsuite name=\"restore_drill\" tests=\"{stats['hosts']}\" failures=\"{stats['failed']}\" "
           f"errors=\"0\" skipped=\"0\" time=\"{total:.3f}\"{timestamp}>"]
    for r in table:
        out.append(f"    <testcase classname=\"restore_drill\" name={quoteattr(r['host'])} "
                   f"time=\"{float(r.get('rto_seconds') or 0):.3f}\">")
        if r["status"] != "passed":
            out.append(f"      <failure message={quoteattr(r['reason'])} "
                       f"type=\"drill\">{escape(json.dumps(r, sort_keys=True))}</failure>")
        system_out = (f"backup {r.get('backup') or '-'}, RPO {_hours(r.get('rpo_seconds'))}, "
                      f"RTO {_seconds(r.get('rto_seconds'))}, rows {_count(r.get('rows'))}, "
                      f"objects {_count(r.get('objects'))}")
        out.append(f"      <system-out>{escape(system_out)}</system-out>")
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"


RENDERERS = {"json": render_json, "xml": render_junit, "md": render_markdown}
