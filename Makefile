# One entry point for people and CI. `make run` and `make test` do all the set-up they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Lambda runs python3.13: the app venv uses it too. pyenv (when present) exposes 3.11-3.13 so `sam build` finds python3.13.
PYENV_VERSIONS := $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-3]\.' | sort -rV | tr '\n' ':')
ifeq ($(strip $(PYENV_VERSION)),)
export PYENV_VERSION := $(PYENV_VERSIONS:%:=%)
endif
PYTHON ?= $(shell command -v python3.13 2>/dev/null || echo python3)
TOOLS_PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3.11 2>/dev/null || echo python3)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

comma := ,
VENV := .venv
TOOLS := .venv-tools
CHECKOV := .venv-checkov
PY := $(VENV)/bin/python
# The lock files (requirements*.txt, made from requirements*.in by `make lock`) pin every package, transitive ones
# included, with the hashes of its files: pip installs nothing else and nothing altered.
PIP_INSTALL := --quiet --disable-pip-version-check --require-hashes
# This machine's pip config names local wheel folders that may be absent; their warnings are noise.
PIP_FILTER := { grep -v '^WARNING: Location' || true; }

.PHONY: help lock run invoke rebuild demo test lint typecheck unit integration template e2e bench clean

help:
	@echo "make run                              start the whole stack locally (page and API on :3000, the live feed on :3001)"
	@echo "make invoke FN=<LogicalId> EVENT=events/<file>.json   run one function on one event (no Docker)"
	@echo "make rebuild [BOARD=weekly [SEASON=2026-W49]]  restore the boards in Redis from DynamoDB (local stack, or REDIS_URL)"
	@echo "make redrive [STACK=<name>] [DRY_RUN=1] [DELETE_INVALID=1]  the scores dead-letter queue back to ScoresQueue, once each"
	@echo "make demo [PLAYERS=12] [MINUTES=3]    simulated players on the running stack (watch http://127.0.0.1:3000/)"
	@echo "make test                             lint, types, unit, integration, template checks, e2e, faults"
	@echo "make faults                           faults under load on the local runtime (about 2 minutes)"
	@echo "make lock                             the hashed lock files (requirements*.txt) from requirements*.in"
	@echo "make bench                            benchmarks -> bench/results.json, BENCHMARKS.md (BENCH_PLAYERS=N for a quick run)"
	@echo "make load [LOAD_USERS=10,40,120] [LOAD_VIEWERS=20] [LOAD_SECONDS=60]  load test -> load/results.json, load/results.md"
	@echo "make e2e API_URL=https://... WS_URL=wss://... LIVE_HTTP_URL=https://...  the e2e suite against a deployed stack"

$(VENV)/.installed: requirements-pip.txt requirements-dev.txt
	@echo "==> Setting up $(VENV) with $$($(PYTHON) --version) and the dev dependencies (first run takes about a minute)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install $(PIP_INSTALL) -r requirements-pip.txt 2>&1 | $(PIP_FILTER)
	@$(PY) -m pip install $(PIP_INSTALL) -r requirements-dev.txt 2>&1 | $(PIP_FILTER)
	@touch $@

