# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module's own files are compiled once per run, not twice.

Ansible runs a module from its AnsiballZ payload: a zip of sources, imported by the standard
``zipimport`` without any ``.pyc``, so every file is compiled at every run. CPython's
``zipimporter.get_filename`` compiles the whole source only to learn the file's name, and the import
machinery calls it to build each module's spec before ``get_code`` compiles the same source again
(CPython gh-141276; zipimport is Python code since 3.8): each file of a payload was compiled twice.
Importing each module from its payload, compiling once saved backup_capture (~50 files) 0.05 s of
CPU per run, the start's checks 0.035 s (their own module then), backup_run (~15 files) 0.02 s
(docs/mechanisms.md).

``errors`` imports this module first, and nearly every module_utils file imports ``errors``
before the rest, so from then on the payload's files are imported by ``CompiledOnce``: its
``get_filename`` keeps the code it compiled and ``get_code`` hands it back. What was imported
before (Ansible's own module_utils, the module and the first few files of its chain) was still
compiled twice. Outside a zip (the controller, unit tests) nothing changes.
"""

from __future__ import annotations

import os
import sys
import zipimport


class CompiledOnce(zipimport.zipimporter):
    """A zipimporter for an archive of sources whose get_filename does not compile a second time."""

    def __init__(self, path):
        super().__init__(path)
        self._compiled = {}

    def get_filename(self, fullname):
        # A source's code object carries the path it was compiled from, which is the file name
        # zipimporter.get_filename returns (an AnsiballZ payload holds sources only).
        code = super().get_code(fullname)
        self._compiled[fullname] = code
        return code.co_filename

    def get_code(self, fullname):
        code = self._compiled.pop(fullname, None)
        return code if code is not None else super().get_code(fullname)


def install(loader):
    """From now on import the files of ``loader``'s archive with CompiledOnce (nothing unless
    ``loader`` is a plain zipimporter: this file was not imported from a zip)."""
    if type(loader) is not zipimport.zipimporter:  # pylint: disable=unidiomatic-typecheck
        return
    archive = loader.archive

    def hook(path):
        if path != archive and not path.startswith(archive + os.sep):
            raise ImportError("not in the module's payload", path=path)
        return CompiledOnce(path)

    # New package directories of the payload (_s3/, _mirror/, ...) come through the hook; the
    # directories already imported from (module_utils/ itself) have their importer cached.
    sys.path_hooks.insert(0, hook)
    for entry, importer in list(sys.path_importer_cache.items()):
        if type(importer) is zipimport.zipimporter and importer.archive == archive:  # pylint: disable=unidiomatic-typecheck
            sys.path_importer_cache[entry] = CompiledOnce(entry)


install(__loader__)  # noqa: F821  pylint: disable=undefined-variable
