# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.doc_fragments import consistency as consistency_fragment
from ansible_collections.rat.backup.plugins.modules import backup_run
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_backup_dir import begin, fill, prepare_partial


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            backup_run.main()
    return json.loads(capsys.readouterr().out)


def commit_args(root, started, **overrides):
    args = {"state": "commit", "root": str(root), "name": started["name"], "lock_token": started["lock_token"],
            "host": "rat-lab"}
    args.update(overrides)
    return args


def test_argument_spec_when_compared_to_documentation_then_every_dict_option_has_the_same_suboptions():
    spec = backup_run.argument_spec()
    documented = yaml.safe_load(backup_run.DOCUMENTATION)["options"]
    # The consistency option is documented by its doc fragment, beside consistency.record_argspec().
    documented.update(yaml.safe_load(consistency_fragment.ModuleDocFragment.DOCUMENTATION)["options"])
    assert set(spec) == set(documented)
    for name in ("tools", "consistency"):
        assert set(spec[name]["options"]) == set(documented[name]["suboptions"]), name


def test_commit_when_pg_dump_left_its_result_then_manifest_records_it_without_run_details(capsys, tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        left = dict(fill(started["partial"]), dest=os.path.join(started["partial"], "postgres", "rat.dump"),
                    format="custom")
        with open(os.path.join(started["partial"], "postgres", "rat.dump.json"), "w") as handle:
            json.dump(left, handle)
        consistency = {"level": "best-effort", "use_versions": "false", "changed_during": []}
        result = run_module(capsys, commit_args(tmp_path, started, consistency=consistency,
                                                tools={"ansible_core": "2.19.4"}))
    finally:
        lock.release(str(tmp_path), started["lock_token"])
    assert result["changed"] and not result.get("failed"), result
    with open(os.path.join(result["backup_dir"], "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["postgres"] == {"size": left["size"], "sha256": left["sha256"], "format": "custom",
                                    "client_version": "15.18", "row_counts": {"public.runs": 1},
                                    "path": "postgres/rat.dump"}
    assert manifest["consistency"] == {"level": "best-effort", "use_versions": False, "changed_during": [],
                                       "objects_listed_at": "2026-02-16T09:30:03Z"}
    assert manifest["tools"]["ansible_core"] == "2.19.4" and manifest["tools"]["pg_dump"] == "15.18"
    assert not os.path.exists(os.path.join(result["backup_dir"], "postgres", "rat.dump.json"))


def test_commit_when_postgres_option_given_then_refused_as_unsupported(capsys, tmp_path):
    """The postgres option (a registered pg_dump result) is gone: commit reads the result file pg_dump leaves."""
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        result = run_module(capsys, commit_args(tmp_path, started, postgres=fill(started["partial"])))
        assert result["failed"] and "postgres" in result["msg"] and "Unsupported parameters" in result["msg"]
        assert os.path.isdir(started["partial"])
    finally:
        lock.release(str(tmp_path), started["lock_token"])


def test_commit_when_consistency_has_an_unknown_key_then_refused_naming_it(capsys, tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        fill(started["partial"])
        result = run_module(capsys, commit_args(tmp_path, started, consistency={"levl": "snapshot"}))
        assert result["failed"] and "consistency.levl" in result["msg"]
        assert os.path.isdir(started["partial"])
    finally:
        lock.release(str(tmp_path), started["lock_token"])


def test_abort_when_no_name_then_only_the_failed_run_is_recorded(capsys, tmp_path):
    """A run whose start failed (backup_capture's checks): no directory to remove, its end still logged."""
    log = tmp_path / "backup.log"
    result = run_module(capsys, {"state": "abort", "root": str(tmp_path), "host": "rat-lab", "log_file": str(log),
                                 "metrics_dir": str(tmp_path / "metrics"), "reason": "Check: S3 unreachable"})
    assert not result.get("failed") and not result["changed"], result
    assert result["removed"] is None and result["lock_released"] is False
    assert "status=failed name=- " in log.read_text() and "reason=Check: S3 unreachable" in log.read_text()
    assert "rat_backup_last_status{host=\"rat-lab\"} 0" in (tmp_path / "metrics" / "rat_backup.prom").read_text()
    assert sorted(os.listdir(tmp_path)) == ["backup.log", "metrics"]


def test_commit_when_no_name_then_refused(capsys, tmp_path):
    result = run_module(capsys, {"state": "commit", "root": str(tmp_path)})
    assert result["failed"] and "name is required with state=commit" in result["msg"]
