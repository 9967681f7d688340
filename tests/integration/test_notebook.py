"""notebooks/explore.ipynb runs headless, cell by cell, against the test broker."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import send_raw
from tests.helpers import ROOT
from tests.integration.test_pipeline import stream

NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_runs_every_cell_and_plots(spark, bootstrap, topic, tmp_path, monkeypatch):
    records = [json.dumps({"id": i, "value": 10 * i, "timestamp": 1715181600.0 + i}).encode() for i in range(1, 6)]
    send_raw(bootstrap, topic, records + [b'{"id": 6}'])
    stream(spark, bootstrap, topic, tmp_path)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC", topic)
    monkeypatch.setenv("PIPELINE_OUTPUT", str(tmp_path / "output"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert all(cell.execution_count for cell in code)
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert f"topic {topic} on {bootstrap}" in text
    assert "missing required field 'value'" in text  # the quarantined record, with its reason
    assert "5 rows in " in text  # the CSV the stream job wrote
    assert "band" in text  # the cell's own registered transform, used by name
