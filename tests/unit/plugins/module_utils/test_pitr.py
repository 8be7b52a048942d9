# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Barman side of point-in-time recovery: configuration, retention, backup choice, window, SQL plan."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils._pitr import barman, recovery, server, setup, status, verify
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def test_retention_policy_when_periods_then_farthest_reach_in_days():
    assert barman.retention_policy({"keep_hourly": 120}) == "RECOVERY WINDOW OF 5 DAYS"
    assert barman.retention_policy({"keep_hourly": 168, "keep_weekly": 12}) == "RECOVERY WINDOW OF 84 DAYS"
    assert barman.retention_policy({"keep_daily": 7}) == "RECOVERY WINDOW OF 7 DAYS"
    assert barman.retention_policy({"keep_within": "36H"}) == "RECOVERY WINDOW OF 2 DAYS"


def test_retention_policy_when_keep_last_alone_then_redundancy():
    assert barman.retention_policy({"keep_last": 3}) == "REDUNDANCY 3"


def test_retention_policy_when_empty_then_keeps_all_and_bad_key_named():
    assert barman.retention_policy({}) is None
    with pytest.raises(RatBackupError, match="retention has unknown key"):
        barman.retention_policy({"keep_dayly": 3})


def test_render_config_when_streaming_then_no_password_and_slot():
    text = barman.render_config("/var/lib/b", "rat", "127.0.0.1", 5432, "rat_barman", "/etc/b.pgpass", "s1",
                                "/usr/lib/postgresql/15/bin", "REDUNDANCY 3")
    assert "streaming_archiver = on" in text and "slot_name = s1" in text
    assert "conninfo = host=127.0.0.1 port=5432 user=rat_barman passfile=/etc/b.pgpass dbname=postgres" in text
    assert "streaming_conninfo = host=127.0.0.1 port=5432 user=rat_barman passfile=/etc/b.pgpass\n" in text
    assert "retention_policy = REDUNDANCY 3" in text and "immediate_checkpoint = true" in text


def test_pgpass_line_when_colon_and_backslash_then_escaped():
    assert barman.pgpass_line("h", 5432, "u", "a:b\\c") == "h:5432:*:u:a\\:b\\\\c\n"


LISTING = [{"backup_id": "B2", "end_time_timestamp": str(int(NOW.timestamp()) - 600), "status": "DONE"},
           {"backup_id": "B1", "end_time_timestamp": str(int(NOW.timestamp()) - 3600), "status": "DONE"},
           {"backup_id": "B0", "end_time_timestamp": "0", "status": "FAILED"}]


def test_backup_for_when_time_between_backups_then_older_one():
    backups = barman.done_backups(LISTING)
    assert [b["id"] for b in backups] == ["B1", "B2"]
    assert barman.backup_for(backups, NOW - datetime.timedelta(seconds=900))["id"] == "B1"
    assert barman.backup_for(backups, NOW)["id"] == "B2"


def test_backup_for_when_time_before_first_backup_end_then_refused_naming_it():
    backups = barman.done_backups(LISTING)
    # The end is rounded up: a time inside the backup's last second is before it.
    with pytest.raises(RatBackupError, match="no base backup ended before .*the oldest ends"):
        barman.backup_for(backups, NOW - datetime.timedelta(seconds=3600))
    with pytest.raises(RatBackupError, match="there is none yet"):
        barman.backup_for([], NOW)


def test_window_when_streaming_without_lag_then_latest_is_now():
    backups = barman.done_backups(LISTING)
    archived = ("000000010000000000000013", NOW - datetime.timedelta(seconds=30))
    found = barman.window(backups, archived, True, 100, NOW)
    assert found["earliest"] == backups[0]["end"] and found["latest"] == NOW
    stopped = barman.window(backups, archived, False, None, NOW)
    assert stopped["latest"] == archived[1]
    behind = barman.window(backups, archived, True, barman.SEGMENT_BYTES, NOW)
    assert behind["latest"] == archived[1]


def test_stream_lag_when_receiver_listed_then_write_lag():
    answer = {"wal_streamers": [{"application_name": "other", "write_lsn_diff_bytes": -5},
                                {"application_name": "barman_receive_wal", "write_lsn_diff_bytes": -616,
                                 "flush_lsn_diff_bytes": -12000000}]}
    assert barman.stream_lag(answer) == (True, 616)
    assert barman.stream_lag({"wal_streamers": []}) == (False, None)


