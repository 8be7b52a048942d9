# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The start of a child script that counts compiles (test_module_payloads, test_payload_import):
every compile() the interpreter makes from then on, imports from a zip included, appends its file
name to ``compiled``; the script prints that list at its end."""

from __future__ import annotations

# First in the child, before the imports it measures (the standard library's come from .pyc files,
# no compile()).
COUNT_COMPILES = r"""
import builtins
compiled = []
real_compile = builtins.compile


def counting(source, filename, *args, **kwargs):
    compiled.append(filename)
    return real_compile(source, filename, *args, **kwargs)


builtins.compile = counting
"""
