# The two Quick-start commands: `make demo` and `make test`.
# Each creates ./.venv on first use and installs the project into it, so a fresh
# machine needs only Python >= 3.11, git and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.bench

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crawler demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(VENV)/.bench
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-output bench/results .pytest_cache
