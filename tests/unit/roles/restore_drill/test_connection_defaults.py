# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drill reaches its servers the way the host's backup and restore do: drill_scratch's
module_defaults carry every connection option the backup and restore roles set."""

from __future__ import annotations

import os

import yaml

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles")


def _defaults(role, tasks_file):
    with open(os.path.join(ROLES, role, "tasks", tasks_file), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    return next(task["module_defaults"] for task in tasks if "module_defaults" in task)


def _unprefixed(options, prefix):
    return {name[len(prefix):] for name in options if name.startswith(prefix)}


def test_drill_scratch_defaults_when_compared_to_backup_and_restore_carry_every_connection_option():
    backup = _defaults("backup", "work.yml")
    restore = _defaults("restore", "main.yml")
    drill = set(_defaults("restore_drill", "main.yml")["rat.backup.drill_scratch"])
    postgres = set(backup["group/rat.backup.postgres"]) | set(restore["group/rat.backup.postgres"])
    s3 = _unprefixed(backup["rat.backup.bucket_mirror"], "src_") | _unprefixed(restore["group/rat.backup.s3"], "dest_")
    assert {"ssl_mode", "ca_cert"} <= postgres and {"session_token", "ca_bundle"} <= s3
    assert sorted(postgres - drill) == [] and sorted(s3 - drill) == []
