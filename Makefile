# cscli — set-up, tests and the demo.   make demo | make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cscli-installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: install system-deps test test-fast lint format demo bench clean help

help:
	@echo "make install   create .venv (torch 2.13 CPU, deepmd-kit from source, all backends)"
	@echo "make test      run the test suite (CI runs this)"
	@echo "make test-fast the suite without tests marked slow (inner loop)"
	@echo "make lint      ruff check + ruff format --check"
	@echo "make demo      install, then run the exploration loop on Li-P-S with offline defaults ($(DEMO_OUT)/)"

install: $(STAMP)

# Debian packages the tests use: GPAW (offline PBE DFT), MPI for the deepmd-kit build,
# SLURM + munge (scripts/slurm_local.sh: a one-node cluster for the sbatch tests).
system-deps:
	@missing=""; for p in gpaw gpaw-data mpich libopenmpi-dev slurm-wlm munge; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (GPAW/SLURM tests will skip; install them as root)"; fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	$(MAKE) system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[chgnet,sevennet,d3,mattersim,generate,motifs,entropy,qha,md,density,test,dev]"
	@# mattersim pulls torchvision/torchaudio, whose PyPI wheels break on the CPU torch; cscli needs neither
	$(PIP) uninstall -y -q torchvision torchaudio || true
	@# deepmd-kit's wheel is built for another torch: compile it against ours (PyTorch backend only)
	$(PY) -c "import deepmd.pt" 2>/dev/null || \
	  DP_ENABLE_TENSORFLOW=0 DP_ENABLE_PYTORCH=1 $(PIP) install -q -c constraints.txt --no-binary deepmd-kit deepmd-kit==3.2.0
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

test: install system-deps
	$(PY) -m pytest -q -p no:cacheprovider --timeout=1500 $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600 -m "not slow" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check cscli tests benchmarks scripts
	$(PY) -m ruff format --check cscli tests benchmarks scripts

format: install
	$(PY) -m ruff check --fix cscli tests benchmarks scripts
	$(PY) -m ruff format cscli tests benchmarks scripts

demo: install system-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh $(DEMO_OUT)

bench: install
	$(PY) benchmarks/relax_overhead.py
	$(PY) benchmarks/model_accuracy.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
