# The two commands a user needs are `make run` and `make test`; both set up the
# pinned virtualenv in .venv on first use (and again whenever the lock changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint typecheck unit bench lock clean postgres chromium bubblewrap screenshots

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The service on 127.0.0.1:8080 with the embedded SQLite store and the offline scripted
# model; the first start prints the admin API token (also in .chatd/admin.token).
run: $(STAMP)
	$(BIN)/chatd serve

demo: $(STAMP)
	$(BIN)/chatd demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The store tests start a throwaway PostgreSQL cluster from the Debian server binaries;
# install them when missing (as root, non-interactively). Without them the tests fail.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing the PostgreSQL server (apt-get install postgresql)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "PostgreSQL server binaries missing: run 'sudo apt-get install postgresql'" >&2; \
	    exit 1; \
	  fi; }

# The web UI tests drive Debian's headless chromium through Playwright (never a browser
# Playwright downloads); install it when missing, as root, non-interactively.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (apt-get install chromium)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "/usr/bin/chromium missing: run 'sudo apt-get install chromium'" >&2; \
	    exit 1; \
	  fi; }

# Built-in tools run in a bubblewrap sandbox (docs/tools.md); the sandbox tests need it
# and fail without it. Install it when missing, as root, non-interactively.
bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing bubblewrap (apt-get install bubblewrap)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "bwrap missing: run 'sudo apt-get install bubblewrap'" >&2; \
	    exit 1; \
	  fi; }

unit: $(STAMP) postgres chromium bubblewrap
	$(BIN)/pytest --cov --cov-report=term:skip-covered

test: lint typecheck unit

# Re-take the README's UI screenshots (docs/screenshots/) against a scripted replica.
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.web.screenshots

# The benchmarks run in their own venv: the peers (pydantic-ai, openai-agents, the
# LangGraph API server) are pinned in requirements/bench.txt and are never chatd
# dependencies. service_load runs chatd from .venv and starts `langgraph dev` from
# .venv-bench as a subprocess, beside the two bare floors.
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements/bench.txt pyproject.toml
	@test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo '*' > $(BENCH_VENV)/.gitignore
	$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(STAMP) postgres bubblewrap
	$(BENCH_BIN)/python -m benchmarks.loop_overhead
	$(BENCH_BIN)/python -m benchmarks.peers
	$(BIN)/python -m benchmarks.store_commit
	$(BIN)/python -m benchmarks.sandbox_execute
	$(BIN)/python -m benchmarks.service_load --chats 100 300 --langgraph $(BENCH_BIN)/langgraph
	$(BIN)/python -m benchmarks.replicas

# Re-pin every dependency from requirements/dev.in (needs the network).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -r requirements/dev.in
	.lockvenv/bin/pip freeze --all --exclude-editable | grep -v "^pip=="  > requirements/lock.txt
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
