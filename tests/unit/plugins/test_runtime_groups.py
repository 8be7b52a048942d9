# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action groups of meta/runtime.yml: module_defaults of a group reach every module in it
unfiltered, so every module of a group must accept the group's shared options."""

from __future__ import annotations

import importlib
import os

import pytest
import yaml

from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3

RUNTIME = os.path.join(os.path.dirname(__file__), "..", "..", "..", "meta", "runtime.yml")
SHARED = {
    "postgres": set(postgres.connection_argspec()),
    "s3": set(s3.connection_argspec("dest_")),
}


def groups():
    with open(RUNTIME, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["action_groups"]


def test_action_groups_when_declared_then_postgres_and_s3_list_existing_modules():
    declared = groups()
    assert set(declared) == {"postgres", "s3"}
    assert declared["postgres"] == ["pg_dump", "backup_capture", "pg_restore", "backup_compare", "lake_select", "pitr_setup"]
    assert declared["s3"] == ["bucket_mirror", "backup_compare", "lake_rollback", "lake_versions_info"]


@pytest.mark.parametrize("group", ["postgres", "s3"])
def test_action_group_when_module_listed_then_it_accepts_every_shared_option(group):
    for name in groups()[group]:
        module = importlib.import_module("ansible_collections.rat.backup.plugins.modules." + name)
        missing = SHARED[group] - set(module.argument_spec())
        assert not missing, "{0} in group {1} lacks {2}".format(name, group, sorted(missing))
