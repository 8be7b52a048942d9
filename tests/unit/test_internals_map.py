# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/internals.md's map of plugins/module_utils matches the tree: every file is in its folder's
table, and every file a table names exists there (a newcomer starts from that map)."""

from __future__ import annotations

import os
import re

TOP = os.path.join(os.path.dirname(__file__), "..", "..")
MODULE_UTILS = os.path.join(TOP, "plugins", "module_utils")


def tables(text):
    """{folder ('' for module_utils itself): {file names in the first column of its table}}."""
    found, folder = {}, None
    for line in text.splitlines():
        if line.startswith("`plugins/module_utils/`"):
            folder = ""
        heading = re.match(r"`(_?\w+)/`( \(face|:)", line)
        if heading and not line.startswith("|"):
            folder = heading.group(1)
        if folder is not None and line.startswith("| `"):
            first = line.split("|")[1]
            names = set(re.findall(r"`([\w.]+\.py)`", first))
            # The top table names a face and its package together: `s3.py` + `_s3/`.
            found.setdefault(folder, set()).update(names)
    return found


def tree():
    found = {}
    for entry in os.listdir(MODULE_UTILS):
        path = os.path.join(MODULE_UTILS, entry)
        if os.path.isdir(path) and not entry.startswith("__"):
            found[entry] = {f for f in os.listdir(path) if f.endswith(".py") and f != "__init__.py"}
        elif entry.endswith(".py") and entry != "__init__.py":
            found.setdefault("", set()).add(entry)
    return found


def test_internals_map_when_compared_to_the_tree_names_every_file_and_no_other():
    with open(os.path.join(TOP, "docs", "internals.md"), encoding="utf-8") as handle:
        documented = tables(handle.read())
    assert documented == tree()


def test_tables_when_a_file_is_missing_from_the_map_then_the_folder_shows_it():
    text = "`_mirror/` (face)\n\n| file | owns |\n|---|---|\n| `pool.py` | the pool |\n"
    assert tables(text) == {"_mirror": {"pool.py"}}
