#!/usr/bin/env bash
# Lint checks; exits non-zero on the first failing section.
#   bash tools/lint.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# --- clang-format: C++ sources against .clang-format ---------------------------------
# The pinned clang-format of requirements-dev.txt (the venv's), else the one on PATH.
CLANG_FORMAT=${CLANG_FORMAT:-}
if [[ -z "$CLANG_FORMAT" ]]; then
  if [[ -x .venv/bin/clang-format ]]; then
    CLANG_FORMAT=.venv/bin/clang-format
  elif command -v clang-format >/dev/null; then
    CLANG_FORMAT=clang-format
  else
    echo "lint: clang-format not found (pip install -r requirements-dev.txt)" >&2
    exit 1
  fi
fi
shopt -s globstar nullglob
cpp_files=(csrc/**/*.h csrc/**/*.cpp tools/fuzz/*.h tools/fuzz/*.cpp)
echo "clang-format ($("$CLANG_FORMAT" --version | sed 's/.*version //')): ${#cpp_files[@]} files"
"$CLANG_FORMAT" --dry-run --Werror "${cpp_files[@]}"
# --- end clang-format ------------------------------------------------------------------

# --- ruff: Python sources against pyproject.toml [tool.ruff] ---------------------------
RUFF=${RUFF:-}
if [[ -z "$RUFF" ]]; then
  if [[ -x .venv/bin/ruff ]]; then RUFF=.venv/bin/ruff
  elif command -v ruff >/dev/null; then RUFF=ruff
  else echo "lint: ruff not found (pip install -r requirements-dev.txt)" >&2; exit 1
  fi
fi
echo "$("$RUFF" --version)"
"$RUFF" check .
# --- end ruff ---------------------------------------------------------------------------

echo "lint: clean"
