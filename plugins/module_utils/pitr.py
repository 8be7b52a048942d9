# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL point-in-time recovery through Barman (docs/pitr.md): the face the pitr_* modules import.

The definitions live in ``_pitr/``: Barman's CLI and configuration (``barman``), what streaming needs in
the server (``server``) and in its pg_hba.conf (``hba``), enabling (``setup``), recovery as of a time
(``recovery``), the window (``status``), a drill's verdict on a recovery (``verify``).
"""

from __future__ import annotations

# pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._pitr import barman, hba, recovery, server, setup, status, verify
