"""The Kestra flow simple-data-pipeline: valid against Kestra's flow model, and its commands work."""

import os
import re
import sys

import pytest

from tests.flows.kestra_model import EXPRESSION, load_flow, run_flow
from tests.helpers import ROOT

FLOW_PATH = ROOT / "flows" / "simple-data-pipeline.yml"

# Kestra's validation patterns for flow, namespace and task ids.
FLOW_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}$")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,149}$")
TASK_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$")
ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
INPUT_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN", "SELECT", "DATETIME", "DURATION", "URI", "JSON", "SECRET"}
OUTPUT_TYPES = INPUT_TYPES | {"FILE"}
COMMANDS = "io.kestra.plugin.scripts.python.Commands"
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
LOG = "io.kestra.plugin.core.log.Log"
# Properties each task type documents (plus those every task has).
COMMON_PROPERTIES = {"id", "type", "description", "timeout", "retry", "disabled", "logLevel", "allowFailure"}
PROPERTIES = {
    COMMANDS: COMMON_PROPERTIES | {"commands", "taskRunner", "beforeCommands", "env", "interpreter", "outputFiles", "inputFiles", "namespaceFiles", "containerImage"},
    LOG: COMMON_PROPERTIES | {"message", "level"},
}
RETRY_PROPERTIES = {"type", "interval", "maxAttempts", "maxDuration", "warningOnRetry"}


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW_PATH)


def all_tasks(flow):
    return flow["tasks"] + flow.get("errors", [])


def test_flow_has_kestra_required_fields(flow):
    assert flow["id"] == "simple-data-pipeline" and FLOW_ID.match(flow["id"])
    assert NAMESPACE.match(flow["namespace"])
    assert flow["tasks"] and flow["description"]


def test_tasks_are_ingest_then_process(flow):
    assert [task["id"] for task in flow["tasks"]] == ["ingest_data", "process_data"]


def test_task_ids_are_unique_and_of_kestra_form(flow):
    ids = [task["id"] for task in all_tasks(flow)]
    assert len(ids) == len(set(ids))
    assert all(TASK_ID.match(task_id) for task_id in ids)


def test_tasks_use_real_plugin_types_and_only_their_properties(flow):
    for task in all_tasks(flow):
        assert task["type"] in PROPERTIES, task["type"]
        assert set(task) <= PROPERTIES[task["type"]], set(task) - PROPERTIES[task["type"]]


def test_script_tasks_run_as_processes_not_in_docker(flow):
    for task in flow["tasks"]:
        assert task["taskRunner"] == {"type": PROCESS_RUNNER}


def test_every_task_has_retry_and_timeout_as_iso_durations(flow):
    for task in flow["tasks"]:
        retry = task["retry"]
        assert set(retry) <= RETRY_PROPERTIES
        assert retry["type"] == "constant" and ISO_DURATION.match(retry["interval"])
        assert isinstance(retry["maxAttempts"], int) and retry["maxAttempts"] >= 2
        assert ISO_DURATION.match(task["timeout"])


def test_errors_branch_logs_the_failed_task(flow):
    (handler,) = flow["errors"]
    assert handler["type"] == LOG and "errorLogs()[0]['taskId']" in handler["message"]


def test_inputs_have_types_and_defaults(flow):
    for item in flow["inputs"]:
        assert item["type"] in INPUT_TYPES and "defaults" in item, item
    defaults = {item["id"]: item["defaults"] for item in flow["inputs"]}
    assert (defaults["record_count"], defaults["topic"]) == (20, "input-data")


def test_every_expression_names_a_declared_input_or_task_output(flow):
    inputs = {item["id"] for item in flow["inputs"]}
    tasks = {task["id"] for task in flow["tasks"]}
    texts = [command for task in flow["tasks"] for command in task["commands"]]
    texts += [item["value"] for item in flow["outputs"]]
    for text in texts:
        for expression in EXPRESSION.findall(text):
            root, name, *_ = expression.split(".")
            assert (root == "inputs" and name in inputs) or (root == "outputs" and name in tasks), expression


def test_flow_outputs_are_typed(flow):
    assert {item["id"] for item in flow["outputs"]} == {"records_sent", "rows_written", "rows_quarantined"}
    assert all(item["type"] in OUTPUT_TYPES for item in flow["outputs"])


def test_commands_run_the_project_jobs(flow):
    ingest, process = (" ".join(task["commands"]) for task in flow["tasks"])
    assert "python jobs/produce.py" in ingest
    assert "spark-submit" in process and "--py-files dist/pipeline_lib.zip" in process
    assert "jobs/stream.py" in process and "--trigger available-now" in process


def flow_env():
    venv_bin = os.path.dirname(sys.executable)
    return dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", PYSPARK_PYTHON=sys.executable)


def test_flow_commands_run_end_to_end(flow, spark, bootstrap, topic, tmp_path):
    inputs = {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "output_path": str(tmp_path / "output"),
        "checkpoint_path": str(tmp_path / "checkpoint"),
        "quarantine_path": str(tmp_path / "quarantine"),
        "project_dir": str(ROOT),
    }

    execution = run_flow(flow, inputs, flow_env(), timeout=600)

    assert execution.state == "SUCCESS", [(run.task_id, run.stderr[-2000:]) for run in execution.task_runs]
    assert execution.outputs == {"records_sent": "20", "rows_written": "20", "rows_quarantined": "0"}
    output = spark.read.option("header", "true").csv(str(tmp_path / "output"))
    assert sorted(int(row["id"]) for row in output.collect()) == list(range(1, 21))


def test_process_data_does_not_run_when_ingest_data_fails(flow, tmp_path):
    inputs = {"record_count": -1, "output_path": str(tmp_path / "output"), "project_dir": str(ROOT)}

    execution = run_flow(flow, inputs, flow_env(), timeout=120)

    assert execution.state == "FAILED"
    assert [run.task_id for run in execution.task_runs] == ["ingest_data"]
    assert execution.task_runs[0].attempts == 3
    assert "count: must be 0 or more" in execution.task_runs[0].stderr
    assert not (tmp_path / "output").exists()
