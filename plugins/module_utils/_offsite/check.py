# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checking one complete off-site copy: after shipping it, before it gives files to the next copy,
and when the copies are verified. The index must name the copy, the listing must match the index
(and the local manifest when there is one), the stored manifest must be the one the index binds;
full mode reads every file back."""

from __future__ import annotations

import hashlib

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl

# Problems kept in a status record (all of them are in the run's result).
MAX_BAD = 50


def verified(checked, now):
    """The status fields of one check_copy result."""
    return {"verified_at": fs.iso(now or fs.utcnow()), "verify_mode": checked["mode"],
            "verified": not checked["bad"], "bad": checked["bad"][:MAX_BAD]}


def check_copy(run, name, files=None, mode=None, manifest=True):
    """Verify one complete off-site copy: listing vs index (and manifest when local), the stored manifest
    vs the index's binding (read back unless ``manifest`` is false: then its size); full also reads every
    file back. The result carries the parsed ``index`` (None when it was refused)."""
    mode = mode or run.verify_mode
    where = run.target.location(name)
    raw = run.target.read(name, pl.INDEX)
    try:
        index = pl.parse_index(raw, where, name)
    except RatBackupError as exc:
        return {"name": name, "mode": mode, "bad": [exc.msg], "files": 0, "location": where, "index": None}
    listing = run.target.listing(name)
    hashes = None
    if mode == "full":
        hashes = run.target.hashes(name, [item["stored"] for item in index["files"].values()])
    binding = index.get("manifest")
    manifest_sha256 = None
    if manifest and binding and binding["stored"] in listing:
        manifest_sha256 = hashlib.sha256(run.target.read(name, binding["stored"])).hexdigest()
    bad = pl.bad_lines(pl.compare(index, listing, files, hashes, manifest_sha256))
    return {"name": name, "mode": mode, "bad": bad, "files": len(index["files"]), "location": where, "index": index}
