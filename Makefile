# Two commands set everything up on a fresh machine:
#   make demo   - builds, then upscales a real sample clip end to end
#   make test   - builds, then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: all build lint test test-all test-sanitized fuzz demo bench clean

all: build

$(VENV)/.deps: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

build: $(VENV)/.deps
	$(PY) tools/build_inplace.py

# ruff (pyproject.toml) and clang-format (.clang-format): seconds, so before the tests
lint: $(VENV)/.deps
	bash tools/lint.sh

test: build lint
	$(PY) -m pytest -q -n 2 -m "not slow"

test-all: build
	$(PY) -m pytest -q -n 2

# ASan+UBSan build of the extension, then the suite against it (README "Hostile input")
test-sanitized: $(VENV)/.deps
	$(PY) tools/test_sanitized.py

# libFuzzer targets (needs clang): FUZZ_SECONDS per target
FUZZ_SECONDS ?= 600
fuzz: $(VENV)/.deps
	$(PY) tools/fuzz/run.py --seconds $(FUZZ_SECONDS)

demo: build
	$(PY) examples/upscale_clip.py

clean:
	rm -rf build bitsr/_core*.so
