"""The examples in the library's docstrings run as written."""

import doctest
import importlib
import pkgutil

import pytest
from pyspark.sql import functions as F

import pipeline_lib


def modules_with_examples():
    """Library modules with at least one example that is not marked +SKIP."""
    names = []
    for _, name, _ in pkgutil.iter_modules(pipeline_lib.__path__, "pipeline_lib."):
        tests = doctest.DocTestFinder().find(importlib.import_module(name))
        if any(not example.options.get(doctest.SKIP) for test in tests for example in test.examples):
            names.append(name)
    return names


@pytest.mark.parametrize("module_name", modules_with_examples())
def test_docstring_examples_run_as_written(spark, module_name):
    result = doctest.testmod(
        importlib.import_module(module_name),
        extraglobs={"spark": spark, "F": F},
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )

    assert result.attempted > 0 and result.failed == 0
