# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL face: what the modules (and ``compare``, ``pitr``, ``postgres_restore``) call;
``_postgres/`` is private to it.

What lives here: the connection options (declared once, documented by the ``rat.backup.postgres``
doc fragment) and ``client_from_params``; the rest is named here and defined in ``_postgres/``: the
check a backup starts with and the dump (``_postgres/dump.py``: at an exported snapshot whose moment
is read from PostgreSQL in the exporting statement, the consistency point; linked to the previous
dump when only its creation time differs), the client itself (argv, psql session:
``_postgres/client.py``; which client for which server: ``_postgres/versions.py``), client programs
run on the host or in a container (``_postgres/programs.py``, ``_postgres/docker_exec.py``), and
reading an archive without a server (``_postgres/archive.py``). The restore is a face of its own
(``postgres_restore``, built on the names here), so a backup's modules never ship it.
"""

from __future__ import annotations

import copy

from ansible_collections.rat.backup.plugins.module_utils._postgres.client import Client, Connection
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import Runner
# The face's names for the rest (modules call postgres.dump, postgres.check, ...); the definitions
# live in _postgres/.
from ansible_collections.rat.backup.plugins.module_utils._postgres.client import archive_reader, count_rows  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.versions import (  # pylint: disable=unused-import
    installed_clients, key_text, parse_client_version, server_key, version_key)
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import first_lines  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.dump import DumpSpec, check, dump, start as start_dump  # pylint: disable=unused-import
# What the restore (postgres_restore, _postgres_restore/) runs its programs with.
from ansible_collections.rat.backup.plugins.module_utils._postgres.archive import toc_summary  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.client import program  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.docker_exec import STDERR  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import STDERR_LIMIT, communicate  # pylint: disable=unused-import

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Aliases and the TLS options carry community.postgresql's names, so its users' habits work.
_CONNECTION_ARGSPEC = dict(
    host=dict(type="str", default="127.0.0.1", aliases=["login_host"]),
    port=dict(type="int", default=5432, aliases=["login_port"]),
    user=dict(type="str", default="rat", aliases=["login_user"]),
    password=dict(type="str", no_log=True, aliases=["login_password"]),
    database=dict(type="str", default="rat", aliases=["db", "login_db"]),
    ssl_mode=dict(type="str", default="prefer", choices=list(SSL_MODES)),
    ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
    container=dict(type="str"),
    docker_host=dict(type="str"),
    connect_timeout=dict(type="int", default=10),
    client_bin_dir=dict(type="path"),
)


def connection_argspec():
    """The connection options every PostgreSQL module shares (fresh copy, safe to extend)."""
    return copy.deepcopy(_CONNECTION_ARGSPEC)


def client_from_params(params):
    """The Client for a module's connection options (host or container mode)."""
    runner = Runner(params.get("container"), params.get("docker_host"))
    return Client(runner, Connection.from_params(params), params.get("client_bin_dir"))
