# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import threading

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment as PostgresDocs
from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment as S3Docs
from ansible_collections.rat.backup.plugins.module_utils import postgres, s3_source
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout, lock
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.modules import backup_start

CLOCK = {"time": "2026-02-16T09:30:00.000000Z", "host_offset": [0.0, 0.001]}
# S3's clock 0.2 to 0.3 s ahead of this host's.
S3_CLOCK = {"offset": [0.2, 0.3]}


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

    def check_source(client, endpoint, wanted, clock, fail_on_best_effort, http=None):
        # Which path carries the requests: the fast transport for an endpoint given by URL with keys.
        calls.append(("s3", endpoint.name, wanted, clock, fail_on_best_effort, type(http).__name__))
        return {"buckets": {b: {"versioned": True} for b in wanted}, "clock": S3_CLOCK if clock else None}

    monkeypatch.setattr(postgres, "check", pg_check)
    monkeypatch.setattr(s3_source, "check", check_source)
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
    monkeypatch.setattr(s3_source, "check",
                        lambda *a: held.append(lock.lock_state(str(tmp_path))[0]) or {"buckets": {}, "clock": None})
    result = run_module(capsys, args(tmp_path / "root"))
    assert held == [False], "S3 was checked while the lock was held"
    try:
        assert not result.get("failed"), result
        assert result["checked"]["postgres"]["clock"] == CLOCK
        assert os.path.isdir(result["partial"]) and lock.lock_state(str(tmp_path / "root"))[0]
        assert services == [("postgres", "127.0.0.1", 15432)]
    finally:
        lock.release(str(tmp_path / "root"), result["lock_token"])


def test_start_when_clock_skew_asked_then_s3_clock_compared_with_postgres_clock(capsys, tmp_path, services):
    result = run_module(capsys, args(tmp_path, max_clock_skew=1.5, fail_on_best_effort=True))
    lock.release(str(tmp_path), result["lock_token"])
    asked_s3 = [call for call in services if call[0] == "s3"]
    assert asked_s3 == [("s3", "http://127.0.0.1:19000", ["rat"], True, True, "Transport")]
    # S3 minus PostgreSQL: [0.2 - 0.001, 0.3 - 0.0].
    assert result["checked"]["s3"] == {"buckets": {"rat": {"versioned": True}}, "clock_skew": [0.199, 0.3],
                                       "clock": S3_CLOCK}
    result = run_module(capsys, args(tmp_path, clock_skew=False))
    lock.release(str(tmp_path), result["lock_token"])
    assert [call for call in services if call[0] == "s3"][1][3] is False
    assert result["checked"]["s3"]["clock_skew"] is None
    result = run_module(capsys, args(tmp_path / "root", max_clock_skew=0.25))
    assert result["failed"] and result["failed_check"] == "s3" and "more than the allowed 0.25 s" in result["msg"]
    assert layout.list_backups(str(tmp_path / "root"))["partial"] == []


def test_start_when_s3_and_postgres_asked_then_at_the_same_time(capsys, tmp_path, services, monkeypatch):
    """S3's clock waits for its Date header's tick: PostgreSQL's check runs meanwhile, not after it."""
    s3_started, pg_done = threading.Event(), threading.Event()
    check_pg, check_s3 = postgres.check, s3_source.check

    def slow_s3(*a):
        s3_started.set()
        assert pg_done.wait(10), "PostgreSQL was not checked while S3 was"
        return check_s3(*a)

    def pg(client):
        assert s3_started.wait(10), "S3 was not checked while PostgreSQL was"
        try:
            return check_pg(client)
        finally:
            pg_done.set()
    monkeypatch.setattr(s3_source, "check", slow_s3)
    monkeypatch.setattr(postgres, "check", pg)
    result = run_module(capsys, args(tmp_path))
    lock.release(str(tmp_path), result["lock_token"])
    assert not result.get("failed"), result


@pytest.mark.parametrize("failing", ["postgres", "s3", "both"])
def test_start_when_a_service_fails_then_named_and_nothing_started(capsys, tmp_path, services, monkeypatch, failing):
    def refuse(*_args, **_kwargs):
        raise RatBackupError(f"{failing} does not answer", endpoint="somewhere")
    if failing in ("postgres", "both"):
        monkeypatch.setattr(postgres, "check", refuse)
    if failing in ("s3", "both"):
        monkeypatch.setattr(s3_source, "check", refuse)
    # Both failing: PostgreSQL's error is the one named (as when it was asked first).
    failing = "postgres" if failing == "both" else failing
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