$(TOOLS)/.installed: requirements-pip.txt requirements-tools.txt
	@echo "==> Setting up $(TOOLS) with aws-sam-cli and cfn-lint (first run takes a few minutes)"
	@test -x $(TOOLS)/bin/python || $(TOOLS_PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install $(PIP_INSTALL) -r requirements-pip.txt 2>&1 | $(PIP_FILTER)
	@$(TOOLS)/bin/python -m pip install $(PIP_INSTALL) -r requirements-tools.txt 2>&1 | $(PIP_FILTER)
	@touch $@

# checkov pins boto3 and urllib3 apart from aws-sam-cli's: a venv of its own.
$(CHECKOV)/.installed: requirements-pip.txt requirements-checkov.txt
	@echo "==> Setting up $(CHECKOV) with checkov (first run takes a minute)"
	@test -x $(CHECKOV)/bin/python || $(TOOLS_PYTHON) -m venv $(CHECKOV)
	@$(CHECKOV)/bin/python -m pip install $(PIP_INSTALL) -r requirements-pip.txt 2>&1 | $(PIP_FILTER)
	@$(CHECKOV)/bin/python -m pip install $(PIP_INSTALL) -r requirements-checkov.txt 2>&1 | $(PIP_FILTER)
	@touch $@

# The lock files from the requirements*.in: every package pinned with its files' hashes. The layer's is for Lambda
# (CPython 3.13 on arm64); the venvs' hold for any platform. Run after changing a .in; commit both.
UV_COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/uv pip compile --quiet --generate-hashes --no-strip-extras
lock: $(TOOLS)/.installed
	@echo "==> Locking layers/common/requirements.txt, requirements-dev.txt, requirements-tools.txt, requirements-checkov.txt, requirements-pip.txt"
	@$(UV_COMPILE) layers/common/requirements.in --python-version 3.13 --python-platform aarch64-manylinux_2_34 \
	  -o layers/common/requirements.txt
	@$(UV_COMPILE) requirements-dev.in --universal --python-version 3.13 -c layers/common/requirements.txt -o requirements-dev.txt
	@$(UV_COMPILE) requirements-tools.in --universal --python-version 3.11 -o requirements-tools.txt
	@$(UV_COMPILE) requirements-checkov.in --universal --python-version 3.11 -o requirements-checkov.txt
	@$(UV_COMPILE) requirements-pip.in --universal --python-version 3.11 -o requirements-pip.txt

run: $(VENV)/.installed
	@$(PY) -m local

invoke: $(VENV)/.installed
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=events/<file>.json"; exit 2; }
	@$(PY) -m local.invoke "$(FN)" "$(EVENT)"

# Restore the boards from DynamoDB: on the running local stack (or REDIS_URL's Redis when set). Every readable season
# of every board, or BOARD=<id> [SEASON=<name>] for one board or one season.
rebuild: $(VENV)/.installed
	@echo '{$(if $(BOARD),"board": "$(BOARD)"$(if $(SEASON),$(comma) "season": "$(SEASON)"))}' | $(PY) -m local.invoke RebuildBoardFunction -

# Move the players' changes in the scores dead-letter queue back to ScoresQueue, once each (DEPLOY.md, section 7): on
# the running local stack, or STACK=<name> for a deployed one. DRY_RUN=1 only shows what it would do; a message that
# is no change is reported and left, or deleted with DELETE_INVALID=1.
.PHONY: redrive
redrive: $(VENV)/.installed
	@PYTHONPATH=.:layers/common $(PY) -m scripts.redrive $(if $(STACK),--stack-name $(STACK)) \
	  $(if $(DRY_RUN),--dry-run) $(if $(DELETE_INVALID),--delete-invalid)

# Simulated players on the running stack (`make run` in another terminal; API_URL=... for a deployed one).
demo: $(VENV)/.installed
	@$(PY) -m scripts.demo $(if $(PLAYERS),--players $(PLAYERS)) $(if $(MINUTES),--minutes $(MINUTES))

lint: $(VENV)/.installed
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	@echo "==> mypy"
	@$(VENV)/bin/mypy layers/common/leaderboard functions local scripts clients load

unit: $(VENV)/.installed
	@echo "==> unit tests"
	@$(PY) -m pytest tests/unit -q

integration: $(VENV)/.installed
	@echo "==> integration tests (handlers in-process, moto, real Redis)"
	@$(PY) -m pytest tests/integration -q

template: $(TOOLS)/.installed $(VENV)/.installed $(CHECKOV)/.installed
	@echo "==> sam validate --lint, cfn-lint, template tests, checkov, sam build (no Docker)"
	@$(TOOLS)/bin/sam validate --lint
	@$(TOOLS)/bin/cfn-lint template.yaml
	@mkdir -p build
	@# The stack CloudFormation would create (LanguageExtensions, then the SAM transform) and its security properties.
	@$(TOOLS)/bin/python -m pytest tests/template -q
	@$(TOOLS)/bin/python -m tests.template.cloudformation > build/template.translated.json
	@$(CHECKOV)/bin/checkov --config-file .checkov.yaml --file template.yaml
	@# Again on what SAM generates (roles, permissions, the API's stage); the functions' own checks, and the skips
	@# justified beside them, are template.yaml's above.
	@$(CHECKOV)/bin/checkov --config-file .checkov.yaml --file build/template.translated.json \
	  --skip-check CKV_AWS_115,CKV_AWS_116,CKV_AWS_117,CKV_AWS_173
	@$(TOOLS)/bin/sam build --parallel --cached > build/sam-build.log 2>&1 || { cat build/sam-build.log; exit 1; }
	@# What Lambda gets: the layer at python/leaderboard, built for arm64, no dev files, sizes -> build/artifact-sizes.json.
	@$(PY) -m pytest tests/build -q
	@echo "sam build: ok (.aws-sam/build; log in build/sam-build.log)"

# The browser test drives Debian's Chromium (no `playwright install`); CHROMIUM=<path> to use another build.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
$(CHROMIUM):
	@echo "==> Installing Debian's chromium package for the browser test"
	@command -v apt-get >/dev/null || { echo "no apt-get: install Chromium and run make e2e CHROMIUM=<its path>"; exit 1; }
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

# Without API_URL the suite starts the local runtime itself (the same `python -m local` that `make run` starts).
e2e: $(VENV)/.installed $(CHROMIUM)
	@echo "==> e2e tests against $${API_URL:-the local runtime}"
	@$(PY) -m pytest tests/e2e -q

# Redis killed, the consumer killed, duplicates, poison, throttling, a season's reset, all under load (tests/faults).
.PHONY: faults
faults: $(VENV)/.installed
	@echo "==> faults under load (a local runtime of their own, in .local/faults)"
	@$(PY) -m pytest tests/faults -q

test: lint typecheck unit integration template e2e faults

bench: $(VENV)/.installed
	@PYTHONPATH=.:layers/common $(PY) -m bench

# Players and live-feed viewers under locust, headless and bounded, one step per LOAD_USERS count; then every total
# checked exact. Without API_URL it starts the local runtime itself. (load/ is also a folder: the target is phony.)
.PHONY: load
load: $(VENV)/.installed
	@$(PY) -m load

clean:
	rm -rf $(VENV) $(TOOLS) $(CHECKOV) .aws-sam .local build .pytest_cache .mypy_cache .ruff_cache
