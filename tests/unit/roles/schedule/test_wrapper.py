# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schedule role's wrapper, rendered from its template, against a stand-in ansible-playbook.

The stand-in records each call and ends as the test says, so exit codes, the lock, the pings and
"retention only after a successful backup" are checked in seconds; the integration target
schedule_cron runs the real thing under cron.
"""

from __future__ import annotations

import fcntl
import http.server
import os
import subprocess
import sys
import threading

import jinja2
import pytest
from ansible.plugins.filter.core import comment, quote, ternary

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "schedule", "templates",
                        "wrapper.sh.j2")
# One port of this project's block per pytest-xdist worker (gw0, gw1, ...).
PING_PORT = 20102 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)

STAND_IN = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../../calls"
case "$*" in
  *rat.backup.prune*) exit "$(cat "$(dirname "$0")/../../rc_prune" 2>/dev/null || echo 0)" ;;
  *) exit "$(cat "$(dirname "$0")/../../rc_backup" 2>/dev/null || echo 0)" ;;
esac
"""


@pytest.fixture(scope="module")
def pings():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", PING_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield seen
    server.shutdown()
    server.server_close()


def render(tmp_path, retention=True, timeout_minutes=5):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(comment=comment, quote=quote, ternary=ternary)
    with open(TEMPLATE, encoding="utf-8") as handle:
        text = env.from_string(handle.read()).render(
            ansible_managed="Ansible managed", _rat_schedule_venv=str(tmp_path / "venv"),
            _rat_schedule_inventory=str(tmp_path / "inventory.yml"), rat_schedule_log_file=str(tmp_path / "log"),
            _rat_schedule_ping_file=str(tmp_path / "ping-url"), rat_host_python=sys.executable,
            rat_host_home=str(tmp_path), _rat_schedule_lock=str(tmp_path / "run.lock"),
            rat_schedule_timeout_minutes=timeout_minutes, _rat_schedule_delay=0,
            _rat_schedule_retention={"keep_last": 2} if retention else {},
            _rat_schedule_collections=str(tmp_path / "collections"))
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(text)
    wrapper.chmod(0o700)
    return str(wrapper)


@pytest.fixture
def host(tmp_path, pings):
    """A set-up host: stand-in virtualenv, settings with the ping URL; returns a runner."""
    del pings[:]
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, str(tmp_path / "venv" / "bin" / "python"))
    playbook = tmp_path / "venv" / "bin" / "ansible-playbook"
    playbook.write_text(STAND_IN)
    playbook.chmod(0o700)
    (tmp_path / "inventory.yml").write_text("all:\n  hosts: {h: {}}\n")
    (tmp_path / "ping-url").write_text("http://127.0.0.1:%d/check\n" % PING_PORT)

    def run(**options):
        wrapper = render(tmp_path, **options)
        # As cron starts a job: almost no environment.
        done = subprocess.run([wrapper], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=False,
                              capture_output=True, timeout=60)
        calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
        return done.returncode, calls, (tmp_path / "log").read_text()
    return run


def test_wrapper_when_all_succeeds_then_backup_then_retention_and_success_ping(host, tmp_path, pings):
    rc, calls, log = host()
    assert rc == 0
    inventory = tmp_path / "inventory.yml"
    assert calls == ["-i %s rat.backup.backup -e {\"rat_backup_retention\": {}}" % inventory,
                     "-i %s rat.backup.prune" % inventory]
    assert "finished in" in log and "(exit 0)" in log
    assert pings == ["/check/start", "/check"]


def test_wrapper_when_backup_fails_then_no_retention_and_fail_ping(host, tmp_path, pings):
    (tmp_path / "rc_backup").write_text("2")
    rc, calls, log = host()
    assert rc == 2
    assert len(calls) == 1 and "rat.backup.backup" in calls[0]
    assert "backup failed (ansible-playbook exit 2, see above); nothing deleted (exit 2)" in log
    assert pings == ["/check/start", "/check/fail"]


def test_wrapper_when_retention_fails_then_exit_3(host, tmp_path, pings):
    (tmp_path / "rc_prune").write_text("2")
    rc, calls, log = host()
    assert (rc, len(calls)) == (3, 2)
    assert "retention failed" in log and pings[-1] == "/check/fail"


def test_wrapper_when_no_policy_then_backup_only(host):
    rc, calls, _log = host(retention=False)
    assert rc == 0 and len(calls) == 1


def test_wrapper_when_previous_run_holds_lock_then_skipped_and_logged(host, tmp_path, pings):
    with open(str(tmp_path / "run.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (tmp_path / "run.lock.pid").write_text("4242\n")
        rc, calls, log = host()
    assert (rc, calls, pings) == (75, [], [])
    assert "skipped: the previous run (pid 4242) is still running (exit 75)" in log


def test_wrapper_when_no_time_left_then_timed_out(host, pings):
    rc, calls, log = host(timeout_minutes=0)
    assert (rc, calls) == (124, [])
    assert "timed out" in log and pings == ["/check/start", "/check/fail"]


def test_wrapper_when_not_set_up_then_exit_78_and_fail_ping(host, tmp_path, pings):
    (tmp_path / "inventory.yml").unlink()
    rc, calls, log = host()
    assert (rc, calls) == (78, [])
    assert "not set up" in log and pings == ["/check/fail"]


def test_wrapper_when_virtualenv_broken_then_exit_2_and_pings_without_it(host, tmp_path, pings):
    # ansible-playbook as pip installs it (a script run by the virtualenv's python), and that python
    # removed: nothing of the virtualenv can run, monitoring still hears of the start and the failure.
    playbook = tmp_path / "venv" / "bin" / "ansible-playbook"
    playbook.write_text("#!%s\nraise SystemExit(0)\n" % (tmp_path / "venv" / "bin" / "python"))
    (tmp_path / "venv" / "bin" / "python").unlink()
    rc, _calls, log = host()
    assert rc == 2 and "backup failed" in log
    assert pings == ["/check/start", "/check/fail"]


def test_wrapper_when_ping_endpoint_down_then_run_still_succeeds(host, tmp_path):
    (tmp_path / "ping-url").write_text("http://127.0.0.1:20109/x\n")
    rc, _calls, log = host()
    assert rc == 0 and "monitoring ping /start failed" in log
