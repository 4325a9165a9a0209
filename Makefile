# Two commands set everything up on a fresh machine:
#   make run   - create .venv, install, build the sample forum's index, serve it on http://127.0.0.1:8000
#   make test  - create .venv, install, check (ruff, import layers, mypy, docs) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qa-search-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
SAMPLE_DUMP  := indexes/sample/threads.jsonl
SAMPLE_INDEX := indexes/sample/index

.PHONY: install browser run test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned and with pip: 2.13.0 is a local CPU wheel that uv does not see; letting
# sentence-transformers pick a torch would download a multi-GB CUDA build. The rest with uv where
# it is installed (several times faster), held to the torch already there; else with pip.
# The installers' output goes to a log, shown only when an install fails (less pip's warnings
# about configured index folders that lack a package). Re-runs only when pyproject.toml or the
# Makefile change.
TORCH       := torch==2.13.0
INSTALL_LOG := $(VENV)/install.log
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input
SHOW_LOG    := { grep -v 'is ignored: it is neither a file nor a directory' $(INSTALL_LOG) >&2; exit 1; }

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@echo "qa_search: installing into $(VENV) (minutes the first time; details in $(INSTALL_LOG))"
	@$(PIP_INSTALL) $(TORCH) >$(INSTALL_LOG) 2>&1 || $(SHOW_LOG)
	@if command -v uv >/dev/null; then \
	  echo '$(TORCH)' >$(VENV)/torch-constraint.txt && \
	  uv pip install --quiet --python $(BIN)/python -c $(VENV)/torch-constraint.txt -e '.[dev,ray,sync]'; \
	else $(PIP_INSTALL) -e '.[dev,ray,sync]'; fi >>$(INSTALL_LOG) 2>&1 || $(SHOW_LOG)
	@touch $@

# Debian's chromium + chromium-driver, for the demo page's browser test; never a downloaded browser;
# and mariadb-server + postgresql, servers the sync tests start privately in a temporary directory.
# Quick when present; installs with apt-get when run as root (CI), otherwise says how.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v mariadb-install-db >/dev/null \
	  && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	      mariadb-server postgresql; \
	  else echo "qa_search: the demo page and sync tests need: apt-get install chromium chromium-driver" \
	    "mariadb-server postgresql (skipped)"; fi; }

install: $(STAMP) browser

$(SAMPLE_INDEX)/CURRENT: $(SAMPLE_DUMP) $(STAMP)
	$(BIN)/qa-search build $(SAMPLE_DUMP) --index $(SAMPLE_INDEX)

# exec: the server takes the shell's place, so Ctrl-C or a SIGTERM reaches it alone and it ends
# as it would run by hand (an ordinary exit, no "make: *** ... Terminated")
run: $(SAMPLE_INDEX)/CURRENT
	@echo "qa_search: serving the sample forum at http://$(HOST):$(PORT) (Ctrl-C stops it)"
	@exec $(BIN)/qa-search serve $(SAMPLE_INDEX) --host $(HOST) --port $(PORT)

# the checks, in order: style, the layers between packages (import-linter, pyproject.toml's
# [tool.importlinter]), types (mypy, [tool.mypy]), the documentation site, then the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about MkDocs 2.0, printed on every build
docs: $(STAMP)
	@if [ -f mkdocs.yml ]; then NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet; \
	else echo "qa_search: no mkdocs.yml yet; the documentation site is not built"; fi

test: $(STAMP) browser lint docs
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(SAMPLE_INDEX) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache site
