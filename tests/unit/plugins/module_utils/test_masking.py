# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.rat.backup.plugins.module_utils import masking
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with

LONG = "81cd927006189f0814da6f59"


@pytest.mark.parametrize("text,masked", [
    ("rat", "********"),
    ("PGPASSWORD=rat", "PGPASSWORD=********"),
    ("--password=rat --user x", "--password=******** --user x"),
    ("postgresql://u:rat@db/x", "postgresql://u:********@db/x"),
    ("password 'rat' rejected", "password '********' rejected"),
    ('password "rat"', 'password "********"'),
    ("password=rat&sslmode=require", "password=********&sslmode=require"),
])
def test_mask_text_when_short_secret_stands_as_value_then_masked(text, masked):
    assert masking.mask_text(text, ["rat"]) == masked


@pytest.mark.parametrize("text", [
    "the administrator command failed",
    "restore of rat.dump into rat_restore",
    "--username=rats",
    "'ratio'",
])
def test_mask_text_when_short_secret_is_part_of_word_then_untouched(text):
    assert masking.mask_text(text, ["rat"]) == text


def test_mask_text_when_long_secret_anywhere_then_masked():
    assert masking.mask_text("x%sy and %s" % (LONG, LONG), [LONG]) == "x********y and ********"


def test_mask_argv_when_secret_inside_url_then_masked_and_empty_secrets_ignored():
    assert masking.mask_argv(["a", "--dbname=postgresql://rat:s3cr3t-pw@h/db"], ["s3cr3t-pw", None, ""]) == \
        ["a", "--dbname=postgresql://rat:********@h/db"]


def test_mask_data_when_nested_then_keys_and_values_masked():
    data = {"msg": "PGPASSWORD=rat administrator", "cmd": ["rat", "x"], "n": 3, "rat": {"k": ("rat",)}}
    assert masking.mask_data(data, ["rat"]) == {
        "msg": "PGPASSWORD=******** administrator", "cmd": ["********", "x"], "n": 3, "********": {"k": ["********"]}}


class FakeModule:
    def __init__(self, password, exc=None, result=None):
        self.argument_spec = {"password": {"no_log": True}, "user": {}, "secret_key": {"no_log": True}}
        self.params = {"password": password, "user": "administrator", "secret_key": LONG}
        self.no_log_values = {password, LONG}
        self.warnings = []
        self.exc = exc
        self.result = result or {}
        self.ended = None

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **kwargs):
        self.ended = ("fail", kwargs)
        raise SystemExit(1)

    def exit_json(self, **kwargs):
        self.ended = ("exit", kwargs)
        raise SystemExit(0)


def run_module(module):
    def run(_module):
        if module.exc:
            raise module.exc
        return module.result
    with pytest.raises(SystemExit):
        exit_with(module, run)
    return module.ended


def test_exit_with_when_password_short_then_warned_masked_as_value_and_words_intact():
    module = FakeModule("rat", exc=RatBackupError("administrator command failed: password=rat"))
    kind, result = run_module(module)
    assert kind == "fail"
    assert result["msg"] == "administrator command failed: password=********"
    assert result["invocation"]["module_args"] == {
        "password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "user": "administrator",
        "secret_key": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert module.no_log_values == {LONG}
    assert len(module.warnings) == 1 and "password is shorter than 12 characters" in module.warnings[0]
    assert "rat" not in module.warnings[0].replace("characters", "")


def test_exit_with_when_secrets_long_then_left_to_ansible():
    module = FakeModule("a-long-enough-password", result={"x": 1})
    kind, result = run_module(module)
    assert (kind, result) == ("exit", {"x": 1})
    assert module.no_log_values == {"a-long-enough-password", LONG}
    assert module.warnings == []


def test_exit_with_when_error_names_a_path_then_no_file_details_key():
    module = FakeModule("a-long-enough-password", exc=RatBackupError("refused /etc/hostname", path="/etc/hostname",
                                                                     dest="/etc/hosts", other=1))
    kind, result = run_module(module)
    assert kind == "fail"
    assert result == {"msg": "refused /etc/hostname", "error_path": "/etc/hostname", "error_dest": "/etc/hosts",
                      "other": 1}
