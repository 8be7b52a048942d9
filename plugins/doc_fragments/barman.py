# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Matches _pitr.barman.engine_argspec() one to one (every pitr_* module takes it).
    DOCUMENTATION = r"""
options:
  config:
    description: Barman configuration file, written by M(rat.backup.pitr_setup) (the C(rat.backup.pitr) role runs it).
    type: path
    default: /etc/rat-backup/barman.conf
  server:
    description: Server name in O(config).
    type: str
    default: rat
"""
