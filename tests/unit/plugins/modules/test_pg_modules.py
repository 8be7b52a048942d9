# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.modules import pg_dump, pg_restore

SECRET = "do-not-print-me"


@pytest.mark.parametrize("module", [pg_dump, pg_restore])
def test_argument_spec_when_compared_to_documentation_matches(module):
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    shared = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = module.argument_spec()
    assert set(spec) == set(documented) | set(shared)
    assert set(shared) == set(postgres.connection_argspec())
    for name, option in {**documented, **shared}.items():
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name]["type"] == option["type"], name


def run_module(module, capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def test_pg_dump_when_jobs_with_custom_format_fails_before_connecting(capsys, tmp_path):
    result = run_module(pg_dump, capsys, {"dest": str(tmp_path / "x.dump"), "jobs": 2, "password": SECRET,
                                          "port": 1})
    assert result["failed"] and "jobs > 1 needs format=directory" in result["msg"]
    assert SECRET not in json.dumps(result)
    assert list(tmp_path.iterdir()) == []


def test_pg_restore_when_src_missing_fails_naming_it(capsys, tmp_path):
    result = run_module(pg_restore, capsys, {"src": str(tmp_path / "none.dump"), "password": SECRET, "port": 1})
    assert result["failed"] and result["msg"] == f"src {tmp_path / 'none.dump'} does not exist"
    assert SECRET not in json.dumps(result)


def test_pg_restore_when_server_unreachable_fails_with_endpoint_and_no_secret(capsys, tmp_path):
    src = tmp_path / "a.dump"
    src.write_bytes(b"PGDMP")
    result = run_module(pg_restore, capsys, {"src": str(src), "password": SECRET, "port": 1, "connect_timeout": 2})
    assert result["failed"] and result["msg"].startswith("cannot connect to PostgreSQL at 127.0.0.1:1 as rat")
    assert SECRET not in json.dumps(result)