def test_last_archived_when_catalog_then_newest_line(tmp_path):
    path = tmp_path / "xlog.db"
    assert barman.last_archived(str(path)) is None
    path.write_text("000000010000000000000012\t16777216\t1796600935.99\tNone\n"
                    "000000010000000000000013\t16777216\t1796600944.61\tNone\n")
    name, when = barman.last_archived(str(path))
    assert name == "000000010000000000000013" and when.timestamp() == pytest.approx(1796600944.61)


class FakeSession:
    """Answers the plan's yes/no questions from a set of true facts (SQL substrings)."""

    def __init__(self, true=()):
        self.true = true
        self.sent = []

    def query(self, sql):
        self.sent.append(sql)
        return ["t" if any(fact in sql for fact in self.true) else "f"]


def test_plan_when_nothing_exists_then_role_rights_slot_in_order():
    changes = server.plan(FakeSession(), "rat_barman", "s1", 150004)
    sql = [s for _d, s in changes]
    assert sql[0] == 'CREATE ROLE "rat_barman" LOGIN REPLICATION;'
    assert 'GRANT pg_checkpoint TO "rat_barman";' in sql
    assert 'GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO "rat_barman";' in sql
    assert sql[-1] == "SELECT pg_create_physical_replication_slot('s1');"


def test_plan_when_all_present_then_nothing():
    session = FakeSession(true=("pg_roles WHERE", "pg_has_role", "has_function_privilege", "pg_replication_slots"))
    assert server.plan(session, "rat_barman", "s1", 150004) == []


def test_plan_when_postgres_14_then_old_function_names_and_no_pg_checkpoint():
    sql = [s for _d, s in server.plan(FakeSession(), "u", "s", 140010)]
    assert 'GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean, boolean) TO "u";' in sql
    assert not any("pg_checkpoint" in s for s in sql)


def test_settings_problems_when_minimal_then_each_named():
    class Settings:
        def query(self, sql):
            return ["minimal|0|0"]
    problems = server.settings_problems(Settings())
    assert len(problems) == 3 and "wal_level is minimal" in problems[0]


def test_ident_and_literal_when_quotes_then_doubled():
    assert server.ident('a"b') == '"a""b"' and server.literal("o'k") == "'o''k'"


class FakeEngine:
    server = "rat"

    def __init__(self, wals, archive_after):
        self.wals = wals
        self.archive_after = archive_after
        self.crons = 0

    def server_setting(self, name):
        return {"conninfo": "host=x", "wals_directory": self.wals}[name]

    def cron(self):
        self.crons += 1
        if self.crons == self.archive_after:
            os.makedirs(os.path.join(self.wals, "0000000100000000"))
            open(os.path.join(self.wals, "0000000100000000", "000000010000000000000013"), "w").close()


def test_switch_and_archive_when_archived_on_third_cron_then_segment(tmp_path):
    engine = FakeEngine(str(tmp_path), 3)
    calls = []

    def run(argv, env=None):
        calls.append(argv)
        return 0, "000000010000000000000013\n0/14000028\n", ""
    assert recovery.switch_and_archive(run, engine, "/bin", 10, sleep=lambda s: None) == "000000010000000000000013"
    assert engine.crons == 3
    # The switch, then a restore point: the first record of the next segment, so Barman archives the switched one
    # on the next cron instead of after an idle server's next WAL record (up to 15 s).
    switch, restore_point = calls[0][-1].split("; ")
    assert switch == "SELECT pg_walfile_name(pg_switch_wal())"
    assert restore_point.startswith("SELECT pg_create_restore_point('rat.backup: ")
    assert calls[0][calls[0].index("-d") + 1] == "host=x"


def test_switch_and_archive_when_never_archived_then_timeout_names_segment(tmp_path):
    ticks = iter(range(100))
    with pytest.raises(RatBackupError, match="000000010000000000000013 was not archived within 3 s"):
        recovery.switch_and_archive(lambda argv, env=None: (0, "000000010000000000000013", ""),
                                    FakeEngine(str(tmp_path), 99), "/bin", 3, sleep=lambda s: None,
                                    clock=lambda: next(ticks))


