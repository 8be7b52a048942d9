# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type module_utils raise; modules turn it into fail_json once, in main()."""

from __future__ import annotations

# First: from here on a module's payload files are compiled once, not twice (see payload_import.py); nearly
# every module_utils file imports errors before its other files.
from ansible_collections.rat.backup.plugins.module_utils import payload_import  # noqa: F401  pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils import masking

# Ansible adds the owner, group, mode and size of the file named by a result's "path" or "dest"
# (AnsibleModule.add_path_info): right for a file a module made, wrong for a path an error is about
# (a refused /etc/hostname came back with its owner and mode). Errors carry them under these names.
_PATH_DETAILS = {"path": "error_path", "dest": "error_dest"}


class RatBackupError(Exception):
    """A failure with an operator-facing message and optional structured details.

    ``details`` ends up in the module result next to ``msg`` so automation can act on it
    (for example the list of damaged files of a backup).
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def failure(exc):
    """fail_json's arguments for ``exc``."""
    details = {_PATH_DETAILS.get(k, k): v for k, v in exc.details.items()}
    return dict(details, msg=exc.msg)


def exit_with(module, run):
    """End a module with run(module)'s result, or with the one RatBackupError it raised.

    Every module's main() ends here, so the error type is turned into fail_json, and short
    secrets are masked as values (masking.py), in one place.
    """
    secrets = masking.take_over_short_secrets(module)
    extra = {"invocation": masking.invocation(module, secrets)} if secrets else {}
    try:
        result = run(module)
    except RatBackupError as exc:
        module.fail_json(**masking.mask_data(dict(failure(exc), **extra), secrets))
    module.exit_json(**masking.mask_data(dict(result, **extra), secrets))
