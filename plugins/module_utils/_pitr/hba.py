# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``replication`` line of pg_hba.conf that Barman's WAL stream needs, found missing, shown, added.

A replication connection only matches pg_hba.conf lines whose database column says ``replication``
(``all`` does not cover it). The official postgres image allows replication from loopback only, so
Barman connecting through Docker's bridge (from the gateway's address) is refused. Which line decides
is read from the server itself (``pg_hba_file_rules``: the file as it is on disk, parsed by PostgreSQL)
for the address the server sees this host's connections come from, as PostgreSQL matches: the first
line whose type, database, user and address fit. No line: one is appended (no earlier line matches, so
the new one decides) in the data directory's file, through the same runner the admin session uses (the
container, by docker exec, or this host), then ``SELECT pg_reload_conf()``: no restart. A first match
that rejects or wants another method (cert, ident...) is the operator's choice: refused, never edited.
"""

from __future__ import annotations

import base64
import ipaddress

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Methods a password login from Barman's passfile passes (md5 also accepts a SCRAM-stored password).
PASSWORD_METHODS = ("trust", "password", "md5", "scram-sha-256")
RULES_SQL = ("SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), "
             "coalesce(address, ''), coalesce(netmask, ''), coalesce(auth_method, ''), coalesce(error, '') "
             "FROM pg_hba_file_rules ORDER BY line_number;")
MARK = "# rat.backup pitr: Barman's WAL stream (replication connections) from this host"
# Appends $1 to the file $2, which must exist (the server's own file, never a new one); owner and mode stay.
APPEND = ["sh", "-c", '[ -f "$2" ] && printf "%s" "$1" >> "$2"', "rat-backup-hba"]


def parse_rules(rows):
    """psql's ``line|type|db,..|user,..|address|netmask|method|error`` rows as dicts."""
    rules = []
    for row in rows:
        number, kind, databases, users, address, netmask, method, error = row.split("|", 7)
        rules.append({"line": int(number), "type": kind, "databases": databases.split(","),
                      "users": users.split(","), "address": address, "netmask": netmask, "method": method,
                      "error": error})
    return rules


def _address_matches(rule, client):
    if rule["address"] == "all":
        return True
    try:
        network = ipaddress.ip_address(rule["address"])
        mask = ipaddress.ip_address(rule["netmask"])
    except ValueError:
        # samehost, samenet, a host name: not decided here (counted as no match, so a line may be added).
        return False
    if network.version != client.version:
        return False
    bits = int(mask)
    return int(network) & bits == int(client) & bits


def first_match(rules, user, roles, client, ssl):
    """The rule PostgreSQL applies to a TCP replication connection of ``user`` from ``client``, or None.

    ``roles`` are the roles ``user`` is a member of (for ``+group``); ``ssl`` whether the server has TLS on
    (libpq's default sslmode=prefer then uses it, so hostssl lines apply and hostnossl do not).
    """
    client = ipaddress.ip_address(client)
    types = {"host", "hostnogssenc", "hostssl" if ssl else "hostnossl"}
    for rule in rules:
        if rule["type"] not in types or "replication" not in rule["databases"]:
            continue
        if not any(name in ("all", user) or (name.startswith("+") and name[1:] in roles) for name in rule["users"]):
            continue
        if _address_matches(rule, client):
            return rule
    return None


def line_for(user, client, method):
    """The line added: this one user, this one address, the server's password method."""
    address = ipaddress.ip_address(client)
    return f"host    replication     {user}     {address}/{address.max_prefixlen}     {method}"


def read_file(session, path):
    """The file as the server reads it (bytes), base64 over psql so every byte and newline survives."""
    rows = session.query(f"SELECT encode(pg_read_binary_file({_literal(path)}), 'base64');")
    return base64.b64decode("".join(rows))


def _literal(text):
    return "'" + str(text).replace("'", "''") + "'"


def plan(session, user, roles, client, allowed_to_edit):
    """None when the file already lets the stream in; else {path, line, before, after} of the append.

    Refuses (nothing changed) a file with errors, a first match that would refuse Barman, and a missing line
    when the operator did not allow the edit; each time naming the line.
    """
    path = session.query("SELECT current_setting('hba_file');")[0]
    rules = parse_rules(session.query(RULES_SQL))
    broken = [r for r in rules if r["error"]]
    if broken:
        raise RatBackupError(f"{path} line {broken[0]['line']} has an error ({broken[0]['error']}): PostgreSQL "
                             "would not reload the file; fix it first", path=path)
    ssl = session.query("SELECT current_setting('ssl');")[0] == "on"
    before = read_file(session, path).decode("utf-8", "replace")
    match = first_match(rules, user, roles, client, ssl)
    if match is not None:
        if match["method"] in PASSWORD_METHODS:
            return None
        text = before.splitlines()[match["line"] - 1] if match["line"] <= len(before.splitlines()) else ""
        raise RatBackupError(f"{path} line {match['line']} ({text.strip()}) decides replication connections of "
                             f"{user} from {client} with method {match['method']}: Barman logs in with a password. "
                             "Change that line (it comes before any line this role could add)", path=path)
    method = session.query("SELECT current_setting('password_encryption');")[0]
    line = line_for(user, client, "md5" if method == "md5" else "scram-sha-256")
    if not allowed_to_edit:
        raise RatBackupError(f"{path} allows no replication connection of {user} from {client} (where this host "
                             f"connects from): add the line '{line}' and run SELECT pg_reload_conf(), or let the "
                             "role add it (rat_pitr_pg_hba: true)", path=path, line=line)
    added = ("" if not before or before.endswith("\n") else "\n") + MARK + "\n" + line + "\n"
    return {"path": path, "line": line, "before": before, "after": before + added, "added": added}


def apply(session, runner, change):
    """Append the line through ``runner`` (the container or this host) to the server's own file, then reload.

    The file read through the runner must be the one the server reads (same bytes), so a path that exists on
    this host but belongs to another server is never touched; the server must read the appended file back.
    """
    path = change["path"]
    rc, out, err = runner.run(["cat", path])
    if rc != 0 or out.decode("utf-8", "replace") != change["before"]:
        where = f"container {runner.container!r}" if runner.in_container else "this host"
        raise RatBackupError(f"{path} on {where} is not the file the server reads ({err.strip() or 'other content'}): "
                             f"add the line '{change['line']}' to the server's pg_hba.conf and run "
                             "SELECT pg_reload_conf()", path=path, line=change["line"])
    rc, _out, err = runner.run(APPEND + [change["added"], path])
    if rc != 0 or read_file(session, path).decode("utf-8", "replace") != change["after"]:
        raise RatBackupError(f"cannot append to {path} (rc {rc}: {err.strip()}): add the line '{change['line']}' "
                             "and run SELECT pg_reload_conf()", path=path, line=change["line"])
    session.query("SELECT pg_reload_conf();")


def diff(change):
    return {"before_header": change["path"], "after_header": change["path"], "before": change["before"],
            "after": change["after"]}
