# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository's ansible.cfg, as Ansible itself reads it, has the controller settings README.md
recommends for a fleet's backups (and the benches run with): pipelining, and the main process checking
on its workers every 5 ms instead of every 1 ms."""

from __future__ import annotations

import os

from ansible.config.manager import ConfigManager

ANSIBLE_CFG = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "ansible.cfg")


def test_ansible_cfg_when_read_by_ansible_then_pipelining_and_a_5_ms_poll_interval():
    config = ConfigManager(conf_file=ANSIBLE_CFG)
    assert config.get_config_value("ANSIBLE_PIPELINING") is True
    assert config.get_config_value("DEFAULT_INTERNAL_POLL_INTERVAL") == 0.005
