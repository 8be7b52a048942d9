# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Makefile's lab commands as a user meets them: what they print and how make ends."""

from __future__ import annotations

import os
import subprocess

REPO = os.path.join(os.path.dirname(__file__), "..", "..", "..")


def make(*args, env=None):
    return subprocess.run(["make", "--no-print-directory", "-C", REPO] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=60, check=False)


def test_lab_status_when_lab_down_then_says_how_to_start_it_and_make_succeeds(tmp_path):
    # An empty state directory: no service the lab recorded is running.
    done = make("lab-status", env={"RAT_LAB_STATE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "postgresql   down" in done.stdout
    assert "make lab-up starts it" in done.stdout
    assert "Error" not in done.stderr


def test_restore_when_no_backup_named_then_the_hint_is_the_make_form():
    done = make("-n", "restore")
    assert done.returncode == 0, done.stderr
    assert "rat_restore_usage" in done.stdout and "make restore BACKUP=<name> (or BACKUP=latest)" in done.stdout
