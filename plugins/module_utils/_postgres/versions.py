# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL versions: major version keys of servers and clients, the Debian/Ubuntu client installs,
which client to use for a server, and the refusal of a client older than the server (pure but for
the installs' directory listing)."""

from __future__ import annotations

import glob
import os
import re

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

CLIENT_ROOT = "/usr/lib/postgresql"


def version_key(text):
    """'15.18' -> (15,), '9.6.24' -> (9, 6): the major version as PostgreSQL numbers it."""
    parts = [int(p) for p in re.findall(r"\d+", text)[:2]]
    if not parts:
        raise ValueError(text)
    return tuple(parts[:2]) if parts[0] < 10 else (parts[0],)


def server_key(version_num):
    """server_version_num (150018, 90624) -> major version key."""
    num = int(version_num)
    return (num // 10000,) if num >= 100000 else (num // 10000, num // 100 % 100)


def key_text(key):
    return ".".join(str(p) for p in key)


def parse_client_version(output):
    """'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' -> '15.18'."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", output)
    if not match:
        raise RatBackupError(f"cannot read the client version from {output.strip()!r}")
    return match.group(1)


def installed_clients(root=CLIENT_ROOT):
    """{major key: bin dir} of the Debian/Ubuntu client installs under ``root``."""
    found = {}
    for bin_dir in glob.glob(os.path.join(root, "*", "bin")):
        if os.access(os.path.join(bin_dir, "pg_dump"), os.X_OK):
            try:
                found[version_key(os.path.basename(os.path.dirname(bin_dir)))] = bin_dir
            except ValueError:
                continue
    return found


def choose_bin_dir(server, installed, explicit=None):
    """Client directory for a server of major ``server``: explicit, else the same major, else the newest.

    ``None`` means "whatever is on PATH". Whether the choice is new enough is checked separately,
    against the version the chosen pg_dump reports.
    """
    if explicit:
        return explicit
    if server in installed:
        return installed[server]
    if installed:
        return installed[max(installed)]
    return None


def check_client_new_enough(program, client_version, server_version, server, in_container):
    """pg_dump refuses (or worse, silently mis-dumps) servers newer than itself: fail before starting."""
    if version_key(client_version) >= server:
        return
    major = key_text(server)
    if in_container:
        fixes = (f"use a container whose {program} is PostgreSQL {major} or newer, or set client_bin_dir "
                 "to such a client inside the container")
    else:
        fixes = (f"install the PostgreSQL {major} client (Debian/Ubuntu: postgresql-client-{major}, which provides "
                 f"{CLIENT_ROOT}/{major}/bin), set client_bin_dir to a client >= {major}, or use container mode "
                 "(container) so the server's own client runs")
    raise RatBackupError(
        f"{program} {client_version} is older than the server (PostgreSQL {server_version}): {fixes}",
        client_version=client_version, server_version=server_version,
    )
