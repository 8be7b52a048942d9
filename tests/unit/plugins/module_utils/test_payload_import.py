# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""payload_import: files imported from the zip that holds it are compiled once, and import as they did.

Each case runs in a fresh interpreter (the hook is process-wide): two copies of one archive of sources
(packages, a subpackage, a module raising on import), one imported with payload_import first, the
other plain, side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

from ansible_collections.rat.backup.plugins.module_utils import payload_import
from ansible_collections.rat.backup.tests.unit.compile_counting import COUNT_COMPILES

SOURCES = {
    "pkg/__init__.py": "from pkg import a\n",
    "pkg/a.py": "def where():\n    return where.__code__.co_filename\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/b.py": "import pkg.a\nVALUE = 42\n",
    "pkg/broken.py": "raise RuntimeError('broken on import')\n",
}

CHILD = COUNT_COMPILES + r"""
import importlib, json, sys
hooked, plain = sys.argv[1], sys.argv[2]
sys.path[:0] = [hooked]
import payload_import  # installs itself for the archive it came from: hooked
seen = {}
for name in ("pkg", "pkg.a", "pkg.sub", "pkg.sub.b"):
    module = importlib.import_module(name)
    seen[name] = {"file": module.__file__, "origin": module.__spec__.origin,
                  "path": list(getattr(module, "__path__", [])), "loader": type(module.__loader__).__name__}
seen["where"] = sys.modules["pkg.a"].where()
seen["value"] = sys.modules["pkg.sub.b"].VALUE
try:
    importlib.import_module("pkg.broken")
except RuntimeError as exc:
    seen["broken"] = str(exc)
# The same archive imported without the hook: another name, so nothing of the first is reused.
for name in list(sys.modules):
    if name == "pkg" or name.startswith("pkg."):
        del sys.modules[name]
sys.path.remove(hooked)
sys.path.insert(0, plain)
module = importlib.import_module("pkg.sub.b")
seen["plain"] = {"file": module.__file__, "loader": type(module.__loader__).__name__}
print(json.dumps({"seen": seen, "compiled": compiled}))
"""


def make_archive(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with open(payload_import.__file__, encoding="utf-8") as handle:
            archive.writestr("payload_import.py", handle.read())
        for name, text in SOURCES.items():
            archive.writestr(name, text)
    return str(path)


def run_child(tmp_path):
    hooked, plain = make_archive(tmp_path / "hooked.zip"), make_archive(tmp_path / "plain.zip")
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, hooked, plain], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return hooked, plain, json.loads(done.stdout.strip().splitlines()[-1])


def test_install_when_imported_from_a_zip_then_each_later_file_compiles_once(tmp_path):
    hooked, plain, found = run_child(tmp_path)
    compiled = found["compiled"]
    for name in ("pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py", "pkg/broken.py"):
        assert compiled.count(os.path.join(hooked, name)) == 1, name
    # Without the hook each file of the same archive compiled twice (this is what it saves).
    assert compiled.count(os.path.join(plain, "pkg", "sub", "b.py")) == 2
    # payload_import itself came before its hook.
    assert compiled.count(os.path.join(hooked, "payload_import.py")) == 2


def test_install_when_imported_from_a_zip_then_modules_import_as_without_it(tmp_path):
    hooked, plain, found = run_child(tmp_path)
    seen = found["seen"]
    assert seen["pkg"] == {"file": os.path.join(hooked, "pkg", "__init__.py"),
                           "origin": os.path.join(hooked, "pkg", "__init__.py"),
                           "path": [os.path.join(hooked, "pkg")], "loader": "CompiledOnce"}
    assert seen["pkg.sub"]["path"] == [os.path.join(hooked, "pkg", "sub")]
    assert seen["pkg.sub.b"]["file"] == seen["pkg.sub.b"]["origin"] == os.path.join(hooked, "pkg", "sub", "b.py")
    assert seen["pkg.sub.b"]["loader"] == "CompiledOnce"
    assert seen["where"] == os.path.join(hooked, "pkg", "a.py")
    assert seen["value"] == 42
    assert seen["broken"] == "broken on import"
    assert seen["plain"] == {"file": os.path.join(plain, "pkg", "sub", "b.py"), "loader": "zipimporter"}


def test_install_when_not_imported_from_a_zip_then_nothing_changes():
    hooks = list(sys.path_hooks)
    payload_import.install(payload_import.__loader__)
    assert sys.path_hooks == hooks
