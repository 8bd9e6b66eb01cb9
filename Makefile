# fastcb development commands. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch and torchvision come from the machine's wheel store; pinning them avoids a multi-GB download.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test check-export nbtest pytest readme bench clean

venv: $(STAMP)

# Reinstalled only when the package metadata or this file change.
$(STAMP): settings.ini setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: venv
	$(BIN)/python examples/demo.py

# The package must be exactly what nbdev_export makes from the notebooks.
check-export: venv
	rm -rf .export-check && mkdir .export-check && cp -r fastcb .export-check/
	$(BIN)/nbdev_export
	if ! diff -r -x __pycache__ .export-check/fastcb fastcb; then \
	  echo "fastcb/ is out of sync with nbs/: run nbdev_export and commit the result" >&2; rm -rf .export-check; exit 1; fi
	rm -rf .export-check

nbtest: venv
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: venv
	$(BIN)/python -m pytest -q tests

readme: venv
	$(BIN)/python docs/make_readme.py

test: check-export nbtest pytest

bench: venv
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) _docs _proc .export-check *.egg-info
