# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventories a user copies (README.md's examples, inventory/) name their groups as Ansible
accepts them: any other character makes every run warn "Invalid characters were found in group
names". The rule is Ansible's own (ansible.constants.INVALID_VARIABLE_NAMES)."""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml
from ansible import constants

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
README = os.path.join(ROOT, "README.md")


def children(group):
    """Every group name below an inventory group (YAML inventory format)."""
    names = []
    for name, body in ((group or {}).get("children") or {}).items():
        names.append(name)
        names.extend(children(body))
    return names


def readme_inventories():
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "children:" in block]


def group_names():
    found = []
    for path in glob.glob(os.path.join(ROOT, "inventory", "*", "hosts.yml")):
        with open(path, encoding="utf-8") as handle:
            found += [(path, name) for name in children(yaml.safe_load(handle)["all"])]
    for path in glob.glob(os.path.join(ROOT, "inventory", "*", "group_vars", "*.yml")):
        found.append((path, os.path.splitext(os.path.basename(path))[0]))
    for inventory in readme_inventories():
        found += [("README.md", name) for name in children(inventory["all"])]
    with open(README, encoding="utf-8") as handle:
        found += [("README.md", name) for name in re.findall(r"group_vars/([^/\s.]+)\.yml", handle.read())]
    return found


def test_examples_when_read_then_readme_and_example_inventory_have_groups():
    sources = {source for source, _name in group_names()}
    assert "README.md" in sources and any("example" in source for source in sources)
    assert len(readme_inventories()) >= 1


@pytest.mark.parametrize("source,name", group_names())
def test_group_name_when_copied_from_the_docs_then_ansible_accepts_it(source, name):
    assert not constants.INVALID_VARIABLE_NAMES.search(name), "%s: group %r" % (source, name)