def test_plan_when_future_or_used_scratch_then_refused(tmp_path):
    class Engine:
        def backups(self):
            return barman.done_backups(LISTING)

        def server_setting(self, name):
            return {"basebackups_directory": str(tmp_path / "base")}[name]
    (tmp_path / "base" / "B2").mkdir(parents=True)
    (tmp_path / "base" / "B2" / "backup.info").write_text("version=150010\n")
    with pytest.raises(RatBackupError, match="is in the future"):
        recovery.plan(Engine(), NOW + datetime.timedelta(seconds=1), str(tmp_path / "s"), now=lambda: NOW)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("")
    with pytest.raises(RatBackupError, match="exists and is not empty"):
        recovery.plan(Engine(), NOW, str(tmp_path / "s"), now=lambda: NOW)
    chosen = recovery.plan(Engine(), NOW, str(tmp_path / "t"), now=lambda: NOW)
    assert chosen["id"] == "B2" and chosen["major"] == "15"


def test_pg_ctl_argv_when_start_then_own_port_socket_and_no_archiving():
    argv = recovery.pg_ctl_argv("/pg/bin", "postgres", "/s", "start", 5999)
    assert argv[:4] == ["runuser", "-u", "postgres", "--"]
    options = argv[argv.index("-o") + 1]
    assert "-c port=5999" in options and "-c unix_socket_directories=/s" in options
    assert "-c archive_mode=off" in options and "-c listen_addresses=127.0.0.1" in options


def test_metrics_text_when_window_then_gauges():
    found = barman.window(barman.done_backups(LISTING), None, True, 0, NOW)
    text = status.metrics_text("h", found, NOW)
    assert 'rat_backup_pitr_streaming{host="h"} 1' in text
    assert f'rat_backup_pitr_latest_timestamp_seconds{{host="h"}} {NOW.timestamp():.3f}' in text
    assert 'rat_backup_pitr_wal_lag_bytes{host="h"} 0' in text


def test_barman_call_when_json_then_server_part_and_error_names_command():
    answers = {"list-backups": (0, json.dumps({"rat": LISTING}), "")}

    def run(argv, env=None):
        return answers.get(argv[5], (1, "", "ERROR: boom"))
    engine = barman.Barman(run, "/etc/b.conf", "rat")
    assert [b["id"] for b in engine.backups()] == ["B1", "B2"]
    with pytest.raises(RatBackupError, match="recover .* failed \\(rc 1\\): ERROR: boom"):
        engine.recover("B1", "/d", NOW)


def test_file_changes_when_same_then_nothing_and_written_0600(tmp_path):
    path = str(tmp_path / "etc" / "barman.conf")
    changed = setup.file_changes([(path, "a\n")])
    assert changed == [(path, "a\n")]
    setup.write_files(changed)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert setup.file_changes([(path, "a\n")]) == []


def test_wait_streaming_when_never_connected_then_failed_checks_and_hba_named():
    class Engine:
        def cron(self):
            pass

        def replication(self):
            return False, None

        def checks(self):
            return {"postgresql_streaming": {"status": "FAILED", "hint": "no pg_hba.conf entry"},
                    "wal_level": {"status": "OK", "hint": ""}}
    ticks = iter(range(100))
    with pytest.raises(RatBackupError, match="did not start within 2 s.*postgresql_streaming.*host replication") as err:
        setup.wait_streaming(Engine(), 2, sleep=lambda s: None, clock=lambda: next(ticks))
    assert "wal_level" not in err.value.msg


STOPPED_LOG = """2026-12-06 14:03:09.100 UTC [811] LOG:  starting point-in-time recovery to 2026-12-06 14:03:07+00
2026-12-06 14:03:09.300 UTC [811] LOG:  recovery stopping before commit of transaction 745, time 2026-12-06 14:03:08.104113+00
2026-12-06 14:03:09.301 UTC [811] LOG:  pausing at the end of recovery
"""


def test_next_commit_when_recovery_stopped_before_a_commit_then_its_time_in_utc():
    assert recovery.next_commit(STOPPED_LOG) == "2026-12-06T14:03:08.104113Z"
    assert recovery.next_commit(STOPPED_LOG.replace("+00", "+01")) == "2026-12-06T13:03:08.104113Z"


def test_next_commit_when_stopped_before_an_abort_or_ran_to_the_end_then_none():
    assert recovery.next_commit(STOPPED_LOG.replace("before commit", "before abort")) is None
    assert recovery.next_commit("LOG:  redo done at 0/3000148\n") is None
    assert recovery.next_commit("") is None


def test_read_log_and_tail_when_no_log_then_empty_and_said(tmp_path):
    assert recovery.read_log(str(tmp_path)) == ""
    assert recovery.log_tail(str(tmp_path)) == "(no server log)"
    (tmp_path / "postgresql.log").write_text(STOPPED_LOG)
    assert recovery.next_commit(recovery.read_log(str(tmp_path))) == "2026-12-06T14:03:08.104113Z"


