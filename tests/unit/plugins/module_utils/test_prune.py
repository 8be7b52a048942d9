# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import prune
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.timezone.utc)


def make(root, name, manifest=True):
    path = os.path.join(str(root), name)
    os.makedirs(os.path.join(path, "postgres"))
    with open(os.path.join(path, "postgres", "rat.dump"), "wb") as handle:
        handle.write(b"dump")
    if manifest:
        with open(os.path.join(path, "manifest.json"), "w") as handle:
            json.dump({"format": 1}, handle)
    return path


def decisions(found):
    return {i["name"]: (i["kind"], i["keep"]) for i in found["items"]}


def apply(root, found):
    prune.finish_leftovers(found["leftovers"])
    for item in found["items"]:
        if not item["keep"]:
            prune.delete(str(root), item)


def test_survey_when_mixed_root_then_only_backups_decided(tmp_path):
    for name in ("20261120_000000", "20261125_000000", "20261127_000000"):
        make(tmp_path, name)
    make(tmp_path, "20261126_000000", manifest=False)  # renamed by hand or copied: not ours
    make(tmp_path, "notes")
    os.symlink(str(tmp_path / "20261120_000000"), str(tmp_path / "20261121_000000"))
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1}), NOW, busy=False)
    assert decisions(found) == {"20261120_000000": ("complete", False), "20261125_000000": ("complete", False),
                                "20261127_000000": ("complete", True)}
    assert found["left_alone"] == [str(tmp_path / "20261126_000000")]


def test_delete_when_backup_has_symlink_out_then_target_survives(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    root = tmp_path / "root"
    old = make(root, "20261120_000000")
    os.symlink(str(outside), os.path.join(old, "link"))
    make(root, "20261127_000000")
    os.symlink(str(root / "20261120_000000"), str(root / "20261121_000000"))
    apply(root, prune.survey(str(root), retention.check_policy({"keep_last": 1}), NOW, busy=False))
    assert sorted(os.listdir(str(root))) == ["20261121_000000", "20261127_000000"]
    assert (outside / "precious").read_text() == "keep me"
    assert os.path.islink(str(root / "20261121_000000"))


def test_survey_when_backup_named_in_the_future_then_never_counted_nor_deleted(tmp_path):
    # Issue 27 item 10: keep_last 1 kept the future-named copy and deleted the real newest.
    for name in ("20261125_000000", "20261127_000000", "20271127_000000"):
        make(tmp_path, name)
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1}), NOW, busy=False)
    assert decisions(found) == {"20261125_000000": ("complete", False), "20261127_000000": ("complete", True),
                                "20271127_000000": ("complete", True)}
    future = [i for i in found["items"] if i["name"] == "20271127_000000"][0]
    assert "ahead of this host's clock: suspect" in future["reason"]


def test_survey_when_newest_failed_verify_or_manifest_corrupt_then_last_good_kept(tmp_path):
    # Issue 27 item 11, on disk: a failed verify record in .status, an unreadable manifest.json.
    for name in ("20261124_000000", "20261125_000000", "20261126_000000", "20261127_000000"):
        make(tmp_path, name)
    layout.write_status(str(tmp_path), "20261127_000000", "verify", {"ok": False, "bad": ["postgres/rat.dump: x"]})
    with open(tmp_path / "20261126_000000" / "manifest.json", "w") as handle:
        handle.write('{"format": 1, "minio": {"objects": [\n{"bucket": "b",\n')
    layout.write_status(str(tmp_path), "20261124_000000", "verify", {"ok": True})
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1}), NOW, busy=False)
    assert decisions(found) == {"20261124_000000": ("complete", True), "20261125_000000": ("complete", True),
                                "20261126_000000": ("complete", True), "20261127_000000": ("complete", True)}
    reason = {i["name"]: i["reason"] for i in found["items"]}
    assert reason["20261124_000000"] == "newest verified backup (always kept)"
    assert reason["20261125_000000"] == "keep_last (1/1)"
    assert "postgres/rat.dump: x" in reason["20261127_000000"] and "is not valid JSON" in reason["20261126_000000"]


