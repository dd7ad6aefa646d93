# Two commands set everything up on a fresh machine:
#   make demo   - builds, then upscales a real sample clip end to end
#   make test   - builds, then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: all build test test-all demo bench clean

all: build

$(VENV)/.deps: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

build: $(VENV)/.deps
	$(PY) tools/build_inplace.py

test: build
	$(PY) -m pytest -q -n 2 -m "not slow"

test-all: build
	$(PY) -m pytest -q -n 2

demo: build
	$(PY) examples/upscale_clip.py

clean:
	rm -rf build bitsr/_core*.so
