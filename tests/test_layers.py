"""The package's layers import one way (docs/architecture.md): the import graph of bitsr/,
imports inside functions included (grimp reads every import statement), has no cycle, and
inference never reaches the training stack."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="grimp (requirements-dev.txt) builds the import graph")

TRAINING = ("bitsr.train", "bitsr.data.dataset", "bitsr.data.cache", "bitsr.data.prepare", "bitsr.data.sources")
INFERENCE = ("bitsr.models", "bitsr.upscaler", "bitsr.pipeline")


def _under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """module -> modules it imports (bitsr's own), with the extension seen as ``bitsr._core``:
    grimp sees only Python files, so ``from . import _core`` shows up as importing the package."""
    g = grimp.build_graph("bitsr", cache_dir=None)
    out: dict[str, set[str]] = {}
    for m in g.modules:
        deps = set()
        for d in g.find_modules_directly_imported_by(m):
            if d == "bitsr":
                lines = [x["line_contents"] for x in g.get_import_details(importer=m, imported=d)]
                if all(ln.split(" import ")[-1].strip() == "_core" for ln in lines):
                    d = "bitsr._core"
            deps.add(d)
        out[m] = deps
    out.setdefault("bitsr._core", set())
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or self-imports."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _reach(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle(graph):
    assert _cycles(graph) == []


def test_inference_does_not_reach_training(graph):
    bad = {m: sorted(d for d in _reach(graph, m) if _under(d, TRAINING))
           for m in graph if _under(m, INFERENCE)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_models_depend_on_torch_and_each_other_only():
    g = grimp.build_graph("bitsr", cache_dir=None, include_external_packages=True)
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy"}
    for m in g.modules:
        if not _under(m, ("bitsr.models",)):
            continue
        for d in g.find_modules_directly_imported_by(m):
            assert _under(d, ("bitsr.models",)) or d.split(".")[0] in allowed - {"bitsr"}, (m, d)


def test_plain_package_and_lazy_cli():
    """``bitsr`` is a plain module whose ``upscale`` is the function; importing it pulls in
    neither torch nor a subcommand; ``bitsr --help`` imports no subcommand module."""
    code = ("import sys, types, bitsr\n"
            "assert type(sys.modules['bitsr']) is types.ModuleType and callable(bitsr.upscale)\n"
            "assert 'torch' not in sys.modules\n"
            "from bitsr.cli.main import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['--help']) == 0\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('bitsr.cli.') and m != 'bitsr.cli.main')\n"
            "assert loaded == [], loaded\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    assert isinstance(sys.modules["bitsr"], types.ModuleType)


def test_cli_help_lines_match_the_modules():
    import importlib

    from bitsr.cli.main import COMMANDS

    for name, (mod, doc) in COMMANDS.items():
        first = importlib.import_module(f"bitsr.cli.{mod}").__doc__.strip().splitlines()[0]
        assert first.split(":", 1)[-1].strip() == doc, name