def test_delete_when_removal_crashes_then_nothing_listed_and_next_run_finishes(tmp_path, monkeypatch):
    make(tmp_path, "20261120_000000")
    make(tmp_path, "20261127_000000")
    policy = retention.check_policy({"keep_last": 1})
    found = prune.survey(str(tmp_path), policy, NOW, busy=False)

    def crash(path):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(layout, "remove_tree", crash)
    victim = next(i for i in found["items"] if not i["keep"])
    with pytest.raises(RatBackupError) as err:
        prune.delete(str(tmp_path), victim)
    assert "is no longer a backup" in err.value.msg
    assert [b["name"] for b in layout.list_backups(str(tmp_path))["complete"]] == ["20261127_000000"]
    monkeypatch.undo()
    again = prune.survey(str(tmp_path), policy, NOW, busy=False)
    assert again["leftovers"] == [str(tmp_path / ".deleting" / "20261120_000000")]
    apply(tmp_path, again)
    assert sorted(os.listdir(str(tmp_path))) == ["20261127_000000"]


def test_survey_when_partials_then_old_unlocked_ones_go(tmp_path):
    make(tmp_path, "20261127_000000")
    make(tmp_path, "20261101_000000.partial", manifest=False)
    make(tmp_path, "20261127_110000.partial", manifest=False)
    policy = retention.check_policy({"keep_last": 5, "partial_max_age": "12h"})
    free = decisions(prune.survey(str(tmp_path), policy, NOW, busy=False))
    assert free["20261101_000000.partial"] == ("partial", False)
    assert free["20261127_110000.partial"] == ("partial", True)
    locked = decisions(prune.survey(str(tmp_path), policy, NOW, busy=True))
    assert locked["20261101_000000.partial"] == ("partial", True)


def test_survey_when_pre_restore_rule_then_applied_apart(tmp_path):
    make(tmp_path, "20261101_000000")
    for name in ("20261001_000000", "20261002_000000", "20261003_000000"):
        make(tmp_path / "pre-restore", name)
    without = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1}), NOW, busy=False)
    assert all(i["keep"] for i in without["items"])
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1, "pre_restore": {"keep_last": 2}}),
                         NOW, busy=False)
    assert [(i["path"], i["keep"]) for i in found["items"] if i["kind"] == "pre_restore"] == [
        (str(tmp_path / "pre-restore" / "20261001_000000"), False),
        (str(tmp_path / "pre-restore" / "20261002_000000"), True),
        (str(tmp_path / "pre-restore" / "20261003_000000"), True)]
    apply(tmp_path, found)
    assert sorted(os.listdir(str(tmp_path / "pre-restore"))) == ["20261002_000000", "20261003_000000"]


def test_delete_when_drilled_protected_then_kept_and_others_lose_status(tmp_path):
    for name in ("20261001_000000", "20261010_000000", "20261127_000000"):
        make(tmp_path, name)
    layout.write_status(str(tmp_path), "20261001_000000", "drill", {"status": "passed"})
    layout.write_status(str(tmp_path), "20261010_000000", "drill", {"status": "failed", "ok": False})
    layout.write_status(str(tmp_path), "20261010_000000", "verify", {"ok": True})
    layout.write_status(str(tmp_path), "20261127_000000", "verify", {"ok": True})
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1, "protect_drilled": 1}), NOW,
                         busy=False)
    assert decisions(found)["20261001_000000"] == ("complete", True)
    apply(tmp_path, found)
    assert sorted(os.listdir(str(tmp_path / ".status"))) == ["20261001_000000.drill.json",
                                                             "20261127_000000.verify.json"]


@pytest.mark.parametrize("record, expected", [({"status": "passed"}, True), ({"ok": True}, True),
                                              ({"status": "failed"}, False), ({}, False)])
def test_drilled_when_status_record_then_only_passed_counts(tmp_path, record, expected):
    make(tmp_path, "20261001_000000")
    if record:
        layout.write_status(str(tmp_path), "20261001_000000", "drill", record)
    assert prune.drilled(str(tmp_path), "20261001_000000") is expected


def test_diff_when_deleting_then_only_deleted_lines_differ(tmp_path):
    make(tmp_path, "20261120_000000")
    make(tmp_path, "20261127_000000")
    found = prune.survey(str(tmp_path), retention.check_policy({"keep_last": 1}), NOW, busy=False)
    diff = prune.diff(str(tmp_path), found["items"])
    assert diff["before"] == "20261120_000000\n20261127_000000\n"
    assert diff["after"] == "20261127_000000\n"
