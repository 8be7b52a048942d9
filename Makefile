# rat.backup: operator commands and the test entry points. Everything a fresh Debian 12 machine
# needs is installed by lab/deps.sh, called from here; lab/README.md describes the lab.
#
#   make backup                     lab up + seed (once) + one backup of the lab host
#   make restore                    list the lab host's backups
#   make restore BACKUP=<name>|latest   restore one of them onto the lab
#   make test                       sanity + unit + integration + ansible-lint (what CI runs)
#   make sanity | units | integration | lint    one stage (TARGETS="a b" selects integration targets)
#   make bench                      every bench/bench_*.py against the lab
#   make lab-up | lab-down | lab-status | seed

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(REPO)/.venv
PLAYBOOK := $(VENV)/bin/ansible-playbook
LAB_INVENTORY := inventory/lab
BACKUP ?=
TARGETS ?=

.PHONY: help deps deps-backup backup restore test sanity units integration lint bench \
	lab-up lab-down lab-status seed

help:
	@sed -n '1,11p' $(REPO)/Makefile | sed 's/^# \{0,1\}//'

deps:
	lab/deps.sh all

deps-backup:
	lab/deps.sh backup

lab-up: deps-backup
	lab/up.sh

lab-down:
	lab/down.sh

lab-status:
	lab/status.sh

seed: lab-up
	lab/seed.sh

backup: deps-backup
	lab/up.sh
	lab/seed.sh --if-needed
	$(PLAYBOOK) playbooks/backup.yml -i $(LAB_INVENTORY)
	lab/show-backup.sh

restore: deps-backup
	lab/up.sh
ifeq ($(strip $(BACKUP)),)
	$(PLAYBOOK) playbooks/restore.yml -i $(LAB_INVENTORY)
else
	$(PLAYBOOK) playbooks/restore.yml -i $(LAB_INVENTORY) \
		-e rat_restore_backup='$(BACKUP)' -e rat_restore_confirm=rat-lab
endif

test: deps
	tests/run_tests.sh --lab all

sanity: deps
	tests/run_tests.sh sanity

units: deps
	tests/run_tests.sh units

integration: deps
	tests/run_tests.sh --lab integration

lint: deps
	tests/run_tests.sh lint

bench: deps
	lab/up.sh --docker
	lab/seed.sh --if-needed
	lab/bench.sh
