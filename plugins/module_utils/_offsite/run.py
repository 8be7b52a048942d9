# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One off-site run (private to the ``offsite`` face): the target, keys and counters it works with,
its status records under ``<root>/.status/``, the resume journal under ``<root>/.offsite/<target>/``,
and how a module's options become a run's pieces (target, age keys, selection).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading

from ansible_collections.rat.backup.plugins.module_utils import fs, s3
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root.lock import OFFSITE_DIR
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import Crypt
from ansible_collections.rat.backup.plugins.module_utils._offsite.plan import SELECTIONS
from ansible_collections.rat.backup.plugins.module_utils._offsite.s3_target import S3Target
from ansible_collections.rat.backup.plugins.module_utils._offsite.ssh_target import SshTarget

WORK_DIR = OFFSITE_DIR
STATUS_KIND = "offsite"


class Run:
    """One off-site run on one target: where, how, and the counters it reports."""

    def __init__(self, root, target, label, host, crypt=None, parallel=4, verify_mode="quick", log=None):
        self.root = root
        self.target = target
        self.label = label
        self.host = host
        self.crypt = crypt
        self.parallel = max(1, int(parallel))
        self.verify_mode = verify_mode
        self.log = log or (lambda text: None)
        self.work = os.path.join(root, WORK_DIR, label)

    @property
    def encrypted(self):
        return self.crypt is not None and bool(self.crypt.recipients)

    @property
    def recipients(self):
        return self.crypt.recipients if self.encrypted else []

    def map(self, work, items):
        if not items:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.parallel, len(items))) as pool:
            return list(pool.map(work, items))

    # --- status records ---
    def status(self, name):
        return (layout.read_status(self.root, name).get(STATUS_KIND) or {}).get("targets", {}).get(self.label, {})

    def record(self, name, **fields):
        current = layout.read_status(self.root, name).get(STATUS_KIND) or {"targets": {}}
        mine = dict(current["targets"].get(self.label, {}), kind=self.target.kind, location=self.target.location(name))
        mine.update(fields)
        current["targets"][self.label] = mine
        layout.write_status(self.root, name, STATUS_KIND, current)
        return mine


class Journal:
    """Index entries of files already shipped (or staged) for one backup: what a rerun skips."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.entries = {}
        try:
            for item in fs.json_lines(path):
                if isinstance(item, dict) and isinstance(item.get("path"), str):
                    self.entries[item["path"]] = item
        except OSError:
            pass

    def add(self, item):
        with self.lock:
            os.makedirs(os.path.dirname(self.path), mode=layout.DIR_MODE, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, fs.FILE_MODE)
            with os.fdopen(fd, "ab") as handle:
                handle.write((json.dumps(item, sort_keys=True) + "\n").encode("utf-8"))
            self.entries[item["path"]] = item
        return item

    def remove(self):
        fs.unlink_quietly(self.path)


# --- a module's options as a run's pieces ---

def make_target(p, throttle):
    if p["target"] == "s3":
        if not p["s3_bucket"]:
            raise RatBackupError("target s3 needs s3_bucket (rat_offsite_s3_bucket)", variable="rat_offsite_s3_bucket")
        side = s3.connect(p, "s3_", max_pool_connections=max(10, p["parallel"] * 2))
        return S3Target(side.client, side.endpoint, p["s3_bucket"], p["s3_prefix"], p["host"], throttle)
    return SshTarget(p["ssh_host"], p["ssh_path"], p["host"], port=p["ssh_port"], user=p["ssh_user"],
                     key_file=p["ssh_key_file"], known_hosts_file=p["ssh_known_hosts_file"],
                     strict_host_key_checking=p["ssh_strict_host_key_checking"],
                     connect_timeout=p["connect_timeout"], bwlimit_kib=p["bandwidth_limit_kib"])


def selection(value):
    if value in (None, "", []):
        return "missing"
    if isinstance(value, str) and value in SELECTIONS:
        return value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, (str, int)):
        return [str(value)]
    raise RatBackupError("backups (rat_offsite_backups) must be 'missing', 'latest' or a list of backup names, not "
                         f"{value!r}", variable="rat_offsite_backups")


def make_crypt(p):
    if p["state"] == "fetched":
        if p["identity_file"] or p["identity"]:
            return Crypt(p["age_bin"], identity_file=p["identity_file"], identity=p["identity"])
        return None
    if p["encrypt"]:
        return Crypt(p["age_bin"], recipients=p["recipients"])
    if p["recipients"]:
        raise RatBackupError("recipients are given but encrypt is false: set rat_offsite_encrypt: true "
                             "(nothing is shipped in clear when keys are configured)", variable="rat_offsite_encrypt")
    return None
