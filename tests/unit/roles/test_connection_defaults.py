# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup, restore and drill roles reach PostgreSQL and MinIO with the same connection options.

Each role writes its module_defaults out by hand (ansible-core resolves a literal group's values one
by one, a templated dict whole: docs/internals.md), so this test is what keeps the three blocks
alike: every connection option the modules take, in all three (the drill's had drifted once)."""

from __future__ import annotations

import os

import yaml

from ansible_collections.rat.backup.plugins.module_utils import postgres, s3

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")
# The client programs' directory is found on the host (or given to a module by hand); no role sets it.
POSTGRES_OPTIONS = set(postgres.connection_argspec()) - {"client_bin_dir"}
S3_OPTIONS = set(s3.connection_argspec())


def _tasks(roles, role, tasks_file):
    with open(os.path.join(roles, role, "tasks", tasks_file), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _defaults(roles, role, tasks_file):
    return next(task["module_defaults"] for task in _tasks(roles, role, tasks_file) if "module_defaults" in task)


def _task_args(roles, role, tasks_file, module):
    """The arguments of the first task running ``module``, looked for in blocks too."""
    pending = list(_tasks(roles, role, tasks_file))
    while pending:
        task = pending.pop(0)
        if module in task:
            return task[module]
        pending.extend(task.get("block", []))
    raise AssertionError(f"no {module} task in roles/{role}/tasks/{tasks_file}")


def _unprefixed(options, prefix):
    return {name[len(prefix):] for name in options if name.startswith(prefix)}


def connection_keys(roles=ROLES):
    """{role: (PostgreSQL options, S3 options without side prefix)} of the three roles' module_defaults."""
    backup = _defaults(roles, "backup", "work.yml")
    # MinIO is the capture's source, given in its task (src_*).
    capture = _task_args(roles, "backup", "work.yml", "rat.backup.backup_capture")
    restore = _defaults(roles, "restore", "main.yml")
    drill = set(_defaults(roles, "restore_drill", "main.yml")["rat.backup.drill_scratch"])
    return {
        "backup": (set(backup["group/rat.backup.postgres"]), _unprefixed(capture, "src_")),
        "restore": (set(restore["group/rat.backup.postgres"]), _unprefixed(restore["group/rat.backup.s3"], "dest_")),
        "restore_drill": (drill & POSTGRES_OPTIONS, drill & S3_OPTIONS),
    }


def test_backup_restore_and_drill_when_compared_carry_every_connection_option_alike():
    for role, (pg, s3_keys) in connection_keys().items():
        assert sorted(POSTGRES_OPTIONS - pg) == [], role
        assert sorted(S3_OPTIONS - s3_keys) == [], role


def test_connection_keys_when_a_role_drops_an_option_then_the_role_is_named(tmp_path):
    # The check above on a copy where the restore role lost ssl_mode (as the drill's once had).
    for role, tasks_file in (("backup", "work.yml"), ("restore", "main.yml"), ("restore_drill", "main.yml")):
        (tmp_path / role / "tasks").mkdir(parents=True)
        with open(os.path.join(ROLES, role, "tasks", tasks_file), encoding="utf-8") as handle:
            text = handle.read()
        if role == "restore":
            text = "\n".join(line for line in text.splitlines() if "ssl_mode:" not in line)
        (tmp_path / role / "tasks" / tasks_file).write_text(text)
    broken = {role: sorted(POSTGRES_OPTIONS - pg) for role, (pg, dummy) in connection_keys(str(tmp_path)).items()}
    assert broken == {"backup": [], "restore": ["ssl_mode"], "restore_drill": []}
