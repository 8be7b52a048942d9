# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The typo guard: every rat_* variable a host sees must be one a role or playbook of the
collection reads. Runs on the controller; the names come from the collection's own files."""

from __future__ import annotations

import difflib
import fnmatch
import glob
import os
import re

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core requires PyYAML
    yaml = None

# Where the collection sits: plugins/action/<this file> -> the collection root.
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUARDED = re.compile(r"rat_[a-z0-9_]+")
# A rat_* name a role's task file sets (a set_fact key, a register) is the role's own result.
_SET_IN_TASKS = re.compile(r"^\s*(?:register:\s*)?(rat_[a-z0-9_]+)(?::\s|:$|\s*$)", re.M)
_CACHE = {}
# libyaml's parser where PyYAML has it (as Ansible's own loader does): the argument specs are read on
# every run, once per host (each host's task runs in its own forked worker), and the pure-Python
# parser took 0.16 s of the controller's CPU for them, the C one 0.02 s.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def known_variables(root):
    """Names the collection reads: every option of every entry point of every role's
    meta/argument_specs.yml, every rat_* name the playbooks mention (play-level knobs such
    as rat_backup_hosts belong to no role), and the rat_* facts the roles set themselves."""
    if root in _CACHE:
        return _CACHE[root]
    known = set()
    for path in sorted(glob.glob(os.path.join(root, "roles", "*", "meta", "argument_specs.yml"))):
        with open(path, encoding="utf-8") as handle:
            specs = (yaml.load(handle, Loader=_LOADER) or {}).get("argument_specs") or {}
        for entry in specs.values():
            known.update((entry or {}).get("options") or {})
    for path in sorted(glob.glob(os.path.join(root, "playbooks", "*.yml"))):
        with open(path, encoding="utf-8") as handle:
            known.update(GUARDED.findall(handle.read()))
    for path in sorted(glob.glob(os.path.join(root, "roles", "*", "tasks", "*.yml"))):
        with open(path, encoding="utf-8") as handle:
            known.update(_SET_IN_TASKS.findall(handle.read()))
    _CACHE[root] = frozenset(known)
    return _CACHE[root]


def unknown_variables(names, known, ignore=()):
    """[(name, [suggestions...])] for each guarded name that is neither known nor matched by one
    of the ``ignore`` shell patterns, sorted by name."""
    found = []
    for name in sorted(set(names)):
        if not GUARDED.fullmatch(name) or name in known:
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore):
            continue
        found.append((name, difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)))
    return found


def describe(unknown):
    """One message naming every unknown variable and what it probably meant."""
    parts = []
    for name, close in unknown:
        if close:
            parts.append(f"{name} (did you mean {' or '.join(close)}?)")
        else:
            parts.append(f"{name} (no rat.backup role or playbook reads it)")
    return (f"unknown rat_* variable{'s' if len(unknown) > 1 else ''}: {'; '.join(parts)}. Fix the name, or list it "
            "in rat_vars_ignore if it is yours.")


class ActionModule(ActionBase):
    """See plugins/modules/check_vars.py for the documentation."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("ignore",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        ignore = self._task.args.get("ignore") or []
        if isinstance(ignore, str):
            ignore = [ignore]
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise AnsibleActionFail(f"ignore (rat_vars_ignore) must be a list of name patterns, got {ignore!r}")
        known = known_variables(COLLECTION_ROOT)
        names = [to_text(name) for name in task_vars]
        unknown = unknown_variables(names, known, ignore + ["rat_vars_ignore"])
        result.update(changed=False, checked=sum(1 for n in names if GUARDED.fullmatch(n)),
                      unknown=[name for name, _close in unknown])
        if unknown:
            result.update(failed=True, msg=describe(unknown),
                          suggestions=dict(unknown))
        return result
