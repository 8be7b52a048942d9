# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_hba.conf's replication line (_pitr/hba.py) and the major-version match of recovery (_pitr/recovery.py)."""

from __future__ import annotations

import base64
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils._pitr import barman, hba, recovery
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# The official postgres image's pg_hba.conf (initdb's lines, then the entrypoint's host all all all), in
# pg_hba_file_rules' terms as psql prints them.
OFFICIAL = ("local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
            "local replication all trust\n"
            "host replication all 127.0.0.1/32 trust\n"
            "host replication all ::1/128 trust\n"
            "host all all all scram-sha-256\n")
OFFICIAL_RULES = ["1|local|all|all|||trust|",
                  "2|host|all|all|127.0.0.1|255.255.255.255|trust|",
                  "3|host|all|all|::1|ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff|trust|",
                  "4|local|replication|all|||trust|",
                  "5|host|replication|all|127.0.0.1|255.255.255.255|trust|",
                  "6|host|replication|all|::1|ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff|trust|",
                  "7|host|all|all|all||scram-sha-256|"]


class HbaSession:
    """Answers the queries hba.plan/apply send from a file and its parsed rules; records what was sent."""

    def __init__(self, text, rules, ssl="off", encryption="scram-sha-256"):
        self.files = {"/data/pg_hba.conf": text.encode()}
        self.rules = rules
        self.ssl = ssl
        self.encryption = encryption
        self.sent = []

    def query(self, sql):
        self.sent.append(sql)
        if "pg_hba_file_rules" in sql:
            return self.rules
        if "hba_file" in sql and "pg_read" not in sql:
            return ["/data/pg_hba.conf"]
        if "'ssl'" in sql:
            return [self.ssl]
        if "password_encryption" in sql:
            return [self.encryption]
        if "pg_read_binary_file" in sql:
            text = base64.b64encode(self.files["/data/pg_hba.conf"]).decode()
            return [text[i:i + 76] for i in range(0, len(text), 76)]
        return []


class Runner:
    """The container: its own copy of the file (the same as the server's unless told otherwise)."""

    container = "rat-postgres"
    in_container = True

    def __init__(self, session, other=None):
        self.session = session
        self.other = other
        self.argv = []

    def run(self, argv, env=None):
        self.argv.append(argv)
        if argv[0] == "cat":
            return 0, self.other or self.session.files[argv[1]], ""
        assert argv[:4] == hba.APPEND
        self.session.files[argv[-1]] += argv[-2].encode()
        return 0, b"", ""


def test_plan_when_official_image_over_bridge_then_line_for_gateway_added():
    session = HbaSession(OFFICIAL, OFFICIAL_RULES)
    change = hba.plan(session, "rat_barman", {"rat_barman"}, "172.17.0.1", True)
    assert change["line"] == "host    replication     rat_barman     172.17.0.1/32     scram-sha-256"
    assert change["after"] == OFFICIAL + hba.MARK + "\n" + change["line"] + "\n"
    assert hba.diff(change)["before"] == OFFICIAL and hba.diff(change)["before_header"] == "/data/pg_hba.conf"


def test_plan_when_loopback_replication_line_then_nothing():
    # --network host: the connection comes from 127.0.0.1, which line 5 lets in.
    assert hba.plan(HbaSession(OFFICIAL, OFFICIAL_RULES), "rat_barman", set(), "127.0.0.1", True) is None


def test_plan_when_not_allowed_to_edit_then_refused_naming_exact_line():
    with pytest.raises(RatBackupError, match="add the line 'host    replication     rat_barman     172.17.0.1/32     "
                                             "scram-sha-256' and run SELECT pg_reload_conf"):
        hba.plan(HbaSession(OFFICIAL, OFFICIAL_RULES), "rat_barman", set(), "172.17.0.1", False)


def test_plan_when_first_match_rejects_then_refused_naming_that_line():
    text = "host replication all 10.0.0.0/8 reject\nhost replication all all scram-sha-256\n"
    rules = ["1|host|replication|all|10.0.0.0|255.0.0.0|reject|", "2|host|replication|all|all||scram-sha-256|"]
    with pytest.raises(RatBackupError, match=r"line 1 \(host replication all 10.0.0.0/8 reject\) .* method reject"):
        hba.plan(HbaSession(text, rules), "u", set(), "10.1.2.3", True)
    # From another address the second line decides: nothing to add.
    assert hba.plan(HbaSession(text, rules), "u", set(), "192.168.1.2", True) is None


