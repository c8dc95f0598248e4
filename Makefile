# Every target installs what it needs on first use: .venv (Python 3.11) for hostplane,
# .venv-localstack (Python 3.13) for LocalStack's own runtime.
SHELL := /bin/bash
PYTHON311 ?= $(shell command -v python3.11 || ls -d $$HOME/.pyenv/versions/3.11*/bin/python3.11 2>/dev/null | tail -1)
PYTHON313 ?= $(shell command -v python3.13 || ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | tail -1)
VENV := .venv
LS_VENV := .venv-localstack
BIN := $(VENV)/bin
EMULATOR ?= moto

.PHONY: demo test unit integration e2e up down status bench contracts localstack-venv clean

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

demo: $(VENV)/.installed
	$(BIN)/hostplane demo

up: $(VENV)/.installed
	$(BIN)/hostplane up --emulator $(EMULATOR)

down: $(VENV)/.installed
	$(BIN)/hostplane down

status: $(VENV)/.installed
	$(BIN)/hostplane status

# Every test: unit, integration (both emulators) and end-to-end. Exit 5 (no tests) fails.
test: $(VENV)/.installed $(LS_VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests/unit

integration: $(VENV)/.installed $(LS_VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests/integration

e2e: $(VENV)/.installed $(LS_VENV)/.installed
	HOSTPLANE_E2E_EMULATOR=$(EMULATOR) $(BIN)/python -m pytest -p no:cacheprovider -ra tests/e2e

bench: $(VENV)/.installed $(LS_VENV)/.installed
	$(BIN)/python bench/bus.py

contracts: $(VENV)/.installed
	$(BIN)/python -m contracts.generate

clean:
	rm -rf $(VENV) $(LS_VENV)
