# Two commands set everything up on a fresh machine:
#   make run   - create .venv, install, build the sample forum's index, serve it on http://127.0.0.1:8000
#   make test  - create .venv, install, lint and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qa-search-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
SAMPLE_DUMP  := indexes/sample/threads.jsonl
SAMPLE_INDEX := indexes/sample/index

.PHONY: install browser run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: 2.13.0 is a local CPU wheel; letting sentence-transformers pick a torch
# would download a multi-GB CUDA build. Re-runs only when pyproject.toml or the Makefile change.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	touch $@

# Debian's chromium + chromium-driver, for the demo page's browser test; never a downloaded browser.
# Quick when present; installs with apt-get when run as root (CI), otherwise says how.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	  else echo "qa_search: the demo page test needs: apt-get install chromium chromium-driver (skipped)"; fi; }

install: $(STAMP) browser

$(SAMPLE_INDEX)/CURRENT: $(SAMPLE_DUMP) $(STAMP)
	$(BIN)/qa-search build $(SAMPLE_DUMP) --index $(SAMPLE_INDEX)

run: $(SAMPLE_INDEX)/CURRENT
	@echo "qa_search: serving the sample forum at http://$(HOST):$(PORT)"
	$(BIN)/qa-search serve $(SAMPLE_INDEX) --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) browser lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(SAMPLE_INDEX) .pytest_cache .ruff_cache
