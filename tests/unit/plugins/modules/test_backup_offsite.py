# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import tempfile

import pytest
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.module_utils import offsite
from ansible_collections.rat.backup.plugins.modules import backup_offsite
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


@pytest.mark.parametrize("value, wanted", [("missing", "missing"), (None, "missing"), ([], "missing"),
                                           ("latest", "latest"), (["20260101_000000"], ["20260101_000000"]),
                                           (20260101000000, ["20260101000000"])])
def test_selection_when_value_then_normalised(value, wanted):
    assert offsite.selection(value) == wanted


def test_selection_when_dict_then_error_names_variable():
    with pytest.raises(RatBackupError) as err:
        offsite.selection({"a": 1})
    assert "rat_offsite_backups" in err.value.msg


def test_make_crypt_when_recipients_without_encrypt_then_refused():
    params = {"state": "shipped", "encrypt": False, "recipients": ["age1x"], "age_bin": None}
    with pytest.raises(RatBackupError) as err:
        offsite.make_crypt(params)
    assert "rat_offsite_encrypt" in err.value.msg


def test_make_crypt_when_plain_shipping_then_none():
    assert offsite.make_crypt({"state": "shipped", "encrypt": False, "recipients": [], "age_bin": None}) is None


def test_argument_spec_when_built_then_secrets_are_no_log():
    spec = backup_offsite.argument_spec()
    assert spec["s3_secret_key"]["no_log"] and spec["identity"]["no_log"]
    assert not spec["recipients"].get("no_log")


def test_main_when_fetch_refused_by_the_lock_then_the_identity_text_is_nowhere_on_disk(capsys, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    secret = "AGE-SECRET-KEY-1" + "Q" * 58
    root = str(tmp_path / "root")
    holder = offsite.lock(root)
    try:
        with patch_module_args({"state": "fetched", "root": root, "host": "h", "target": "s3", "s3_bucket": "b",
                                "s3_endpoint": "http://127.0.0.1:9", "identity": secret, "age_bin": "/bin/true"}):
            with pytest.raises(SystemExit):
                backup_offsite.main()
    finally:
        os.close(holder)
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "another off-site run" in result["msg"]
    written = [os.path.join(d, f) for d, _dirs, names in os.walk(str(tmp_path)) for f in names]
    assert [p for p in written if secret.encode() in open(p, "rb").read()] == []