def test_scratch_settings_when_started_then_log_in_english_on_stderr():
    options = recovery.pg_ctl_argv("/pg/bin", "postgres", "/s", "start", 5999)[-2]
    assert "-c logging_collector=off" in options and "-c log_destination=stderr" in options
    assert "-c lc_messages=C" in options


AS_OF = datetime.datetime(2026, 12, 6, 14, 3, 7, tzinfo=datetime.timezone.utc)


def test_recovery_problems_when_reached_before_and_next_after_then_none():
    second = datetime.timedelta(seconds=1)
    assert verify.recovery_problems(AS_OF, AS_OF - second, AS_OF + second) == []
    assert verify.recovery_problems(AS_OF, AS_OF, None) == []
    assert verify.recovery_problems(AS_OF, None, None) == []


def test_recovery_problems_when_past_the_time_or_stopped_too_early_then_both_said():
    second = datetime.timedelta(seconds=1)
    found = verify.recovery_problems(AS_OF, AS_OF + second, AS_OF)
    assert len(found) == 2
    assert "committed at 2026-12-06T14:03:08Z, after 2026-12-06T14:03:07Z" in found[0]
    assert "stopped before a commit at 2026-12-06T14:03:07Z, not after" in found[1]


def test_catalog_problems_when_metadata_missing_unmapped_or_not_s3_then_each_named():
    entries = [
        {"catalog_name": "rat", "namespace": "ns", "name": "ok", "metadata_location": "s3://lake/ns/ok/metadata/v3.json"},
        {"catalog_name": "rat", "namespace": "ns", "name": "gone", "metadata_location": "s3a://lake/ns/gone/m/v9.json"},
        {"catalog_name": "rat", "namespace": "ns", "name": "other", "metadata_location": "s3://other/x/m.json"},
        {"catalog_name": "rat", "namespace": "ns", "name": "local", "metadata_location": "/tmp/m.json"},
        {"catalog_name": "rat", "namespace": "ns", "name": "none", "metadata_location": None},
    ]
    asked = []

    def exists(bucket, key):
        asked.append((bucket, key))
        return key == "ns/ok/metadata/v3.json"
    found = verify.catalog_problems(entries, {"lake": "rat-drill-lake"}, exists)
    assert asked == [("rat-drill-lake", "ns/ok/metadata/v3.json"), ("rat-drill-lake", "ns/gone/m/v9.json")]
    assert len(found) == 3
    assert "ns.gone (rat) points at s3a://lake/ns/gone/m/v9.json, missing from the lake as of the time" in found[0]
    assert "in bucket other, which the drill did not copy" in found[1]
    assert "'/tmp/m.json' is not an s3:// location" in found[2]


def _replaying(lsns, finished="f|2026-12-06 11:59:58.5+00|0/9000000"):
    """A scratch server's answers: in recovery at each LSN of ``lsns`` in turn, then promoted."""
    answers = iter([f"t||{lsn}" for lsn in lsns] + [finished])

    def run(argv, env=None):
        return 0, next(answers), ""
    return run


def test_reached_when_replay_outlasts_wait_but_moves_then_recovery_point():
    # 200 polls (100 s of clock) of a replay that keeps moving: longer than the 60 s wait, never stalled.
    ticks = iter(range(1000))
    run = _replaying([f"0/{n:X}000" for n in range(1, 201)])
    assert recovery.reached(run, "/bin", 5999, "rat", "pw", "rat", "/s", wait=60, sleep=lambda s: None,
                            clock=lambda: next(ticks)) == "2026-12-06T11:59:58.500000Z"


def test_reached_when_replay_stalls_then_refused_naming_lsn():
    ticks = iter(range(1000))
    run = _replaying(["0/5000000"] * 100)
    with pytest.raises(RatBackupError, match=r"replay has not moved for 60 s \(at WAL 0/5000000\)"):
        recovery.reached(run, "/bin", 5999, "rat", "pw", "rat", "/s", wait=60, sleep=lambda s: None,
                         clock=lambda: next(ticks))


def test_laps_when_steps_then_seconds_each_in_order():
    ticks = iter([0.0, 1.5, 4.0, 4.25])
    laps = recovery.Laps(lambda: next(ticks))
    for step in ("plan", "copy", "start"):
        laps.lap(step)
    assert list(laps.seconds.items()) == [("plan", 1.5), ("copy", 2.5), ("start", 0.25)]
