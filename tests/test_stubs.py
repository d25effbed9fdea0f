"""The type stubs of the compiled modules say what the modules have: every function, with its
parameter names in order and which of them are keyword-only."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import logcal

PACKAGE = Path(logcal.__file__).parent


def _stub_signatures(module: str) -> dict:
    """name -> (positional names, keyword-only names) from the module's .pyi."""
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            found[node.name] = ([p.arg for p in a.args], [p.arg for p in a.kwonlyargs])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("_core"):
            other = _stub_signatures(node.module)
            for alias in node.names:
                found[alias.asname or alias.name] = other[alias.name]
        elif isinstance(node, ast.AnnAssign):
            found[node.target.id] = None
    return found


def _compiled_signature(func) -> tuple:
    """(positional names, keyword-only names) from pybind11's signature line."""
    lines = func.__doc__.split("\n")
    first = lines[0]
    if "(*args, **kwargs)" in first:  # overloads: every one has the same names here
        first = next(line for line in lines if line.startswith("1. "))
    inside = first[first.index("(") + 1 : first.rindex(")")]
    positional, keyword = [], []
    target = positional
    depth, part, parts = 0, "", []
    for ch in inside:  # split on top-level commas (types hold commas inside [...])
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    parts.append(part)
    for p in (p.strip() for p in parts if p.strip()):
        if p == "*":
            target = keyword
            continue
        target.append(re.match(r"\w+", p).group(0))
    return positional, keyword


@pytest.mark.parametrize("module", ["_core_cpu", "_core_cuda"])
def test_stubs_match_the_compiled_module(module):
    if module == "_core_cuda" and not logcal.cuda_compiled():
        pytest.skip("this build has no CUDA module")
    compiled = importlib.import_module(f"logcal.{module}")
    stubs = _stub_signatures(module)
    public = {n for n in dir(compiled) if not n.startswith("__")}
    assert public == set(stubs), (public - set(stubs), set(stubs) - public)
    for name, signature in stubs.items():
        if signature is None:  # a constant
            continue
        assert _compiled_signature(getattr(compiled, name)) == signature, name
