# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offsite role hands every connection option of backup_offsite to the module, each from a
variable its argument spec declares (a missing one, like the S3 session token, cannot be set)."""

from __future__ import annotations

import os

import yaml

from ansible_collections.rat.backup.plugins.modules import backup_offsite

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "offsite")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


def test_role_when_module_has_a_target_option_then_the_role_passes_it_from_a_declared_variable():
    tasks = load("tasks", "main.yml")
    defaults = next(t for t in tasks if "module_defaults" in t)["module_defaults"]["rat.backup.backup_offsite"]
    declared = set(load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"])
    wanted = {name for name in backup_offsite.argument_spec() if name.startswith(("s3_", "ssh_"))}
    assert sorted(wanted - set(defaults)) == []
    for option in wanted:
        assert "rat_offsite_" + option in defaults[option] and "rat_offsite_" + option in declared, option
