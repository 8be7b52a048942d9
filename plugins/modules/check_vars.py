#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: check_vars
short_description: Fail on a rat_* variable that no role or playbook of rat.backup reads (typo guard)
version_added: 0.1.0
description:
  - Looks at every variable the host sees (inventory, group_vars, host_vars, extra vars, play and
    role vars) whose name starts with C(rat_), and fails naming those that no role of the
    collection declares in its C(meta/argument_specs.yml) and no playbook of the collection reads,
    with the closest known names ("did you mean ...").
  - The known names are read from the installed collection itself, so new roles and playbooks are
    covered without a list to keep.
  - Every role of the collection runs it as its first task (tagged C(always)), so a misspelled
    C(-e rat_restore_backpu=latest) fails the play before anything is listed or touched.
  - Runs on the controller only; it reads no file of the managed host.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.attributes.INFO_MODULE
options:
  ignore:
    description:
      - Shell-style patterns (C(fnmatch)) of further C(rat_*) names to accept, for variables of
        your own that share the prefix. The roles pass C(rat_vars_ignore).
    type: list
    elements: str
    default: []
notes:
  - An action plugin; it does not run on the managed host.
requirements:
  - nothing on the managed host; it runs on the controller (an action plugin) and reads the installed
    collection
seealso:
  - name: Role argument validation
    description: The roles validate the type and value of the variables they know.
    link: https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_reuse_roles.html#role-argument-validation
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Fail on misspelled rat_* variables
  rat.backup.check_vars:

- name: Accept our own rat_site_* variables too
  rat.backup.check_vars:
    ignore: ["rat_site_*"]
"""

RETURN = r"""
checked:
  description: How many C(rat_*) variables the host sees.
  returned: always
  type: int
  sample: 14
unknown:
  description: The C(rat_*) variables no role or playbook reads (the task fails when not empty).
  returned: always
  type: list
  elements: str
  sample: ["rat_restore_backpu"]
suggestions:
  description: For each unknown variable, the closest known names.
  returned: failed
  type: dict
  sample: {"rat_restore_backpu": ["rat_restore_backup"]}
"""
