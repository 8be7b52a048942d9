# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args
from moto import mock_aws

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment
from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment as S3DocFragment
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.modules import drill_report, drill_scratch

SECRET = "do-not-print-me"


def run_module(module, capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("module, fragment", [(drill_scratch, True), (drill_report, False)])
def test_argument_spec_when_compared_to_documentation_matches(module, fragment):
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    if fragment:
        documented.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
        documented.update(yaml.safe_load(S3DocFragment.CONNECTION)["options"])
    spec = module.argument_spec()
    assert set(spec) == set(documented)
    for name, option in documented.items():
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name]["type"] == option["type"], name


@pytest.mark.parametrize("args, message", [
    ({"record": {"ok": True}}, "record needs state=absent, root and name"),
    ({"state": "absent", "scratch_database": "rat"}, "scratch_database='rat' is not a drill database"),
    ({"state": "absent", "bucket_map": {"rat": "rat"}}, "bucket_map holds names that are not drill buckets: rat"),
    ({"state": "absent", "record": {}, "root": "/tmp", "name": "../x"}, "name='../x' is refused"),
])
def test_drill_scratch_when_input_bad_then_fails_naming_it_before_connecting(capsys, args, message):
    result = run_module(drill_scratch, capsys, dict({"owner": "h1", "password": SECRET, "port": 1}, **args))
    assert result["failed"] and message in result["msg"], result["msg"]
    assert SECRET not in json.dumps(result)


def test_drill_scratch_when_s3_only_then_creates_marked_removes_and_records(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    base = {"owner": "h1", "components": ["minio"], "access_key": "k", "secret_key": SECRET}
    with mock_aws():
        client = s3.make_client(s3.Endpoint(None, "k", SECRET))
        planned = run_module(drill_scratch, capsys, dict(base, buckets=["rat"], _ansible_check_mode=True))
        assert planned["changed"] and client.list_buckets()["Buckets"] == []
        made = run_module(drill_scratch, capsys, dict(base, buckets=["rat"]))
        scratch = made["bucket_map"]["rat"]
        assert made["scratch_database"] is None and [b["Name"] for b in client.list_buckets()["Buckets"]] == [scratch]
        client.put_object(Bucket=scratch, Key="a", Body=b"1")
        root = tmp_path / "root"
        gone = run_module(drill_scratch, capsys, dict(base, state="absent", bucket_map=made["bucket_map"],
                                                      root=str(root), name="20260216_093000",
                                                      record={"status": "passed", "rto_seconds": 1.5}))
        assert gone["changed"] and gone["removed"]["buckets"] == [scratch] and client.list_buckets()["Buckets"] == []
        again = run_module(drill_scratch, capsys, dict(base, state="absent", bucket_map=made["bucket_map"]))
        assert not again["changed"]
    record = json.loads((root / ".status" / "20260216_093000.drill.json").read_text())
    assert record["status"] == "passed" and record["scratch_removed"] is True and "drilled_at" in record
    assert oct(os.stat(root / ".status" / "20260216_093000.drill.json").st_mode & 0o777) == "0o600"
    assert SECRET not in json.dumps([planned, made, gone])


def test_drill_scratch_when_earlier_drill_interrupted_then_next_one_removes_its_leftover(capsys, monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    base = {"owner": "h1", "components": ["minio"], "access_key": "k", "secret_key": SECRET, "buckets": ["rat"]}
    with mock_aws():
        client = s3.make_client(s3.Endpoint(None, "k", SECRET))
        first = run_module(drill_scratch, capsys, base)
        other = run_module(drill_scratch, capsys, dict(base, owner="h2"))
        second = run_module(drill_scratch, capsys, base)
        assert second["leftovers"]["buckets"] == [first["bucket_map"]["rat"]]
        left = sorted(b["Name"] for b in client.list_buckets()["Buckets"])
        assert left == sorted([other["bucket_map"]["rat"], second["bucket_map"]["rat"]])


def test_drill_scratch_when_failing_half_way_then_returns_what_it_made_for_removal(capsys, monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    base = {"owner": "h1", "components": ["minio"], "access_key": "k", "secret_key": SECRET}
    real = s3.put_bytes
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise s3.RatBackupError("writing failed (SlowDown)", error_code="SlowDown")
        return real(*args, **kwargs)

    with mock_aws():
        client = s3.make_client(s3.Endpoint(None, "k", SECRET))
        monkeypatch.setattr(s3, "put_bytes", second_fails)
        failed = run_module(drill_scratch, capsys, dict(base, buckets=["a", "b"]))
        assert failed["failed"] and "SlowDown" in failed["msg"]
        made = sorted(b["Name"] for b in client.list_buckets()["Buckets"])
        assert sorted(failed["bucket_map"].values()) == made and len(made) == 2
        gone = run_module(drill_scratch, capsys, dict(base, state="absent", bucket_map=failed["bucket_map"]))
        assert sorted(gone["removed"]["buckets"]) == made and client.list_buckets()["Buckets"] == []


def test_drill_report_when_written_then_three_files_and_rerun_unchanged(capsys, tmp_path):
    args = {"results": {"a": {"status": "passed", "rto_seconds": 1.0}, "b": {"status": "failed", "reason": "stale"}},
            "hosts": ["a", "b", "c"], "dest": str(tmp_path / "report")}
    first = run_module(drill_report, capsys, args)
    assert first["changed"] and first["summary"]["failed_hosts"] == ["b", "c"]
    assert sorted(os.listdir(tmp_path / "report")) == ["restore-drill.json", "restore-drill.md", "restore-drill.xml"]
    assert not run_module(drill_report, capsys, args)["changed"]


def test_drill_report_when_result_not_a_dict_or_basename_a_path_then_fails_naming_it(capsys, tmp_path):
    result = run_module(drill_report, capsys, {"results": {"a": "passed"}, "dest": str(tmp_path)})
    assert result["failed"] and "results of a are not dicts" in result["msg"]
    result = run_module(drill_report, capsys, {"results": {}, "dest": str(tmp_path), "basename": "../x"})
    assert result["failed"] and "basename='../x'" in result["msg"]
    assert os.listdir(tmp_path) == []
