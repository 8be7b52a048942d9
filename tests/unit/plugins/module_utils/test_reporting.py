# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import os

from ansible_collections.rat.backup.plugins.module_utils.backup_root import reporting

NOW = datetime.datetime(2026, 2, 16, 9, 30, 0, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(seconds=12)


def test_write_metrics_when_failure_after_success_then_last_success_kept(tmp_path):
    reporting.write_metrics(str(tmp_path), "rat-lab", True, NOW, 12.5, 100, 3)
    path = reporting.write_metrics(str(tmp_path), "rat-lab", False, LATER, 1.0, None, None)
    text = open(path).read()
    assert 'rat_backup_last_success_timestamp_seconds{host="rat-lab"} %.3f' % NOW.timestamp() in text
    assert 'rat_backup_last_status{host="rat-lab"} 0' in text
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_log_line_when_reason_multiline_then_one_line():
    line = reporting.log_line("rat-lab", "failed", "20260216_093000", LATER, 12.0, None, "boom\nat line 2")
    assert "\n" not in line and "reason=boom at line 2" in line and "status=failed" in line


def test_log_line_when_manifest_predates_new_bytes_then_left_out_not_none():
    line = reporting.log_line("rat-lab", "ok", "20260216_093000", LATER, 1.0,
                              {"bytes": 5, "new_bytes": None, "copied": None, "linked": None, "objects": 2})
    assert "bytes=5 objects=2" in line and "None" not in line


def test_report_when_log_file_and_metrics_dir_given_then_both_written(tmp_path):
    out = reporting.report("rat-lab", True, "20260216_093000", LATER, {"bytes": 5, "objects": 2}, None,
                           str(tmp_path / "rat.log"), str(tmp_path / "metrics"))
    assert out["log_line"].startswith("2026-02-16T09:30:12Z rat-backup host=rat-lab status=ok name=20260216_093000")
    assert "duration=12.0s bytes=5 objects=2" in out["log_line"]
    assert (tmp_path / "rat.log").read_text() == out["log_line"] + "\n"
    assert 'rat_backup_last_objects{host="rat-lab"} 2' in open(out["metrics_file"]).read()
