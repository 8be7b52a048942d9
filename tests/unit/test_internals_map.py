# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/internals.md's map of plugins/module_utils matches the tree: every file is in its folder's
table, and every file a table names exists there (a newcomer starts from that map); and no plugin
imports a private package `_x` of module_utils but its face `x.py` and the package itself."""

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


def private_imports(top=TOP):
    """[(file, private package)] where a plugin file imports a private package ``_x`` of module_utils
    without being its face ``x.py`` or inside ``_x/`` itself."""
    found = []
    plugins = os.path.join(top, "plugins")
    for parent, dummy, files in os.walk(plugins):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, os.path.join(plugins, "module_utils"))
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            for package in set(re.findall(r"module_utils(?:\.| import )(_[a-z0-9]+)\b", text)):
                if rel != package[1:] + ".py" and not rel.startswith(package + os.sep):
                    found.append((os.path.relpath(path, top), package))
    return sorted(found)


def test_plugins_when_importing_a_private_package_are_its_face_or_inside_it():
    assert private_imports() == []


def test_private_imports_when_a_module_imports_internals_then_it_is_named(tmp_path):
    modules = tmp_path / "plugins" / "modules"
    modules.mkdir(parents=True)
    (modules / "m.py").write_text("from ansible_collections.rat.backup.plugins.module_utils._offsite import plan\n")
    (tmp_path / "plugins" / "module_utils").mkdir()
    (tmp_path / "plugins" / "module_utils" / "offsite.py").write_text(
        "from ansible_collections.rat.backup.plugins.module_utils._offsite import plan\n")
    assert private_imports(str(tmp_path)) == [(os.path.join("plugins", "modules", "m.py"), "_offsite")]
