# Two commands do everything on a fresh machine:
#   make demo   - install into .venv if needed, run the default DAG on the embedded datasets
#   make test   - install into .venv if needed, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: install demo test test-other-cpu test-fast lint report readme-results slurm-profile calibrate estimate \
	clean-results help

help:
	@echo "make demo | test | test-other-cpu | test-fast | lint | report | readme-results | slurm-profile |"
	@echo "     calibrate | estimate CONFIG=... | clean-results"

# The default run needs requirements.txt only; the tests also the dev tools and the optional
# libraries of the features they test (requirements-extras.txt).
# envs/install.py installs with uv when it can (2.5x faster than pip here), else with pip;
# ILMOCO_INSTALLER=pip asks for pip.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "$(PYTHON) -m venv failed; on Debian/Ubuntu: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/python envs/install.py -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt requirements-extras.txt
	$(BIN)/python envs/install.py -r requirements.txt -r requirements-dev.txt -r requirements-extras.txt
	@touch $@

install: $(STAMP)

# Last, whether this run printed the README's numbers (docs/demo/values.csv): it does with
# the demo's numerics: portable on any x86-64 CPU with AVX2; a difference is reported only.
demo: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html
	@$(BIN)/python -m ilmoco.reporting.digest check results/tables docs/demo/values.csv || true

# pytest exits 5 when it collects no tests: not a failure of this command. Then the
# numerical tests once more as if on another CPU (test-other-cpu).
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi
	$(MAKE) --no-print-directory test-other-cpu

# The kernels of a CPU without AVX2 or AVX-512 (ATen's scalar code, oneDNN's SSE4.1, MKL's
# and OpenBLAS's SSE code, numpy's baseline loops): a tolerance that holds for one
# instruction set only fails here, on the developer's own machine. The unit tests, and the
# data-parallel comparisons (slow, but numerical through and through).
OTHER_CPU := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE \
	MKL_ENABLE_INSTRUCTIONS=SSE4_2 OPENBLAS_CORETYPE=Nehalem \
	NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL"
test-other-cpu: $(DEV_STAMP)
	$(OTHER_CPU) $(BIN)/python -m pytest -q -m "not slow"
	$(OTHER_CPU) $(BIN)/python -m pytest -q tests/test_distributed.py tests/test_numerics.py

# The unit tests alone (no Snakemake runs), for the edit loop.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check src workflow/scripts tests bench envs
	$(BIN)/lint-imports
	$(SNAKEMAKE) --lint

report: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

# Regenerate the README's demo section from results/ of the embedded default run.
readme-results: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) readme

# One-time cluster set-up: writes ~/.config/snakemake/slurm/config.yaml from
# profiles/slurm/config.yaml and your ~/.config/ilmoco/site.yaml (created from
# profiles/slurm/site.example.yaml on first use). Then: snakemake --profile slurm ...
slurm-profile: $(STAMP)
	$(BIN)/python -m ilmoco.cluster.site slurm $(if $(FORCE),--force)

# Modelled GPU-hours of a run before any data, e.g.
#   make estimate CONFIG="config/real_data.example.yaml config/presets/paper.yaml"
estimate: $(STAMP)
	$(BIN)/python -m ilmoco.cluster.resources estimate $(CONFIG)

# Refit the throughput table behind the runtime requests from a finished run's benchmarks.
calibrate: $(STAMP)
	$(BIN)/python -m ilmoco.cluster.resources calibrate --results results --benchmarks benchmarks \
		--out $${XDG_CONFIG_HOME:-$$HOME/.config}/ilmoco/throughput.yaml

# Removes results and Snakemake's metadata; never touches raw data (data/ or a dataset root).
clean-results:
	rm -rf results .snakemake logs benchmarks
