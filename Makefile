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

## Test suite (what CI runs): two test processes, one per core (most tests run TensorFlow on
## small tensors, one thread busy); a file's tests stay in one process (--dist loadfile).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

## Fast tier for development: the suite without the tests marked slow (every module still runs).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

clean:
	rm -rf runs results build *.egg-info
