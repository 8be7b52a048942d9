# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils import offsite
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.modules import backup_retention


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            backup_retention.main()
    return json.loads(capsys.readouterr().out)


def make(root, name):
    path = os.path.join(str(root), name)
    os.makedirs(path)
    with open(os.path.join(path, "manifest.json"), "w") as handle:
        handle.write('{"format": 1}')


def test_argument_spec_when_compared_to_documentation_matches():
    assert set(backup_retention.argument_spec()) == set(yaml.safe_load(backup_retention.DOCUMENTATION)["options"])


def test_main_when_check_then_plan_with_reasons_and_nothing_deleted(capsys, tmp_path):
    for day in range(20, 28):
        make(tmp_path, "202611%02d_000000" % day)
    args = {"root": str(tmp_path), "policy": {"keep_daily": 3}, "now": "2026-11-27T12:00:00Z",
            "_ansible_check_mode": True, "_ansible_diff": True}
    result = run_module(capsys, args)
    assert [(k["name"], k["reason"]) for k in result["kept"]] == [
        ("20261125_000000", "keep_daily (3/3)"), ("20261126_000000", "keep_daily (2/3)"),
        ("20261127_000000", "keep_daily (1/3)")]
    assert [d["name"] for d in result["deleted"]] == ["202611%02d_000000" % day for day in range(20, 25)]
    assert result["changed"] and "-20261120_000000" not in result["diff"]["after"]
    assert len(os.listdir(str(tmp_path))) == 8 and not os.path.exists(str(tmp_path / ".lock"))


def test_main_when_real_run_twice_then_second_deletes_nothing(capsys, tmp_path):
    for day in range(20, 28):
        make(tmp_path, "202611%02d_000000" % day)
    args = {"root": str(tmp_path), "policy": {"keep_last": 2}, "now": "2026-11-27T12:00:00Z"}
    first = run_module(capsys, args)
    assert first["changed"] and len(first["deleted"]) == 6
    names = [b["name"] for b in layout.list_backups(str(tmp_path))["complete"]]
    assert names == ["20261126_000000", "20261127_000000"]
    assert not lock.lock_state(str(tmp_path))[0]
    second = run_module(capsys, args)
    assert not second["changed"] and second["deleted"] == []


def test_main_when_lock_held_then_fails_naming_holder_and_deletes_nothing(capsys, tmp_path):
    for day in range(20, 28):
        make(tmp_path, "202611%02d_000000" % day)
    record, _stale = lock.acquire(str(tmp_path), "backup", 60)
    try:
        result = run_module(capsys, {"root": str(tmp_path), "policy": {"keep_last": 1}})
    finally:
        lock.release(str(tmp_path), record["token"])
    assert result["failed"] and "another backup is running" in result["msg"]
    assert len(layout.list_backups(str(tmp_path))["complete"]) == 8


@pytest.mark.parametrize("args, words", [
    ({"policy": {"keep_lastt": 1}}, "policy has unknown key(s) keep_lastt"),
    ({"policy": {"keep_last": 1}, "now": "yesterday"}, "now='yesterday' is not an ISO 8601 UTC time"),
])
def test_main_when_bad_input_then_fails_clearly(capsys, tmp_path, args, words):
    make(tmp_path, "20261120_000000")
    result = run_module(capsys, dict(args, root=str(tmp_path)))
    assert result["failed"] and words in result["msg"]
    assert os.listdir(str(tmp_path)) == ["20261120_000000"]


def test_main_when_root_missing_then_nothing_to_do(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path / "nope"), "policy": {"keep_last": 1}})
    assert not result["changed"] and result["kept"] == [] and not os.path.exists(str(tmp_path / "nope"))


def test_main_when_an_off_site_run_is_shipping_then_fails_and_deletes_nothing(capsys, tmp_path):
    for day in range(20, 28):
        make(tmp_path, "202611%02d_000000" % day)
    shipping = offsite.lock(str(tmp_path))
    try:
        result = run_module(capsys, {"root": str(tmp_path), "policy": {"keep_last": 1}, "now": "2026-11-27T12:00:00Z"})
    finally:
        os.close(shipping)
    assert result["failed"] and "an off-site run is shipping backups of" in result["msg"]
    assert len(layout.list_backups(str(tmp_path))["complete"]) == 8 and not lock.lock_state(str(tmp_path))[0]
    assert len(run_module(capsys, {"root": str(tmp_path), "policy": {"keep_last": 1}})["deleted"]) == 7


def test_offsite_lock_when_retention_holds_the_host_lock_then_refused(tmp_path):
    record, _stale = lock.acquire(str(tmp_path), "retention", 60)
    try:
        with pytest.raises(RatBackupError) as err:
            offsite.lock(str(tmp_path))
    finally:
        lock.release(str(tmp_path), record["token"])
    assert "retention is deleting backups of" in err.value.msg
    os.close(offsite.lock(str(tmp_path)))
