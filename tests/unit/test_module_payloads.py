# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each module of a backup ships: the module_utils files ansible's own AnsiballZ builder
(module_common.recursive_finder) puts into its payload. Every file shipped is parsed on the controller
to build the payload (once per module and playbook run) and compiled again on the host at every
module run (the payload is imported from a zip, without .pyc), so a backup's module carries only the
code it runs: no backup module PostgreSQL's restore, backup_run neither PostgreSQL nor S3.

The finder runs in a fresh interpreter: it needs ansible's plugin loader set up over the collection, and
the whole of ansible (ansible-test gives tests under plugins/modules/ only its module_utils)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.rat.backup.tests.unit.compile_counting import COUNT_COMPILES

MODULE_UTILS = "ansible_collections/rat/backup/plugins/module_utils/"

CHILD = r"""
import datetime, inspect, io, json, os, sys, zipfile
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible.executor import module_common

found = {}
for name in sys.argv[2:]:
    fqn = "ansible_collections.rat.backup.plugins.modules." + name
    with open(os.path.join(sys.argv[1], *fqn.split(".")) + ".py", "rb") as handle:
        data = handle.read()
    zf = zipfile.ZipFile(io.BytesIO(), "w")
    args = [name, fqn, data, zf]
    wanted = inspect.signature(module_common.recursive_finder).parameters
    if wanted["date_time"].default is inspect.Parameter.empty:  # ansible-core 2.19: given by the caller
        args.append(datetime.datetime.now(datetime.timezone.utc))
    if "extension_manager" in wanted:  # ansible-core 2.19
        from ansible._internal._ansiballz import _builder
        args.append(_builder.ExtensionManager.create(task_vars={}))
    module_common.recursive_finder(*args)
    found[name] = {info.filename: info.file_size for info in zf.infolist()}
    if os.environ.get("PAYLOAD_DIR"):  # the payload as a file, with the module beside its module_utils
        with zipfile.ZipFile(os.path.join(os.environ["PAYLOAD_DIR"], name + ".zip"), "w") as out:
            for info in zf.infolist():
                out.writestr(info.filename, zf.read(info.filename))
            out.writestr("ansible_collections/rat/backup/plugins/modules/__init__.py", "")
            out.writestr(fqn.replace(".", "/") + ".py", data)
print(json.dumps(found))
"""

# Run in a fresh interpreter with a payload first on sys.path, as AnsiballZ runs a module: import the
# module (its main() does not run) and print the file of each compile(), in order.
COMPILES = COUNT_COMPILES + r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module(sys.argv[2])
print(json.dumps(compiled))
"""


def collections_path():
    """The entry of sys.path whose ansible_collections/rat/backup is this collection (pytest names this
    file by its real path, the import path may go through a symlink)."""
    here = os.path.realpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    for entry in sys.path:
        if os.path.realpath(os.path.join(entry or os.curdir, "ansible_collections", "rat", "backup")) == here:
            return os.path.abspath(entry)
    raise AssertionError(f"no entry of sys.path holds ansible_collections/rat/backup as {here}")


def shipped(*modules, payload_dir=None):
    """{module: {path under plugins/module_utils/: bytes}} of each module's AnsiballZ payload; with
    ``payload_dir``, each payload is also written there as <module>.zip."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PAYLOAD_DIR=payload_dir or "")
    done = subprocess.run([sys.executable, "-c", CHILD, collections_path()] + list(modules), capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {module: {path[len(MODULE_UTILS):]: size for path, size in files.items() if path.startswith(MODULE_UTILS)}
            for module, files in found.items()}


def restore_code(files):
    """PostgreSQL's restore (pg_restore of an archive, the selective restore and what it selects)."""
    return sorted(f for f in files if os.path.basename(f) in ("restore.py", "selective.py", "selection.py"))


@pytest.fixture(scope="module")
def payloads():
    return shipped("backup_capture", "backup_run", "pg_restore")


def test_backup_capture_when_built_by_ansible_ships_start_dump_and_mirror_but_no_restore(payloads):
    capture = payloads["backup_capture"]
    assert restore_code(capture) == []
    # It begins the backup directory (checks, lock) and fills it; backup_run commits it.
    assert {"capture.py", "mirror.py", "postgres.py", "_postgres/dump.py", "s3_source.py",
            "backup_root/backup_dir.py", "backup_root/lock.py"} <= set(capture)


def test_backup_run_when_built_by_ansible_ships_neither_postgres_nor_s3(payloads):
    commit = payloads["backup_run"]
    assert sorted(f for f in commit if f.startswith(("postgres", "_postgres", "s3", "_s3", "mirror", "_mirror"))) == []
    assert {"backup_root/backup_dir.py", "backup_root/lock.py"} <= set(commit)


def test_pg_restore_when_built_by_ansible_ships_the_restore(payloads):
    assert len(restore_code(payloads["pg_restore"])) == 3


def compiled_files(payload, module):
    """The collection's files compiled when ``module`` is imported from its ``payload`` zip, in order
    (paths inside the zip; a file compiled twice is listed twice)."""
    done = subprocess.run([sys.executable, "-I", "-c", COMPILES, payload, "ansible_collections.rat.backup.plugins.modules." + module],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    prefix = payload + os.sep
    return [name[len(prefix):] for name in json.loads(done.stdout.strip().splitlines()[-1])
            if name.startswith(prefix + "ansible_collections/")]


@pytest.mark.parametrize("module", ["backup_capture", "backup_run"])
def test_module_when_imported_from_its_payload_compiles_each_file_after_errors_once(module, tmp_path):
    # zipimport compiles a source twice (get_filename, then get_code: CPython gh-141276); from errors.py
    # on, which nearly every module_utils file imports first, payload_import keeps the first compile.
    shipped(module, payload_dir=str(tmp_path))
    order = compiled_files(str(tmp_path / (module + ".zip")), module)
    files = list(dict.fromkeys(order))
    errors = MODULE_UTILS + "errors.py"
    assert errors in files, files
    after = [f for f in files[files.index(errors) + 1:] if f != MODULE_UTILS + "payload_import.py"]
    assert [f for f in after if order.count(f) != 1] == []
    # The bulk of the module's files come after errors.py, not a handful.
    assert len(after) >= len(files) // 2, files
    if module == "backup_capture":
        # It imports errors before anything else of the collection: only what is imported before the
        # hook is in place (the package, errors.py, payload_import.py) is compiled twice.
        twice = [f for f in files if f.startswith(MODULE_UTILS) and order.count(f) != 1]
        assert sorted(twice) == [MODULE_UTILS + name for name in ("__init__.py", "errors.py", "payload_import.py")], twice
