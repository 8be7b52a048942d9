# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Matches consistency.record_argspec() one to one (backup_run's consistency option).
    DOCUMENTATION = r"""
options:
  consistency:
    description:
      - How the buckets were pinned to the database snapshot, recorded as the manifest's C(consistency), from
        M(rat.backup.bucket_mirror)'s RV(rat.backup.bucket_mirror#module:consistency) plus the backup
        role's own facts. Unset suboptions are not recorded.
    type: dict
    default: {}
    suboptions:
      level:
        description: V(snapshot) when every bucket was pinned to the snapshot, V(best-effort) otherwise.
        type: str
      buckets:
        description: Level of each bucket, by name.
        type: dict
      time:
        description: The snapshot's moment on PostgreSQL's clock (ISO 8601 UTC).
        type: str
      earliest:
        description: The earliest moment the snapshot may have been taken at.
        type: str
      obtained:
        description: How the moment was read.
        type: str
      clock_skew:
        description: Interval of S3's clock minus PostgreSQL's, in seconds (only with a versioned bucket, as are the
          clock_skew_measured, max_clock_skew and window).
        type: list
        elements: float
      clock_skew_measured:
        description: How the clock skew was measured.
        type: str
      max_clock_skew:
        description: The largest skew the backup accepted, in seconds.
        type: float
      window:
        description: The snapshot as an interval on S3's clock (two ISO 8601 UTC times).
        type: list
        elements: str
      rule:
        description: The rule that chose each key's version.
        type: str
      changed_during:
        description: Objects of unversioned buckets that changed while they were mirrored.
        type: list
        elements: dict
      use_versions:
        description: Whether objects were fetched by version id.
        type: bool
      quiesced:
        description: Whether the backup ran a quiesce command before capturing.
        type: bool
      dump_snapshot:
        description: Id of the snapshot pg_dump exported.
        type: str
"""
