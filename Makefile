# Two commands: `make run` serves the app, `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test lint format install dev bench screenshots clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

run: install
	$(PY) app.py

lint: dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest

# The README's screenshots, taken by the browser tests from the real page with a real result.
screenshots: dev
	SCREENSHOT_DIR=docs $(PY) -m pytest -q tests/test_browser.py -k "upload_caption or phone_viewport"

bench: install
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/store.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
