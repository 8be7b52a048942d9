# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirroring between S3 and disk: S3 -> disk, disk -> S3, or S3 -> S3.

``Mirror`` is the one entry point: the options parsed and checked once (``_mirror/settings.py``),
the connections in one object (``_mirror/sides.py``), then the direction plans (check mode stops
there) and runs. The parts live in the private package ``_mirror``: ``model`` (Location, Entry,
Filter, Plan, times), ``listing``, ``local_tree``, ``key_paths``, ``object_manifest`` (with the
journal), ``merge`` (plans as merges of sorted streams, spooled), ``download_plan`` and
``download``, ``upload``, ``s3_copy``, ``relink``, ``ranged`` and ``pool``; raw bucket calls are in ``s3``.
"""

from __future__ import annotations

import time

from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror.download import Download
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Plan
from ansible_collections.rat.backup.plugins.module_utils._mirror.s3_copy import S3Copy
from ansible_collections.rat.backup.plugins.module_utils._mirror.settings import Counter, Settings
from ansible_collections.rat.backup.plugins.module_utils._mirror.sides import Sides
from ansible_collections.rat.backup.plugins.module_utils._mirror.upload import Upload


class Mirror:
    """One bucket_mirror run. ``options`` is the module's params dict, read once here;
    ``src_versioning``: {bucket: versioned} of the source read already in this run (a backup's
    checks), not asked again."""

    def __init__(self, options, src_client=None, dest_client=None, log=None, check_mode=False,
                 src_http=None, dest_http=None, checkpoint=None, src_versioning=None):
        self.settings = Settings.from_params(options, check_mode)
        self.sides = Sides.from_params(options, src_client, dest_client, src_http, dest_http)
        self.counter = Counter(log, checkpoint)
        self.lister = listing.Lister(src_client, self.sides.src_endpoint, self.settings.src.prefix,
                                     self.settings.filter, self.settings.as_of, self.settings.use_versions, src_http,
                                     src_versioning)

    def run(self):
        started = time.monotonic()
        settings = self.settings
        if settings.probe:
            result = self._probe()
        else:
            if settings.src.is_s3 and not settings.dest.is_s3:
                direction = Download(settings, self.sides, self.counter, self.lister)
            elif settings.dest.is_s3 and not settings.src.is_s3:
                direction = Upload(settings, self.sides, self.counter)
            else:
                direction = S3Copy(settings, self.sides, self.counter, self.lister)
            result = direction.plan()
            if not settings.check_mode:
                self.counter.checkpoint()
                direction.apply()
        seconds = time.monotonic() - started
        stats = self.counter.stats
        result.update(stats)
        result["unchanged"] = result["plan"]["unchanged"]["count"]
        result["seconds"] = round(seconds, 3)
        result["mb_per_s"] = round(stats["bytes"] / 1e6 / seconds, 2) if seconds > 0 else 0.0
        result["changed_during"] = self.counter.changed_during
        result.setdefault("consistency", None)
        return result

    def _probe(self):
        """Ask each S3 side what a mirror needs before it starts (endpoint, credentials, the source's
        buckets and their versioning) without listing a single object: cheap on any lake."""
        settings, sides = self.settings, self.sides
        probed = {}
        point = None
        if settings.src.is_s3:
            buckets = listing.buckets(sides.src_client, sides.src_endpoint, settings.src, settings.buckets, sides.src_http)
            versioning = self.lister.pin(buckets, settings.consistency_point, settings.max_clock_skew,
                                         settings.fail_on_best_effort)
            try:
                point = self.lister.pinned()
            finally:
                self.lister.close()
            probed["src"] = {bucket: {"versioned": versioned} for bucket, versioned in versioning.items()}
        if settings.dest.is_s3:
            s3.bucket_names(sides.dest_client, sides.dest_endpoint, sides.dest_http)
            probed["dest"] = {}
        return {"plan": Plan().summary(), "changed": False, "probed": probed, "consistency": point}
