"""The examples of docs/extending.md run as written."""

import re

import pytest

from pipeline_lib.pipeline import load_pipeline_config
from tests.helpers import ROOT

PAGE = ROOT / "docs" / "extending.md"


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)


def test_every_extension_point_has_an_example():
    headings = re.findall(r"^## (.+)$", PAGE.read_text(), re.M)

    assert headings == ["A transform", "A source", "A sink", "An expectation"]
    assert len(blocks("python")) == 5


@pytest.mark.parametrize("index", range(5))
def test_python_example_runs(spark, index, capsys):
    exec(compile(blocks("python")[index], f"docs/extending.md example {index + 1}", "exec"), {"spark": spark})


def test_yaml_example_is_a_valid_pipeline(spark, tmp_path):
    (example,) = blocks("yaml")
    path = tmp_path / "pipeline.yml"
    path.write_text(example)

    config = load_pipeline_config(str(path), environ={})

    assert [spec.name for spec in config.transforms] == ["add_processed_value", "expect"]
