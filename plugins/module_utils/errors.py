# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type module_utils raise; modules turn it into fail_json once, in main()."""

from __future__ import annotations


class RatBackupError(Exception):
    """A failure with an operator-facing message and optional structured details.

    ``details`` ends up in the module result next to ``msg`` so automation can act on it
    (for example the list of damaged files of a backup).
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def exit_with(module, run):
    """End a module with run(module)'s result, or with the one RatBackupError it raised.

    Every module's main() ends here, so the error type is turned into fail_json in one place.
    """
    try:
        result = run(module)
    except RatBackupError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)
