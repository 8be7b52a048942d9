# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far back and how recent point-in-time recovery reaches, for list_backups and Prometheus.

The metrics go to their own textfile beside the backup's (``rat_backup_pitr.prom`` in the same
node_exporter directory), so each file has one writer.
"""

from __future__ import annotations

import os

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils._pitr import barman as barman_cli

METRICS_FILE = "rat_backup_pitr.prom"


def status(engine, now):
    """{earliest, latest, streaming, lag_bytes, archived_wal, archived_at, base_backups} (times in ISO UTC)."""
    backups = engine.backups()
    archived = barman_cli.last_archived(os.path.join(engine.server_setting("wals_directory"), "xlog.db"))
    streaming, lag = engine.replication()
    found = barman_cli.window(backups, archived, streaming, lag, now)
    out = {k: (fs.iso(v) if hasattr(v, "tzinfo") else v) for k, v in found.items()}
    out["base_backups"] = [{"id": b["id"], "end": fs.iso(b["end"])} for b in backups]
    out["window_seconds"] = (int((found["latest"] - found["earliest"]).total_seconds())
                             if found["earliest"] and found["latest"] else 0)
    return out, found


def metrics_text(host, found, now):
    label = '{host="%s"}' % host.replace("\\", "\\\\").replace('"', '\\"')
    lines = []

    def metric(name, help_text, value):
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{label} {value}"])

    def stamp(moment):
        return f"{moment.timestamp():.3f}" if moment else "NaN"

    metric("rat_backup_pitr_earliest_timestamp_seconds", "Unix time of the earliest point PostgreSQL can be "
           "recovered to (end of the oldest base backup).", stamp(found["earliest"]))
    metric("rat_backup_pitr_latest_timestamp_seconds", "Unix time of the latest point PostgreSQL can be recovered "
           "to (now while the WAL stream runs).", stamp(found["latest"]))
    metric("rat_backup_pitr_streaming", "1 if Barman's WAL receiver is connected, 0 if not.",
           1 if found["streaming"] else 0)
    metric("rat_backup_pitr_wal_lag_bytes", "Bytes of WAL the server has written and the stream has not flushed.",
           found["lag_bytes"] if found["lag_bytes"] is not None else "NaN")
    metric("rat_backup_pitr_last_archived_timestamp_seconds", "Unix time Barman archived its newest WAL segment.",
           stamp(found["archived_at"]))
    metric("rat_backup_pitr_checked_timestamp_seconds", "Unix time of this reading.", stamp(now))
    return "\n".join(lines) + "\n"


def write_metrics(metrics_dir, host, found, now):
    path = os.path.join(metrics_dir, METRICS_FILE)
    os.makedirs(metrics_dir, exist_ok=True)
    # node_exporter runs as its own user: the textfile must be readable by it.
    with fs.atomic_writer(path, mode=0o644) as handle:
        handle.write(metrics_text(host, found, now))
    return path
