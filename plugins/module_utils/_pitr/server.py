# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What point-in-time recovery needs inside PostgreSQL, read and planned over an admin psql session.

Only objects are created (a replication role with the backup privileges Barman needs, a physical
replication slot): the server's configuration is read and a shortfall refused with the setting and
the value it needs, never changed, since a stock container keeps its own configuration and a change
would need a restart. Each change is a (description, SQL) pair, so check mode shows the same list the
real run executes.
"""

from __future__ import annotations

import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Roles whose rights Barman's checks and status read (settings, replication statistics); checkpoint
# rights (PostgreSQL 15 and later) let pg_basebackup ask for a fast checkpoint.
GRANTED_ROLES = ("pg_read_all_settings", "pg_read_all_stats")
GRANTED_ROLES_15 = GRANTED_ROLES + ("pg_checkpoint",)
# The backup functions, by the names of PostgreSQL 15 and later, and before.
FUNCTIONS_15 = ("pg_backup_start(text, boolean)", "pg_backup_stop(boolean)", "pg_switch_wal()",
                "pg_create_restore_point(text)")
FUNCTIONS_OLD = ("pg_start_backup(text, boolean, boolean)", "pg_stop_backup()", "pg_stop_backup(boolean, boolean)",
                 "pg_switch_wal()", "pg_create_restore_point(text)")


def literal(text):
    return "'" + str(text).replace("'", "''") + "'"


def ident(text):
    return '"' + str(text).replace('"', '""') + '"'


def _one(session, sql):
    rows = session.query(sql)
    return rows[0] if rows else ""


def settings_problems(session):
    """Settings that keep WAL streaming from working, in words (empty: none)."""
    row = _one(session, "SELECT current_setting('wal_level'), current_setting('max_wal_senders'), "
                        "current_setting('max_replication_slots');")
    wal_level, senders, slots = row.split("|")
    problems = []
    if wal_level not in ("replica", "logical"):
        problems.append(f"wal_level is {wal_level}: it must be replica (PostgreSQL's default) or logical")
    if int(senders) < 2:
        problems.append(f"max_wal_senders is {senders}: it must be at least 2 (the stream and a base backup)")
    if int(slots) < 1:
        problems.append(f"max_replication_slots is {slots}: it must be at least 1")
    return problems


def _exists(session, sql):
    return _one(session, sql) == "t"


def plan(session, user, slot, server_version_num):
    """The changes still needed for ``user`` and ``slot``, as [(description, sql)], in order."""
    changes = []
    role = literal(user)
    # A role about to be created has no rights yet (and cannot be asked about: the queries need it to exist).
    created = not _exists(session, f"SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = {role});")
    if created:
        changes.append((f"create role {user} (LOGIN REPLICATION)", f"CREATE ROLE {ident(user)} LOGIN REPLICATION;"))
    elif not _exists(session, f"SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = {role};"):
        changes.append((f"give role {user} LOGIN REPLICATION", f"ALTER ROLE {ident(user)} LOGIN REPLICATION;"))
    for granted in GRANTED_ROLES_15 if server_version_num >= 150000 else GRANTED_ROLES:
        if created or not _exists(session, f"SELECT pg_has_role({role}, {literal(granted)}, 'MEMBER');"):
            changes.append((f"grant {granted} to {user}", f"GRANT {granted} TO {ident(user)};"))
    for function in FUNCTIONS_15 if server_version_num >= 150000 else FUNCTIONS_OLD:
        if created or not _exists(session, f"SELECT has_function_privilege({role}, {literal(function)}, 'EXECUTE');"):
            changes.append((f"allow {user} to execute {function}",
                            f"GRANT EXECUTE ON FUNCTION {function} TO {ident(user)};"))
    if not _exists(session, f"SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {literal(slot)});"):
        changes.append((f"create physical replication slot {slot}",
                        f"SELECT pg_create_physical_replication_slot({literal(slot)});"))
    return changes


def member_of(session, user):
    """Roles ``user`` is a member of, or will be once ``plan`` is applied (for pg_hba.conf's ``+group``)."""
    rows = session.query(f"SELECT r.rolname FROM pg_roles r, pg_roles u WHERE u.rolname = {literal(user)} "
                         "AND pg_has_role(u.oid, r.oid, 'MEMBER');")
    return set(rows) | set(GRANTED_ROLES_15) | {user}


def system_identifier(session):
    return _one(session, "SELECT system_identifier FROM pg_control_system();")


def set_password(session, user, password):
    """Give ``user`` its password; the statement is kept out of the server log."""
    session.query(f"SET log_statement = 'none'; ALTER ROLE {ident(user)} PASSWORD {literal(password)}; "
                  "RESET log_statement;")


def apply(session, changes):
    for _description, sql in changes:
        session.query(sql)


def removal(session, user, slot):
    """What state=absent removes: the slot (else the server keeps WAL for it forever) and the role."""
    changes = []
    if _exists(session, f"SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {literal(slot)});"):
        changes.append((f"drop replication slot {slot}", f"SELECT pg_drop_replication_slot({literal(slot)});"))
    if _exists(session, f"SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(user)});"):
        changes.append((f"drop role {user}", f"DROP OWNED BY {ident(user)}; DROP ROLE {ident(user)};"))
    return changes


def wait_released(session, slot, timeout, sleep=time.sleep, clock=time.monotonic):
    """Wait until no receiver holds ``slot`` (a slot in use cannot be dropped)."""
    deadline = clock() + timeout
    while _exists(session, f"SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {literal(slot)} "
                           "AND active);"):
        if clock() >= deadline:
            raise RatBackupError(f"replication slot {slot} is still in use after {timeout} s", slot=slot)
        sleep(0.5)


def require_superuser(session, who):
    if not _exists(session, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;"):
        raise RatBackupError(f"{who} is not a superuser: creating a REPLICATION role needs one (RAT's POSTGRES_USER "
                             "is; give its name and password as the admin user)")
