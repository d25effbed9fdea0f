"""The examples in the docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import logcal


def _modules():
    names = ["logcal"]
    for info in pkgutil.walk_packages(logcal.__path__, prefix="logcal."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    if name.endswith("__main__"):
        pytest.skip("the command-line entry point runs on import")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional dependency (matplotlib, torch) is missing
        pytest.skip(str(exc))
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
