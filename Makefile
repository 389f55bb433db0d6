# The README's two commands: `make sandbox` (the demo, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test unit lint sandbox down bench bench-converge readme locks clean screenshot fixtures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Two passes: the tests off the sandbox fleets on 2 workers (pytest-xdist), then, without -n, the fleet modules one
# at a time (each module's fleet has fixed container names) and the tests that assert a time bound measured inside
# them (marker serial, tests/conftest.py). Both passes run even when the first fails; the target fails when either
# did. --durations: where the time went, in CI's log.
test: $(STAMP) lint
	bash tests/system_deps.sh
	bash tests/sandbox/docker_daemon.sh
	$(BIN)/python -m pytest -n 2 -m 'not fleet and not serial' --durations=15; first=$$?; \
	$(BIN)/python -m pytest -m 'fleet or serial' --durations=30; second=$$?; \
	test $$first -eq 0 -a $$second -eq 0

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m 'not e2e and not serial'; first=$$?; \
	$(BIN)/python -m pytest -m 'serial and not e2e'; second=$$?; \
	test $$first -eq 0 -a $$second -eq 0

# ruff (config in pyproject.toml): lint rules, then the formatter in check mode.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The demo: a 3-host sandbox fleet and its front door, the real deploy on it, the verification table and a curl line.
sandbox: $(STAMP)
	bash tests/system_deps.sh
	bash tests/sandbox/docker_daemon.sh
	$(BIN)/python -m tests.sandbox up --hosts 3 --front-door --monitoring
	$(BIN)/pyinfra inventories/sandbox.py deploys/all.py -y
	$(BIN)/python -m tests.sandbox status

# docs/monitoring.md's picture: Prometheus's graph page on the sandbox (make sandbox first) under a bounded load, by headless Chromium.
screenshot: $(STAMP)
	command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
	$(BIN)/python -m tests.sandbox.screenshot

down: $(STAMP)
	$(BIN)/python -m tests.sandbox down

# Converge 1, 2 and 3 hosts, a no-op re-run, model bytes, busy CPU-seconds; ends with one JSON line.
bench: $(STAMP)
	bash tests/system_deps.sh
	bash tests/sandbox/docker_daemon.sh
	$(BIN)/python -m tests.sandbox.bench

bench-converge: $(STAMP)  # the 1-host converge only, in rounds (tests/sandbox/bench.py --converge)
	bash tests/system_deps.sh
	bash tests/sandbox/docker_daemon.sh
	$(BIN)/python -m tests.sandbox.bench --converge

# The attention-window reference fixtures (tests/data/attention_window/, committed) from transformers' own Gemma 3,
# in their own environment (torch + transformers, about 1.3 GB): CI never runs this, it reads the committed files.
FIXTURES_VENV := tools/fixtures/.venv
fixtures:
	test -x $(FIXTURES_VENV)/bin/python || $(PYTHON) -m venv $(FIXTURES_VENV)
	$(FIXTURES_VENV)/bin/pip install --quiet -r tools/fixtures/requirements.txt
	$(FIXTURES_VENV)/bin/python tools/fixtures/make_fixtures.py

# The generated parts of docs/: the tunables table (docs/settings.md) and the repository tree (docs/layout.md, from git ls-files).
readme: $(STAMP)
	$(BIN)/python -m deploys.tools.readme

# The verify and gateway runtimes' hashed locks (verify/requirements-*.txt, embeddings_gateway/requirements.txt) from their .in files
# (pip-compile --generate-hashes, in .cache/locktool-<version>), then each installed with
# --require-hashes on every host CPython found here (deploys/tools/locks.py; the GPU lock: ~3 GB).
locks:
	$(PYTHON) deploys/tools/locks.py compile
	$(PYTHON) deploys/tools/locks.py check

clean:
	rm -rf $(VENV) .pytest_cache
