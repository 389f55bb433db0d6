# The README's two commands: `make sandbox` (the demo, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test unit sandbox down bench readme clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	bash tests/system_deps.sh
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not e2e'

readme: $(STAMP)
	$(BIN)/python -m deploys.readme

clean:
	rm -rf $(VENV) .pytest_cache
