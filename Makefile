# Two commands do everything on a fresh machine:
#   make demo   - install into .venv if needed, run the default DAG on the embedded datasets
#   make test   - install into .venv if needed, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: install demo test lint report readme-results clean-results help

help:
	@echo "make demo | test | lint | report | readme-results | clean-results"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

# pytest exits 5 when it collects no tests: not a failure of this command.
test: $(STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check src workflow/scripts tests bench
	$(SNAKEMAKE) --lint

report: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

# Regenerate the README's demo figure and table from results/ of the embedded default run.
readme-results: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) readme

# Removes results and Snakemake's metadata; never touches raw data (data/ or a dataset root).
clean-results:
	rm -rf results .snakemake logs
