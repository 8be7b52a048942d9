# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args
from moto import mock_aws

from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment
from ansible_collections.rat.backup.plugins.modules import bucket_mirror

SECRET = "do-not-print-me"


def documented_options():
    options = set(yaml.safe_load(bucket_mirror.DOCUMENTATION)["options"])
    for fragment in (ModuleDocFragment.DOCUMENTATION, ModuleDocFragment.SRC, ModuleDocFragment.DEST):
        options |= set(yaml.safe_load(fragment)["options"])
    return options


def test_argument_spec_when_compared_to_documentation_matches():
    assert set(bucket_mirror.argument_spec()) == documented_options()


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            bucket_mirror.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def s3_client(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        import boto3
        yield boto3.client("s3", region_name="us-east-1")


def test_main_when_downloading_returns_counts_and_never_the_secret(capsys, s3_client, tmp_path):
    s3_client.create_bucket(Bucket="rat")
    s3_client.put_object(Bucket="rat", Key="a.csv", Body=b"1,2\n")
    args = {"src": "s3://", "dest": str(tmp_path / "minio"), "manifest": str(tmp_path / "minio.json"),
            "src_access_key": "key", "src_secret_key": SECRET}
    result = run_module(capsys, args)
    assert (result["copied"], result["bytes"], result["unchanged"], result["changed"]) == (1, 4, 0, True)
    assert SECRET not in json.dumps(result)
    again = run_module(capsys, args)
    assert (again["copied"], again["changed"]) == (0, False)


def test_main_when_bucket_unknown_fails_with_endpoint_and_bucket(capsys, s3_client, tmp_path):
    result = run_module(capsys, {"src": "s3://ghost", "dest": str(tmp_path / "m"), "src_access_key": "key",
                                 "src_secret_key": SECRET, "src_endpoint": None})
    assert result["failed"] and "'ghost'" in result["msg"] and result["bucket"] == "ghost"
    assert SECRET not in json.dumps(result)
