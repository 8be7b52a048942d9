# rat.backup: operator commands and the test entry points. Everything a fresh Debian 12 machine
# needs is installed by lab/deps.sh, called from here; lab/README.md describes the lab.
#
#   make backup                     lab up + seed (once) + one backup of the lab host
#   make restore                    list the lab host's backups
#   make restore BACKUP=<name>|latest   restore one of them onto the lab
#   make test                       what CI runs: sanity + unit (lowest and highest ansible-core),
#                                   integration, ansible-lint, package (tarball, docs, changelog, EE)
#   make sanity | units | integration | lint | package    one stage (TARGETS="a b" for integration)
#   make release                    changelog lint + dist/rat-backup-<version>.tar.gz
#   make ee-context                 the execution environment's build context in ./context
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

.PHONY: help deps deps-backup backup restore test sanity units integration lint package release ee-context bench \
	lab-up lab-down lab-status seed

help:
	@sed -n '1,14p' $(REPO)/Makefile | sed 's/^# \{0,1\}//'

deps:
	lab/deps.sh all

deps-backup:
	lab/deps.sh backup

lab-up: deps-backup
	lab/up.sh

lab-down:
	lab/down.sh

# A lab that is down is an answer, not a failure of make: scripts that need the exit code call
# lab/status.sh directly.
lab-status:
	@lab/status.sh || echo "The lab is not (fully) running: make lab-up starts it."

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
	$(PLAYBOOK) playbooks/restore.yml -i $(LAB_INVENTORY) \
		-e '{"rat_restore_usage": "make restore BACKUP=<name> (or BACKUP=latest)"}'
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

package: deps
	tests/run_tests.sh package

release: deps
	cd $(REPO) && $(VENV)/bin/antsibull-changelog lint
	rm -rf $(REPO)/dist
	$(VENV)/bin/ansible-galaxy collection build --output-path $(REPO)/dist $(REPO)

ee-context: release
	cd $(REPO) && rm -rf context && $(VENV)/bin/ansible-builder create --file execution-environment.yml --context context

bench: deps
	lab/up.sh --docker
	lab/seed.sh --if-needed
	lab/bench.sh
