"""Runs the examples of the package's docstrings (they appear in the API
pages of the documentation site) as doctests, one item per module."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import keras_segattn


def _modules_with_examples():
    names = []
    for info in pkgutil.walk_packages(keras_segattn.__path__, prefix="keras_segattn."):
        spec = importlib.util.find_spec(info.name)
        with open(spec.origin, encoding="utf-8") as f:
            if ">>> " in f.read():
                names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, module_name, extraglobs={"np": np}) if t.examples]
    assert tests, f"{module_name} has '>>> ' but no doctest was found"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} docstring example(s) of {module_name} failed (output above)"
    )
