# ionscale: `make demo` and `make test` work on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
NP ?= 2
# OpenMPI refuses root and more ranks than cores unless told (containers, CI)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export OMPI_MCA_btl_vader_single_copy_mechanism := none
MPIRUN ?= mpirun --oversubscribe
PYTEST_ARGS ?=
# a hung collective fails its test instead of stalling CI
PYTEST_TIMEOUT ?= --timeout=600

.PHONY: setup demo test test-serial test-mpi bench clean

setup:
	@bash scripts/setup.sh

# tortuosity of a generated electrode, then the multiscale chain on the real cathode image
# image -> tortuosity -> DFN rate capability (curves in HDF5 + PNG under results/demo)
ELECTRODE_IMAGE := ../shared/data/electrode.tiff
demo: setup
	$(MPIRUN) -n $(NP) $(VENV)/bin/ionscale run inputs/tortuosity.yaml --output results/demo
	@if [ -f $(ELECTRODE_IMAGE) ]; then \
	  $(MPIRUN) -n $(NP) $(VENV)/bin/ionscale run inputs/rate_capability.yaml --output results/demo; \
	else \
	  echo "demo: $(ELECTRODE_IMAGE) is absent; skipped inputs/rate_capability.yaml (it reads that image)"; \
	fi

test: setup
	$(MAKE) --no-print-directory test-serial test-mpi

test-serial:
	$(PY) -m pytest -q $(PYTEST_TIMEOUT) $(PYTEST_ARGS) tests

# the same test bodies (marked mpi) on 2 ranks; rank 1 stays quiet unless it fails
test-mpi:
	$(MPIRUN) -n 2 $(PY) -m pytest -q -m mpi -p no:cacheprovider --color=no $(PYTEST_TIMEOUT) $(PYTEST_ARGS) tests

bench: setup
	@IONSCALE_EXTRAS=dev,atomistic,bpx,validation,bench bash scripts/setup.sh
	@for b in scripts/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf results bench_out .pytest_cache
