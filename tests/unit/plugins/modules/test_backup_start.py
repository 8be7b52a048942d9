# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment as PostgresDocs
from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment as S3Docs
from ansible_collections.rat.backup.plugins.module_utils import mirror, postgres
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout, lock
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.modules import backup_start

CLOCK = {"time": "2026-02-16T09:30:00.000000Z", "host_offset": [0.0, 0.001]}


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            backup_start.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def services(monkeypatch):
    """PostgreSQL and S3 as the checks see them; ``calls`` records what was asked, in order."""
    calls = []

    def pg_check(client):
        calls.append(("postgres", client.conn.host, client.conn.port))
        return {"server_version": "15.8", "client_version": "15.8", "clock": CLOCK}

    def check_source(client, endpoint, wanted, point, bound, fail_on_best_effort):
        calls.append(("s3", endpoint.name, wanted, point, bound, fail_on_best_effort))
        return {"buckets": {b: {"versioned": True} for b in wanted}, "clock_skew": [-0.1, 0.1] if point else None}

    monkeypatch.setattr(postgres, "check", pg_check)
    monkeypatch.setattr(mirror, "check_source", check_source)
    return calls


def args(root, **overrides):
    base = {"root": str(root), "host": "127.0.0.1", "port": 15432, "password": "a-long-enough-password",
            "src_endpoint": "http://127.0.0.1:19000", "src_access_key": "key",
            "src_secret_key": "a-long-enough-secret", "buckets": ["rat"]}
    base.update(overrides)
    return base


def test_argument_spec_when_compared_to_documentation_and_fragments_then_same_options():
    documented = set(yaml.safe_load(backup_start.DOCUMENTATION)["options"])
    documented |= set(yaml.safe_load(PostgresDocs.DOCUMENTATION)["options"])
    documented |= set(yaml.safe_load(S3Docs.SRC)["options"])
    assert set(backup_start.argument_spec()) == documented


def test_start_when_services_answer_then_checked_before_the_lock_and_backup_started(
        capsys, tmp_path, services, monkeypatch):
    held = []
    monkeypatch.setattr(mirror, "check_source", lambda *a: held.append(lock.lock_state(str(tmp_path))[0]) or {})
    result = run_module(capsys, args(tmp_path / "root"))
    assert held == [False], "S3 was checked while the lock was held"
    try:
        assert not result.get("failed"), result
        assert result["checked"]["postgres"]["clock"] == CLOCK
        assert os.path.isdir(result["partial"]) and lock.lock_state(str(tmp_path / "root"))[0]
        assert services == [("postgres", "127.0.0.1", 15432)]
    finally:
        lock.release(str(tmp_path / "root"), result["lock_token"])


def test_start_when_clock_skew_asked_then_postgres_clock_goes_to_the_s3_check(capsys, tmp_path, services):
    result = run_module(capsys, args(tmp_path, max_clock_skew=1.5, fail_on_best_effort=True))
    lock.release(str(tmp_path), result["lock_token"])
    assert services[1] == ("s3", "http://127.0.0.1:19000", ["rat"], CLOCK, 1.5, True)
    assert result["checked"]["s3"] == {"buckets": {"rat": {"versioned": True}}, "clock_skew": [-0.1, 0.1]}
    result = run_module(capsys, args(tmp_path, clock_skew=False))
    lock.release(str(tmp_path), result["lock_token"])
    assert services[3][3] is None and result["checked"]["s3"]["clock_skew"] is None


@pytest.mark.parametrize("failing", ["postgres", "s3"])
def test_start_when_a_service_fails_then_named_and_nothing_started(capsys, tmp_path, services, monkeypatch, failing):
    def refuse(*_args, **_kwargs):
        raise RatBackupError(f"{failing} does not answer", endpoint="somewhere")
    monkeypatch.setattr(postgres if failing == "postgres" else mirror,
                        "check" if failing == "postgres" else "check_source", refuse)
    result = run_module(capsys, args(tmp_path / "root"))
    assert result["failed"] and result["msg"] == f"{failing} does not answer"
    assert result["failed_check"] == failing and result["endpoint"] == "somewhere"
    assert layout.list_backups(str(tmp_path / "root"))["partial"] == []
    assert not lock.lock_state(str(tmp_path / "root"))[0]
    assert "a-long-enough-password" not in json.dumps(result) and "a-long-enough-secret" not in json.dumps(result)


def test_start_when_python_package_missing_then_refused_before_any_service_is_asked(capsys, tmp_path, services):
    result = run_module(capsys, args(tmp_path, python_modules=["no_such_module_4711"]))
    assert result["failed"] and "no_such_module_4711" in result["msg"] and "failed_check" not in result
    assert services == []


def test_start_when_check_mode_then_checks_run_and_nothing_is_created(capsys, tmp_path, services):
    result = run_module(capsys, dict(args(tmp_path / "root"), _ansible_check_mode=True))
    assert not result.get("failed"), result
    assert result["checked"]["s3"]["buckets"] == {"rat": {"versioned": True}}
    assert result["lock_token"] is None and not (tmp_path / "root").exists()
