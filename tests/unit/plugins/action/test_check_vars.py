# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible_collections.rat.backup.plugins.action import check_vars


def _collection(tmp_path, roles, playbooks=None):
    for role, options in roles.items():
        meta = tmp_path / "roles" / role / "meta"
        meta.mkdir(parents=True)
        lines = ["argument_specs:", "  main:", "    options:"]
        lines += ["      %s:\n        type: str" % name for name in options]
        (meta / "argument_specs.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / "playbooks").mkdir()
    for name, text in (playbooks or {}).items():
        (tmp_path / "playbooks" / name).write_text(text)
    return str(tmp_path)


def test_known_variables_when_roles_and_playbooks_exist_reads_every_spec_and_playbook(tmp_path):
    root = _collection(tmp_path, {"backup": ["rat_backup_root", "rat_postgres_host"],
                                  "restore": ["rat_restore_backup"]},
                       {"backup.yml": "hosts: \"{{ rat_backup_hosts | default('all') }}\"\n"})
    assert check_vars.known_variables(root) == {"rat_backup_root", "rat_postgres_host",
                                                "rat_restore_backup", "rat_backup_hosts"}


def test_known_variables_when_libyaml_present_parses_with_it_and_knows_the_same_names(monkeypatch):
    """Read on every run for every host: libyaml's safe loader, a sixth of the pure-Python one's CPU."""
    yaml = pytest.importorskip("yaml")
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml")
    assert check_vars._LOADER is yaml.CSafeLoader  # pylint: disable=protected-access
    monkeypatch.setattr(check_vars, "_CACHE", {})
    with_libyaml = check_vars.known_variables(check_vars.COLLECTION_ROOT)
    monkeypatch.setattr(check_vars, "_CACHE", {})
    monkeypatch.setattr(check_vars, "_LOADER", yaml.SafeLoader)
    assert check_vars.known_variables(check_vars.COLLECTION_ROOT) == with_libyaml and "rat_backup_root" in with_libyaml


def test_known_variables_when_a_role_is_added_learns_it_without_a_list(tmp_path):
    root = _collection(tmp_path, {"backup": ["rat_backup_root"], "offsite": ["rat_offsite_target"]})
    assert "rat_offsite_target" in check_vars.known_variables(root)


def test_known_variables_when_a_role_sets_a_fact_knows_it(tmp_path):
    root = _collection(tmp_path, {"restore_drill": ["rat_drill_components"]})
    tasks = tmp_path / "roles" / "restore_drill" / "tasks"
    tasks.mkdir()
    (tasks / "main.yml").write_text("- ansible.builtin.set_fact:\n    rat_drill_result: {}\n"
                                    "- ansible.builtin.command: x\n  register: rat_drill_info\n"
                                    "  when: rat_drill_typo_in_expression | bool\n")
    known = check_vars.known_variables(root)
    assert {"rat_drill_result", "rat_drill_info"} <= known
    assert "rat_drill_typo_in_expression" not in known


def test_unknown_variables_when_misspelled_suggests_the_known_name():
    known = {"rat_restore_backup", "rat_restore_confirm", "rat_backup_root"}
    found = check_vars.unknown_variables(
        ["rat_restore_backpu", "rat_restore_confirm", "inventory_hostname", "_rat_restore_plan"], known)
    assert found == [("rat_restore_backpu", ["rat_restore_backup"])]


def test_unknown_variables_when_nothing_is_close_names_it_without_suggestion():
    assert check_vars.unknown_variables(["rat_zzz"], {"rat_backup_root"}) == [("rat_zzz", [])]


def test_unknown_variables_when_ignored_by_pattern_accepts_it():
    assert check_vars.unknown_variables(["rat_lab_pg_port", "rat_site_x"], {"rat_backup_root"},
                                        ["rat_lab_*"]) == [("rat_site_x", [])]


def test_describe_when_two_unknown_names_both_with_their_hint():
    msg = check_vars.describe([("rat_restore_backpu", ["rat_restore_backup"]), ("rat_zzz", [])])
    assert msg.startswith("unknown rat_* variables: rat_restore_backpu (did you mean rat_restore_backup?); ")
    assert "rat_zzz (no rat.backup role or playbook reads it)" in msg
    assert "rat_vars_ignore" in msg


def test_known_variables_of_this_collection_cover_the_inventory_contract():
    known = check_vars.known_variables(check_vars.COLLECTION_ROOT)
    assert os.path.isdir(os.path.join(check_vars.COLLECTION_ROOT, "roles"))
    for name in ("rat_postgres_host", "rat_minio_endpoint", "rat_backup_root", "rat_restore_backup",
                 "rat_restore_confirm", "rat_backup_hosts", "rat_restore_hosts"):
        assert name in known
