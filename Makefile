# The README's two commands are `make serve` and `make test`; the other targets are helpers.
# Every target that needs the virtualenv depends on `setup`, which is idempotent and fast when the
# machine is ready, so a fresh clone needs nothing but these commands.

SHELL := /bin/bash
.DEFAULT_GOAL := help

HOST ?= 127.0.0.1
PORT ?= 8000
# The ASGI server of `make serve`: uvicorn (default) or daphne (runtime_project/serve.py).
SERVER ?= uvicorn
PYTEST_ARGS ?=
BENCH_ARGS ?= --record
PY := .venv/bin/python

.PHONY: help setup serve test lint fmt bench worker

help: ## list the targets
	@echo "usage: make <target>   (HOST=$(HOST) PORT=$(PORT) PYTEST_ARGS='$(PYTEST_ARGS)')"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup: ## install system packages, uv, the locked .venv and the sandbox toolchain
	@bash scripts/setup.sh

serve: setup ## migrate, create the admin and demo data, serve on HOST:PORT (default 127.0.0.1:8000) with uvicorn, or SERVER=daphne
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap --host $(HOST) --port $(PORT)
	exec $(PY) -m runtime_project.serve --server $(SERVER) --host $(HOST) --port $(PORT)$(if $(ADMIN_PORT), --admin-port $(ADMIN_PORT))

# scripts/test.sh turns "no tests collected" (pytest exit 5) into a visible failure.
test: setup ## run the test suite (make test PYTEST_ARGS='-k events -x')
	bash scripts/test.sh $(PYTEST_ARGS)

lint: setup ## ruff check, ruff format --check, mypy
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

fmt: setup ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: setup ## run every benchmark, record in bench/RESULTS.md (BENCH_ARGS='--only streams --quick')
	$(PY) bench/all.py $(BENCH_ARGS)

# Start `make serve` first (it applies migrations); the worker runs tasks when TASK_EXECUTOR=worker.
worker: setup ## run a standalone task worker
	exec $(PY) manage.py run_worker
