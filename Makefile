# Every target installs what it needs on first use: .venv (Python 3.11) for hostplane,
# .venv-localstack (Python 3.13) for LocalStack's own runtime.
SHELL := /bin/bash
# First interpreter that really runs the wanted version (pyenv shims may exist but refuse).
find_python = $(shell for p in $$(command -v python$(1)) $$HOME/.pyenv/versions/$(1)*/bin/python$(1) /usr/bin/python$(1) /usr/local/bin/python$(1); do "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(1)".split("."))))' >/dev/null 2>&1 && { echo $$p; break; }; done)
PYTHON311 ?= $(call find_python,3.11)
PYTHON313 ?= $(call find_python,3.13)
VENV := .venv
LS_VENV := .venv-localstack
BIN := $(VENV)/bin
EMULATOR ?= moto

.PHONY: demo test unit integration e2e up down status bench contracts localstack-venv chromium bubblewrap clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x "$(BIN)/python" || $(PYTHON311) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

$(LS_VENV)/.installed: localstack-requirements.txt localstack-constraints.txt
	@test -n "$(PYTHON313)" || { echo "LocalStack needs Python 3.13 (python3.13 not found)"; exit 1; }
	test -x "$(LS_VENV)/bin/python" || $(PYTHON313) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --disable-pip-version-check -r localstack-requirements.txt
	touch $@

localstack-venv: $(LS_VENV)/.installed

# The dashboard's browser test drives Debian's Chromium through Playwright (never `playwright install`).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { echo "installing chromium (apt-get)"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

# Each tenant runtime runs under bubblewrap (reloader.sandbox); without it the platform
# falls back to unsandboxed tenants with a loud warning (HOSTPLANE_SANDBOX=auto).
bubblewrap:
	@command -v bwrap >/dev/null || { echo "installing bubblewrap (apt-get)"; \
	  $(SUDO) apt-get install -y -q bubblewrap >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q bubblewrap >/dev/null; }; }

demo: $(VENV)/.installed bubblewrap
	$(BIN)/hostplane demo

up: $(VENV)/.installed bubblewrap
	$(BIN)/hostplane up --emulator $(EMULATOR)

down: $(VENV)/.installed
	$(BIN)/hostplane down

status: $(VENV)/.installed
	$(BIN)/hostplane status

# Every test: unit, integration (both emulators) and end-to-end, on TEST_WORKERS pytest-xdist
# workers (tests/conftest.py schedules them in groups). Exit 5 (no tests) fails.
TEST_WORKERS ?= 3
test: $(VENV)/.installed $(LS_VENV)/.installed chromium bubblewrap
	$(BIN)/python -m pytest -p no:cacheprovider -ra --durations=30 -n $(TEST_WORKERS) tests

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests/unit

integration: $(VENV)/.installed $(LS_VENV)/.installed chromium bubblewrap
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests/integration

e2e: $(VENV)/.installed $(LS_VENV)/.installed chromium bubblewrap
	HOSTPLANE_E2E_EMULATOR=$(EMULATOR) $(BIN)/python -m pytest -p no:cacheprovider -ra tests/e2e

# Every benchmark in bench/; each prints its table and saves JSON under bench/results/.
bench: $(VENV)/.installed $(LS_VENV)/.installed
	set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

contracts: $(VENV)/.installed
	$(BIN)/python -m contracts.generate
	$(BIN)/python -m contracts.app_spec

clean:
	rm -rf $(VENV) $(LS_VENV)
