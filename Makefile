# fastcb development commands. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch and torchvision come from the machine's wheel store; pinning them avoids a multi-GB download.
TORCH := torch==2.14.1 torchvision==0.29.1
# Notebooks run two at a time on a 2-core machine: one thread each, or torch's threads fight over the cores
# (seen here: a tutorial took 3.5 min with 2 threads each under load, 36 s with 1).
nbtest pytest docs docs-test: export OMP_NUM_THREADS := 1
# The notebooks are the CPU documentation: their outputs and exact tests are the CPU's, also on a machine with a GPU,
# where the Learner would otherwise pick the GPU. GPU behaviour is tested by tests/*_gpu.py (pytest sees the GPU).
nbtest docs: export CUDA_VISIBLE_DEVICES :=

.PHONY: venv demo test check-export nbtest pytest readme docs preview chromium docs-test bench clean

venv: $(STAMP)

# Reinstalled only when the package metadata or this file change.
$(STAMP): settings.ini setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,tensorboard]'
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

# The browser test needs the built site: `docs-test` runs it after `docs`.
pytest: venv
	$(BIN)/python -m pytest -q tests --ignore=tests/test_docs_browser.py

readme: venv
	$(BIN)/python docs/make_readme.py

# The documentation site, offline, into _docs/: notebooks executed afresh, nbdev's processing, Sphinx (-W).
# See docs/build_docs.py. nbdev_docs/nbdev_preview/nbdev_prepare need Quarto, which cannot be installed here.
docs: venv
	$(BIN)/python docs/build_docs.py

# Serve the built site on http://127.0.0.1:$(PORT)/ (builds it first if there is none).
PORT ?= 8000
preview: venv
	test -f _docs/index.html || $(MAKE) docs
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _docs $(PORT)

# The browser check drives Debian's Chromium (Playwright's own browser download cannot work offline). Installed here
# when missing and running as root; otherwise this stops with the command to run, never a silent skip.
CHROMIUM ?= $(shell command -v chromium || echo /usr/bin/chromium)
chromium:
	if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Chromium is missing: installing Debian's package (apt-get update; apt-get install -y chromium)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "Chromium is missing, and the docs' browser check needs it: run  sudo apt-get update && sudo apt-get install -y chromium" >&2; exit 1; fi; \
	fi

# The built site in Chromium, every page checked as a reader sees it (tests/test_docs_browser.py): screenshots go to screenshots/.
docs-test: venv chromium
	FASTCB_DOCS_REQUIRED=1 FASTCB_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q tests/test_docs_browser.py

test: check-export nbtest pytest docs docs-test

# Benchmarks (never timed tests): prints markdown tables, writes bench/results/*.json. GPU part: bench/gpu_peers.py on a GPU.
# The peers (fastai, Lightning) live in a virtual environment of their own, bench/.venv, beside the same torch, so
# that their dependencies never touch the project's; every package is pinned in bench/requirements.txt.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): bench/requirements.txt settings.ini setup.py
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r bench/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps -e .
	$(BENCH_VENV)/bin/python -m pip check
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR) $(BENCH_VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) _docs _proc _docs_build screenshots .export-check *.egg-info
