# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Matches postgres.connection_argspec() one to one.
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or address of the PostgreSQL server, as seen from where the client runs
        (this host, or inside O(container)).
    type: str
    default: 127.0.0.1
    aliases: [login_host]
  port:
    description:
      - TCP port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [login_port]
  user:
    description:
      - Role to log in as.
    type: str
    default: rat
    aliases: [login_user]
  password:
    description:
      - Password of O(user).
      - Passed to the client programs only in their environment (C(PGPASSWORD)), never on a command
        line; the programs run with C(--no-password), so a wrong or missing password fails at once.
      - Without it, the usual libpq sources apply (C(~/.pgpass), trust or peer authentication).
    type: str
    aliases: [login_password]
  database:
    description:
      - Database to dump or restore into.
    type: str
    default: rat
    aliases: [db, login_db]
  ssl_mode:
    description:
      - Whether and how to use TLS to the server (libpq's C(sslmode), passed as C(PGSSLMODE)).
      - V(verify-ca) checks the server's certificate against O(ca_cert); V(verify-full) also checks
        that O(host) is a name the certificate holds.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate(s) (PEM file) to verify the server's certificate with (C(PGSSLROOTCERT)).
      - A path where the client programs run, so inside O(container) in container mode (mount or
        copy it there, as RAT's compose file does with its certificates).
    type: str
    aliases: [ssl_rootcert]
  container:
    description:
      - Name or id of a running Docker container in which to run the PostgreSQL client programs,
        through the Docker Engine API (as RAT's C(docker compose exec -T postgres pg_dump) does).
      - The container's own client binaries are used, so their version matches its server.
      - Data is streamed between this host and the container; nothing is left in the container.
      - Requires the Python C(docker) SDK on the managed host.
    type: str
  docker_host:
    description:
      - Docker daemon to use with O(container), for example C(unix:///run/docker.sock).
      - Defaults to C(DOCKER_HOST) or the local default socket.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the server to accept a connection (C(PGCONNECT_TIMEOUT)).
    type: int
    default: 10
  client_bin_dir:
    description:
      - Directory holding C(psql), C(pg_dump) and C(pg_restore) (on this host, or inside O(container)).
      - By default, on the host, the client matching the server's major version
        (C(/usr/lib/postgresql/<major>/bin)) is used when installed, else the newest installed one;
        in a container, the programs on its C(PATH).
    type: path
notes:
  - The C(cmd) returned by the modules is the exact argv that ran, with any secret masked.
"""
