# Antri: `make run` serves the demo, `make test` runs the suite. Both set up from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# Links in answers, pages and messages point here (issue 14): the server `make run` starts,
# unless the environment names another public address.
PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
export FLASK_APP := app

.PHONY: run test lint format worker bench translations browser vendor clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

translations: $(VENV)/.runtime
	$(BIN)/pybabel compile -d translations

# Browser tests drive Debian's Chromium; printed tickets need fonts for every script and
# the PDF tests read pages with poppler. Install them when we may (root), once.
SYSTEM_PACKAGES := chromium poppler-utils fonts-dejavu-core fonts-droid-fallback
browser:
	@if ! command -v chromium >/dev/null || ! command -v pdftoppm >/dev/null \
	    || [ ! -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "missing: $(SYSTEM_PACKAGES) (apt-get install as root): those tests will skip"; fi; fi

# The gate page's libraries come from npm (package-lock.json pins them): the Ed25519
# verifier for offline scans and the QR decoder for cameras without BarcodeDetector.
VENDOR := static/vendor
VENDOR_FILES := $(VENDOR)/noble-ed25519.js $(VENDOR)/zxing-reader.js $(VENDOR)/zxing_reader.wasm \
	$(VENDOR)/swagger-ui-bundle.js $(VENDOR)/swagger-ui.css
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
$(VENDOR_FILES) &: node_modules/.package-lock.json
	mkdir -p $(VENDOR)
	cp node_modules/@noble/ed25519/index.js $(VENDOR)/noble-ed25519.js
	cp node_modules/zxing-wasm/dist/iife/reader/index.js $(VENDOR)/zxing-reader.js
	cp node_modules/zxing-wasm/dist/reader/zxing_reader.wasm $(VENDOR)/zxing_reader.wasm
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js $(VENDOR)/swagger-ui-bundle.js
	cp node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui.css
vendor: $(VENDOR_FILES)

run: $(VENV)/.runtime translations vendor
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo
	@echo "Antri on http://$(HOST):$(PORT)/  (staff and supervisor sign in at /login; links: $(PUBLIC_BASE_URL))"
	PUBLIC_BASE_URL='$(PUBLIC_BASE_URL)' $(BIN)/flask run --host $(HOST) --port $(PORT)

# The suite runs with the process clock in UTC, then again in Asia/Jakarta: times must
# not depend on the server's zone. The second pass leaves out what the zone does not
# change, to keep CI within its 20 minutes: the browser tests, the slow ones (races
# through real workers, fuzzing) and the PostgreSQL runs (the process zone acts on
# Python's dates, the same code on both databases; PostgreSQL keeps its own zone). The app's clock starts at
# 10:00 WIB on 2026-12-03 whatever the hour; another start, e.g. just before midnight:
#   make test ANTRI_TEST_CLOCK=2026-12-03T23:50:00+07:00
test: $(VENV)/.dev translations browser vendor
	$(if $(ANTRI_TEST_CLOCK),export ANTRI_TEST_CLOCK='$(ANTRI_TEST_CLOCK)';) TZ=UTC $(BIN)/pytest
	$(if $(ANTRI_TEST_CLOCK),export ANTRI_TEST_CLOCK='$(ANTRI_TEST_CLOCK)';) TZ=Asia/Jakarta $(BIN)/pytest -q -m "not browser and not slow" -k "not postgresql"

# One RQ worker (with RQ's schedulers) for messages, reminders, no-shows and purges;
# needs REDIS_URL. Start as many as the load needs; its messages link to PUBLIC_BASE_URL.
worker: $(VENV)/.runtime translations
	PUBLIC_BASE_URL='$(PUBLIC_BASE_URL)' $(BIN)/flask worker

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

messages: $(VENV)/.runtime
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -c TRANSLATORS: --project=Antri --version=0.1.0 -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules $(VENDOR)
