# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Main job: train PTPM and TPM on the built-in simulator and print the comparison table.
demo: $(STAMP)
	$(VENV)/bin/ptpm-tf demo --out runs/demo

## Test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

## Fast tier for development: the suite without the tests marked slow (every module still runs).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf runs results build *.egg-info
