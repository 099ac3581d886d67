# `make run` serves the hub (web + worker) on embedded defaults; `make test` runs the test suite.
# Both create .venv on first use: torch first, from the CPU build pip finds on this machine's
# disk, so nothing pulls a multi-GB CUDA build.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# `make run` is the debug server (its error pages list the URLconf and settings): loopback only,
# unless HOST says otherwise (then HUB_ALLOWED_HOSTS must name the host too).
HOST ?= 127.0.0.1
export HUB_VAR_DIR ?= $(CURDIR)/var
# workers publish through the web server's own HTTP API, so they must know where it listens
export HUB_SITE_URL ?= http://127.0.0.1:$(PORT)

.PHONY: install run web worker worker-gpu test test-fast migrate browser lint

install: $(VENV)/.installed browser

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The browser tests drive Debian's chromium through playwright; `playwright install` (a browser
# download of its own) never runs, it cannot work on an air-gapped machine.
browser:
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "chromium is missing: install Debian's chromium package (the e2e tests skip without it)"

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py ensure_admin
	@echo "hub on http://$(HOST):$(PORT)/ (admin at /admin/); Ctrl-C stops web and workers"
	# a worker per queue, as in production: a fetch or publish never waits behind a long compress
	trap 'kill 0' INT TERM EXIT; \
	$(BIN)/celery -A workers worker -B -Q cpu -P solo -n cpu@%h --loglevel=INFO & \
	$(BIN)/celery -A workers worker -Q gpu -P solo -n gpu@%h --loglevel=INFO & \
	$(BIN)/python manage.py runserver $(HOST):$(PORT) --noreload

web: migrate
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production layout: one CPU worker, and one solo-pool worker per GPU (GPU=0, 1, ...).
worker: install
	$(BIN)/celery -A workers worker -B -Q cpu -P solo -n cpu@%h --loglevel=INFO

worker-gpu: install
	CUDA_VISIBLE_DEVICES=$(GPU) $(BIN)/celery -A workers worker -Q gpu -P solo -n gpu$(GPU)@%h --loglevel=INFO

test: install
	HUB_VAR_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest $(PYTEST_ARGS)

# Style: ruff's formatter and linter (settings in pyproject.toml); `ruff format .` fixes the first.
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
