"""The documentation agrees with the code."""

import re

import yaml

from pipeline_lib.pipeline import _Sections, load_pipeline_config
from pipeline_lib.reference import reference
from tests.helpers import ROOT


def test_the_configuration_reference_is_the_one_the_code_writes():
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()

    assert page == reference(), "docs/reference/configuration.md is stale: run `make docs`"


def test_the_configuration_pages_full_file_is_every_setting_at_its_default(tmp_path):
    page = (ROOT / "docs" / "configuration.md").read_text()
    path = tmp_path / "every-setting.yml"
    path.write_text(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))

    documented, default = load_pipeline_config(str(path), environ={}), load_pipeline_config(environ={})

    assert set(_Sections.model_fields) <= set(yaml.safe_load(path.read_text()))
    assert (documented.kafka, documented.source.options) == (default.kafka, default.source.options)
    assert (documented.output.options, documented.quarantine.options) == (default.output.options, default.quarantine.options)
    assert [spec.build().describe() for spec in documented.transforms] == ["add_processed_value(factor=2)"]
    assert (documented.checkpoint, documented.trigger, documented.schema, documented.required) == (
        default.checkpoint, default.trigger, default.schema, default.required,
    )
