# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a finished backup run tells the outside world, in one place (as borgmatic keeps its
monitoring hooks apart from the work): the Prometheus textfile, the one log line, the log file.

``report`` is called once per run, at commit or abort, by the backup_run module; the work itself
never reports. The per-host summary for AWX (``set_stats``) is built from these results by the
backup role's report tasks, since only a play can publish job stats.
"""

from __future__ import annotations

import os
import re

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout

METRICS_FILE = "rat_backup.prom"


def report(host, ok, name, now, stats=None, reason=None, log_file=None, metrics_dir=None):
    """Log line (returned, and appended to ``log_file``) and metrics file of one backup run."""
    duration = duration_since(name, now)
    out = {"log_line": log_line(host, "ok" if ok else "failed", name, now, duration, stats, reason)}
    if log_file:
        append_log(log_file, out["log_line"])
    if metrics_dir:
        out["metrics_file"] = write_metrics(metrics_dir, host, ok, now, duration, (stats or {}).get("bytes"),
                                            (stats or {}).get("objects"))
    return out


_METRIC_RE = re.compile(r"^rat_backup_last_success_timestamp_seconds(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$")


def write_metrics(metrics_dir, host, ok, now, duration, size, objects):
    """Prometheus textfile (node_exporter textfile collector), replaced atomically.

    A failed run keeps the last success timestamp from the previous file so alerts on its age work.
    """
    path = os.path.join(metrics_dir, METRICS_FILE)
    last_success = None
    if ok:
        last_success = now.timestamp()
    else:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                for line in handle:
                    match = _METRIC_RE.match(line.strip())
                    if match:
                        last_success = float(match.group(1))
        except OSError:
            pass
    label = '{host="%s"}' % host.replace("\\", "\\\\").replace('"', '\\"')
    lines = []

    def metric(name, help_text, value):
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f"{name}{label} {value}"])

    if last_success is not None:
        metric("rat_backup_last_success_timestamp_seconds", "Unix time of the last successful backup.",
               f"{last_success:.3f}")
    metric("rat_backup_last_run_timestamp_seconds", "Unix time the last backup run ended.", f"{now.timestamp():.3f}")
    metric("rat_backup_last_status", "1 if the last backup run succeeded, 0 if it failed.", 1 if ok else 0)
    metric("rat_backup_last_duration_seconds", "Duration of the last backup run.", f"{duration or 0:.3f}")
    metric("rat_backup_last_bytes", "Bytes captured by the last successful backup (dump + objects).", size or 0)
    metric("rat_backup_last_objects", "Objects captured by the last successful backup.", objects or 0)
    os.makedirs(metrics_dir, exist_ok=True)
    # node_exporter runs as its own user: the textfile must be readable by it.
    with fs.atomic_writer(path, mode=0o644) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def log_line(host, status, name, now, duration, stats, reason=None):
    """The one line a run leaves in the log: greppable key=value pairs, no secrets."""
    parts = [f"{fs.iso(now)} rat-backup host={host} status={status} name={name or '-'} duration={duration or 0:.1f}s"]
    # bytes: what the backup holds (dump + objects); new_bytes: what it added to the disk; copied
    # and linked: its files written by this run and hard-linked from the previous backup.
    for key in ("bytes", "new_bytes", "copied", "linked", "objects", "tables", "rows"):
        if stats and stats.get(key) is not None:
            parts.append(f"{key}={stats[key]}")
    if reason:
        parts.append(f"reason={' '.join(str(reason).split())[:300]}")
    return " ".join(parts)


def append_log(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, fs.FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def duration_since(name, now):
    created = layout.time_of(name) if name else None
    return (now - created).total_seconds() if created else 0.0
