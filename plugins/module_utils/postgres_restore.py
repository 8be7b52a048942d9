# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The face of PostgreSQL's restore: what the pg_restore module calls; ``_postgres_restore/`` is
private to it.

A room of its own above ``postgres`` (whose client and programs it runs), so that only a module
that restores ships it: every module_utils file a module imports is sent to the host and compiled
there at each run. What lives here: ``selection_from_params``; named here and defined in
``_postgres_restore/``: the restore of an archive the manifest vouches for (``restore.py``), and
some tables or schemas of it (``selective.py`` runs it, ``selection.py`` decides what belongs to a
table).
"""

from __future__ import annotations

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore.selective import Selection
# The face's names for the rest (the module calls postgres_restore.restore); the definitions live in
# _postgres_restore/.
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore.restore import RestoreSpec, restore  # pylint: disable=unused-import


def selection_from_params(params):
    """A selective restore's Selection from pg_restore's options; None restores the whole archive."""
    if not params["tables"] and not params["schemas"]:
        if params["data_only"] or params["with_referenced"] or params["with_dependencies"]:
            raise RatBackupError("data_only, with_referenced and with_dependencies apply to a selective restore: "
                                 "set tables or schemas")
        return None
    return Selection(params["tables"], params["schemas"], params["data_only"], params["with_referenced"],
                     params["with_dependencies"])
