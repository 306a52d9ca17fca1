# eventgate: set-up, the stack, and the tests. Run from the repository root; needs no terminal.
#
# Settings come from EVENTGATE_* environment variables (see README.md), e.g.
#   EVENTGATE_PORT=9090 EVENTGATE_VAR_DIR=/tmp/eg make up
# EVENTGATE_WEB_WORKERS / EVENTGATE_STREAM_WORKERS set the gunicorn worker counts.

SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV ?= .venv
PYTHON := $(VENV)/bin/python
EVENTGATE_VAR_DIR ?= var
EVENTGATE_WEB_WORKERS ?= 2
EVENTGATE_STREAM_WORKERS ?= 2
export EVENTGATE_VAR_DIR

CONF := $(EVENTGATE_VAR_DIR)/conf/supervisord.conf
SUPERVISORCTL := $(VENV)/bin/supervisorctl -c $(CONF)
RENDER := $(PYTHON) -m eventgate.deploy.stack render \
	--web-workers $(EVENTGATE_WEB_WORKERS) --stream-workers $(EVENTGATE_STREAM_WORKERS)

.PHONY: deps system-deps test-deps init run up down status restart reload test test-latest lint bench \
	bench-nchan soak

## deps: apt packages (redis-server, nginx) when missing, and the .venv with the project
deps: system-deps $(VENV)/.installed

system-deps:
	@bash deploy/system-deps.sh

## test-deps: also what only the tests need (chromium, PostgreSQL, network tools: see the script)
test-deps: deps
	@bash deploy/system-deps.sh --test

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[test,dev]'
	touch $@

## init: write $(EVENTGATE_VAR_DIR)/eventgate.env with fresh dev secrets (first run only)
init: deps
	@$(PYTHON) -m eventgate.deploy.stack init >/dev/null

## run: the whole stack in the foreground; Ctrl-C stops it all
run: init
	@$(RENDER) --foreground >/dev/null
	exec $(VENV)/bin/supervisord -n -c $(CONF)

## up: the stack in the background; returns once GET /healthz answers through nginx
up: init
	@$(RENDER) >/dev/null
	@if $(SUPERVISORCTL) pid >/dev/null 2>&1; then \
		echo "eventgate: already running (make restart to restart it)"; \
	else \
		$(VENV)/bin/supervisord -c $(CONF); \
	fi
	@$(PYTHON) -m eventgate.deploy.stack wait-healthy --timeout 60
	@$(SUPERVISORCTL) status || true

## down: stop the stack and wait until every process is gone (does nothing when it is down)
down:
	@if [ -f $(CONF) ] && [ -x $(VENV)/bin/supervisorctl ]; then \
		$(PYTHON) -m eventgate.deploy.stack stop --timeout 90; \
	fi

status:
	@$(SUPERVISORCTL) status

## restart: stop and start every program (a gap: nginx answers streams with retry meanwhile)
restart:
	$(SUPERVISORCTL) restart all

## reload: new gunicorn workers with fresh code, no closed listening socket
reload:
	$(SUPERVISORCTL) signal HUP web stream

test: test-deps
	$(VENV)/bin/pytest -q

## test-latest: the suite against the newest release of every dependency, our upper bounds
## ignored, in its own venv (.venv-latest): a break shows here before an upgrade reaches a user.
## The project goes in without its dependencies; then each one, by name alone, --upgrade.
LATEST := .venv-latest
test-latest: test-deps
	[ -x $(LATEST)/bin/python ] || python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --no-deps -e .
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
		$$($(PYTHON) -c "$$DEPENDENCY_NAMES")
	$(LATEST)/bin/python -m pip list
	@# The suite's own `make up` runs take this venv as it is (VENV), never reinstalling our bounds.
	touch $(LATEST)/.installed
	VENV=$(LATEST) $(LATEST)/bin/pytest -q

# Every dependency of the base install and of the server, outbox, postgres and test extras, by
# name (extras kept, versions dropped); eventgate's own extras the test extra names are listed.
define DEPENDENCY_NAMES
import tomllib
from packaging.requirements import Requirement
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
names = {}
for line in project["dependencies"] + [
    line for extra in ("server", "outbox", "postgres", "test") for line in extras[extra]
]:
    requirement = Requirement(line)
    if requirement.name != "eventgate":
        names[requirement.name + "".join(f"[{x}]" for x in sorted(requirement.extras))] = None
print(*names)
endef
export DEPENDENCY_NAMES

lint: deps
	$(VENV)/bin/ruff check .

## bench: the benchmark (bench/run.py: the stream worker alone, the full path through the stack's
## nginx, nchan and flask-sse; QUICK=1 for a few-minute subset). Never part of `make test`.
## Installs what only the comparisons need first: flask-sse (the bench extra) and nchan.
bench: deps $(VENV)/.bench-installed bench-nchan
	$(PYTHON) bench/run.py $(if $(QUICK),--quick)

## soak: S6, 10,000 streams for 10 minutes with churn through the whole stack (bench/soak.py;
## MINUTES=N for another length): every event delivered, each process's memory slope.
soak: deps $(VENV)/.bench-installed
	$(PYTHON) bench/soak.py $(if $(MINUTES),--minutes $(MINUTES))

# nchan is nginx's own pub/sub module (Debian's libnginx-mod-nchan), loaded only by the bench's
# nginx config; the stack's nginx never loads it.
bench-nchan:
	@bash deploy/system-deps.sh --bench

$(VENV)/.bench-installed: pyproject.toml
	$(PYTHON) -m pip install --quiet -e '.[test,dev,bench]'
	touch $@
