# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Matches pg_cli.connection_argspec() one to one.
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or address of the PostgreSQL server, as seen from where the client runs
        (this host, or inside O(container)).
    type: str
    default: 127.0.0.1
  port:
    description:
      - TCP port of the PostgreSQL server.
    type: int
    default: 5432
  user:
    description:
      - Role to log in as.
    type: str
    default: rat
  password:
    description:
      - Password of O(user).
      - Passed to the client programs only in their environment (C(PGPASSWORD)), never on a command
        line; the programs run with C(--no-password), so a wrong or missing password fails at once.
      - Without it, the usual libpq sources apply (C(~/.pgpass), trust or peer authentication).
    type: str
  database:
    description:
      - Database to dump or restore into.
    type: str
    default: rat
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