def test_first_match_when_user_group_ssl_and_ipv6_then_as_postgresql():
    rules = hba.parse_rules(["1|hostssl|replication|all|all||scram-sha-256|",
                             "2|host|replication|+streamers|all||md5|",
                             "3|host|replication,all|other|all||trust|",
                             "4|host|replication|u|fd00::|ffff:ffff::|password|"])
    assert hba.first_match(rules, "u", {"u"}, "10.0.0.1", ssl=True)["line"] == 1
    assert hba.first_match(rules, "u", {"u", "streamers"}, "10.0.0.1", ssl=False)["line"] == 2
    assert hba.first_match(rules, "u", {"u"}, "fd00:0:1::5", ssl=False)["line"] == 4
    assert hba.first_match(rules, "u", {"u"}, "10.0.0.1", ssl=False) is None
    # "all" in the database column never covers replication connections.
    assert hba.first_match(hba.parse_rules(OFFICIAL_RULES), "u", {"u"}, "172.17.0.1", ssl=False) is None


def test_plan_when_file_has_error_then_refused_before_anything():
    rules = OFFICIAL_RULES + ["8|host|replication|u|||| invalid IP address \"x\""]
    with pytest.raises(RatBackupError, match="line 8 has an error"):
        hba.plan(HbaSession(OFFICIAL, rules), "u", set(), "172.17.0.1", True)


def test_plan_when_no_final_newline_and_md5_then_newline_kept_and_md5():
    change = hba.plan(HbaSession("host all all all md5", ["1|host|all|all|all||md5|"], encryption="md5"),
                      "u", set(), "172.17.0.1", True)
    assert change["after"].startswith("host all all all md5\n" + hba.MARK) and change["line"].endswith(" md5")


def test_apply_when_same_file_then_appended_then_reloaded():
    session = HbaSession(OFFICIAL, OFFICIAL_RULES)
    change = hba.plan(session, "u", set(), "172.17.0.1", True)
    runner = Runner(session)
    hba.apply(session, runner, change)
    assert session.files["/data/pg_hba.conf"].decode() == change["after"]
    assert session.sent[-1] == "SELECT pg_reload_conf();"
    assert runner.argv[1][-1] == "/data/pg_hba.conf"


def test_apply_when_runner_sees_another_file_then_refused_untouched():
    session = HbaSession(OFFICIAL, OFFICIAL_RULES)
    change = hba.plan(session, "u", set(), "172.17.0.1", True)
    runner = Runner(session, other=b"local all all peer\n")
    with pytest.raises(RatBackupError, match="is not the file the server reads"):
        hba.apply(session, runner, change)
    assert session.files["/data/pg_hba.conf"].decode() == OFFICIAL and len(runner.argv) == 1
    assert "SELECT pg_reload_conf();" not in session.sent


def _programs(tmp_path, major):
    bin_dir = tmp_path / "pg" / major / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("postgres", "pg_ctl", "pg_dump"):
        (bin_dir / name).write_text("")
        os.chmod(bin_dir / name, 0o755)
    return bin_dir


def test_server_programs_when_same_major_then_its_bin_dir(tmp_path):
    bin_dir = _programs(tmp_path, "15")

    def run(argv, env=None):
        return 0, "postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)\n", ""
    assert recovery.server_programs(run, "15", "x", root=str(tmp_path / "pg")) == str(bin_dir)


def test_server_programs_when_container_newer_then_refused_naming_both(tmp_path):
    _programs(tmp_path, "15")

    def run(argv, env=None):
        return 0, "postgres (PostgreSQL) 15.10\n", ""
    with pytest.raises(RatBackupError, match=r"PostgreSQL in container 'rat-postgres' is PostgreSQL 16 but no server "
                                             r"programs in .*/pg/16/bin \(this host's PostgreSQL installs: "
                                             r"PostgreSQL 15 \(.*/pg/15/bin\)\).*install postgresql-16"):
        recovery.server_programs(run, "16", "PostgreSQL in container 'rat-postgres'", root=str(tmp_path / "pg"))
    # An explicit directory of another major is named with the version its postgres reports.
    with pytest.raises(RatBackupError, match=r"is PostgreSQL 16 but .*/pg/15/bin is PostgreSQL 15"):
        recovery.server_programs(run, "16", "base backup B1", str(tmp_path / "pg" / "15" / "bin"))


def test_major_of_and_backup_version_when_backup_info_then_major(tmp_path):
    (tmp_path / "B1").mkdir()
    (tmp_path / "B1" / "backup.info").write_text("backup_id=B1\nversion=160004\nstatus=DONE\n")
    assert recovery.major_of(barman.backup_version(str(tmp_path), "B1")) == "16"
    assert recovery.major_of(90624) == "9.6"
    with pytest.raises(RatBackupError, match="cannot read .*B2/backup.info"):
        barman.backup_version(str(tmp_path), "B2")
