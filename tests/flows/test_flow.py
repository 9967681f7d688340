"""The Kestra flow simple-data-pipeline, validated and executed by Kestra's own engine.

The engine (fixture ``kestra``, tests/flows/conftest.py) runs the flow's two command tasks with
the project's ``dataplatform.kestra.ShellCommands`` in place of the python plugin, which is
not among Kestra's published modules; that type is the only change (first test below).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition

from infra.kafka.broker import free_port
from infra.kestra.run_flow import ENGINE_COMMANDS_TYPE, OFFICIAL_COMMANDS_TYPE, Execution, engine_source
from pipeline_lib.producer import RUN_HEADER
from tests.helpers import ROOT, processes_running, topic_records

pytestmark = pytest.mark.kestra

FLOW_PATH = ROOT / "flows" / "simple-data-pipeline.yml"
FLOW_SOURCE = FLOW_PATH.read_text()
ENGINE_SOURCE = engine_source(FLOW_SOURCE)
# The file's retry interval (10 s) is a plain duration, not an expression a test could set: the
# tests whose tasks fail run the flow with it at 1 s, the rest of the file unchanged.
RETRY_INTERVAL = "interval: PT10S"
QUICK_RETRY_SOURCE = FLOW_SOURCE.replace(RETRY_INTERVAL, "interval: PT1S")
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
EXPRESSION = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
EXECUTION_TIMEOUT = 900


@pytest.fixture(scope="module")
def flow():
    return yaml.safe_load(FLOW_SOURCE)


def pipeline_inputs(bootstrap: str, topic: str, folder: Path) -> Dict[str, str]:
    return {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "output_path": str(folder / "output"),
        "checkpoint_path": str(folder / "checkpoint"),
        "quarantine_path": str(folder / "quarantine"),
        "project_dir": str(ROOT),
    }


def detail(execution: Execution) -> str:
    """What went wrong, for an assertion's message: the task runs and the last error logs."""
    errors = [f"[{entry.get('taskId')}] {entry['message']}" for entry in execution.logs if entry.get("level") == "ERROR"]
    return f"{execution.state} {execution.task_runs} {execution.log_levels}\n" + "\n".join(errors[-40:])


def read_ids(spark, output: Path):
    return sorted(int(row["id"]) for row in spark.read.option("header", "true").csv(str(output)).collect())


def ids_by_run(bootstrap: str, topic: str) -> Dict[str, List[int]]:
    """The ids of the committed records on the topic, by the run (execution) that sent them."""
    runs: Dict[str, List[int]] = defaultdict(list)
    for message in topic_records(bootstrap, topic, "read_committed"):
        run_id = dict(message.headers or [])[RUN_HEADER].decode("utf-8")
        runs[run_id].append(json.loads(message.value)["id"])
    return {run_id: sorted(ids) for run_id, ids in runs.items()}


# -- the file, and what Kestra's validation does not cover -------------------------------------


def test_the_engine_runs_the_file_with_only_the_command_task_types_swapped(flow):
    original, swapped = FLOW_SOURCE.splitlines(), ENGINE_SOURCE.splitlines()
    assert len(original) == len(swapped)
    changed = [(before.strip(), after.strip()) for before, after in zip(original, swapped) if before != after]
    assert changed == [(f"type: {OFFICIAL_COMMANDS_TYPE}", f"type: {ENGINE_COMMANDS_TYPE}")] * 2
    engine_flow = yaml.safe_load(ENGINE_SOURCE)
    assert [task["type"] for task in engine_flow["tasks"]] == [ENGINE_COMMANDS_TYPE] * 2
    for task in engine_flow["tasks"]:
        task["type"] = OFFICIAL_COMMANDS_TYPE
    assert engine_flow == flow


def test_tasks_are_ingest_then_process_as_processes_not_in_docker(flow):
    assert [task["id"] for task in flow["tasks"]] == ["ingest_data", "process_data"]
    for task in flow["tasks"]:
        assert task["type"] == OFFICIAL_COMMANDS_TYPE
        assert task["taskRunner"] == {"type": PROCESS_RUNNER}


def test_every_task_has_a_timeout_and_3_attempts(flow):
    for task in flow["tasks"]:
        assert task["timeout"] and task["retry"]["type"] == "constant"
        assert task["retry"]["maxAttempts"] == 3


def test_the_failing_tests_flow_is_the_file_with_only_its_retry_intervals_at_1s(flow):
    quick = yaml.safe_load(QUICK_RETRY_SOURCE)
    assert [task["retry"]["interval"] for task in flow["tasks"]] == ["PT10S", "PT10S"]
    for task in quick["tasks"]:
        task["retry"]["interval"] = "PT10S"
    assert quick == flow


def test_errors_branch_logs_the_failed_task(flow):
    (handler,) = flow["errors"]
    assert handler["type"] == "io.kestra.plugin.core.log.Log" and handler["level"] == "ERROR"
    assert "errorLogs()[0]['taskId']" in handler["message"]


def test_inputs_defaults_and_outputs(flow):
    defaults = {item["id"]: item.get("defaults") for item in flow["inputs"]}
    assert (defaults["record_count"], defaults["topic"]) == (20, "input-data")
    assert {item["id"] for item in flow["outputs"]} == {"records_sent", "rows_written", "rows_quarantined"}


def test_outputs_are_not_required_so_a_task_that_did_not_succeed_claims_no_value(flow):
    assert [item.get("required") for item in flow["outputs"]] == [False] * 3


def test_one_execution_at_a_time_the_next_queued_not_failed(flow):
    assert flow["concurrency"] == {"limit": 1, "behavior": "QUEUE"}


def test_an_hourly_schedule_is_there_and_disabled(flow):
    (trigger,) = flow["triggers"]
    assert trigger["type"] == "io.kestra.plugin.core.trigger.Schedule"
    assert (trigger["cron"], trigger["disabled"]) == ("0 * * * *", True)
    assert "inputs" not in trigger  # a scheduled execution runs with the inputs' defaults


def test_every_expression_names_a_declared_input_a_task_output_or_the_execution(flow):
    inputs = {item["id"] for item in flow["inputs"]}
    tasks = {task["id"] for task in flow["tasks"]}
    texts = [command for task in flow["tasks"] for command in task["commands"]]
    texts += [item["value"] for item in flow["outputs"]]
    for text in texts:
        for expression in EXPRESSION.findall(text):
            root, name, *_ = expression.split(".")
            assert (
                (root == "inputs" and name in inputs)
                or (root == "outputs" and name in tasks)
                or (root == "execution" and name in {"id", "startDate"})
            ), expression


def test_commands_run_the_project_jobs(flow):
    ingest, process = (" ".join(task["commands"]) for task in flow["tasks"])
    assert "python jobs/produce.py" in ingest
    assert "infra/spark/submit" in process
    assert "jobs/stream.py" in process and "--trigger available-now" in process


# -- Kestra's validation -------------------------------------------------------------------------


def test_kestra_validates_the_flow(kestra):
    validation = kestra.validate(ENGINE_SOURCE)
    assert validation.ok, validation.errors


def test_kestra_validates_the_flow_with_its_schedule_turned_on(kestra):
    assert ENGINE_SOURCE.count("disabled: true") == 1
    validation = kestra.validate(ENGINE_SOURCE.replace("disabled: true", "disabled: false"))
    assert validation.ok, validation.errors


@pytest.mark.parametrize(
    "old, new, reason",
    [
        pytest.param(
            "    commands:\n      - cd {{ inputs.project_dir }} && python",
            "    comands:\n      - cd {{ inputs.project_dir }} && python",
            'Unrecognized field "comands"',
            id="misspelt-property",
        ),
        pytest.param("timeout: PT5M", "timout: PT5M", 'Unrecognized field "timout"', id="misspelt-timeout"),
        pytest.param(
            "type: io.kestra.plugin.core.log.Log", "type: io.kestra.plugin.core.log.Logg",
            "Invalid type: io.kestra.plugin.core.log.Logg", id="unknown-task-type",
        ),
        pytest.param(
            f"type: {PROCESS_RUNNER}", f"type: {PROCESS_RUNNER}es",
            f"Invalid type: {PROCESS_RUNNER}es", id="unknown-task-runner",
        ),
        pytest.param("type: constant", "type: linear", "Invalid type: linear", id="unknown-retry-type"),
        pytest.param("interval: PT10S", "interval: 10 seconds", '"10 seconds"', id="retry-interval-not-a-duration"),
        pytest.param("maxAttempts: 3", "maxAttempts: 0", "maxAttempts", id="retry-without-attempts"),
        pytest.param("- id: process_data", "- id: ingest_data", "Duplicate task id", id="duplicate-task-id"),
        pytest.param("type: INT", "type: INTEGER", "Invalid type: INTEGER", id="unknown-input-type"),
        pytest.param('cron: "0 * * * *"', 'cron: "61 * * * *"', "invalid cron expression", id="schedule-bad-cron"),
        pytest.param("behavior: QUEUE", "behavior: WAIT", '"WAIT"', id="unknown-concurrency-behavior"),
    ],
)
def test_kestra_rejects_a_broken_flow(kestra, old, new, reason):
    assert old in ENGINE_SOURCE
    broken = ENGINE_SOURCE.replace(old, new, 1)

    validation = kestra.validate(broken)

    assert not validation.ok
    assert reason in " ".join(validation.errors), validation.errors


# -- executions against the test broker ----------------------------------------------------------
# The flow runs one execution at a time (its concurrency limit): each test's executions queue
# behind those of the test before it, so these tests run one after another.


@pytest.fixture(scope="module")
def sent_and_streamed(kestra, bootstrap, spark, tmp_path_factory):
    """One execution on a topic of its own, and the ids of the CSV it wrote."""
    folder = tmp_path_factory.mktemp("sent-and-streamed")
    execution = kestra.run(FLOW_PATH, pipeline_inputs(bootstrap, "sent-and-streamed", folder), timeout=EXECUTION_TIMEOUT)
    return execution, read_ids(spark, folder / "output") if (folder / "output").exists() else []


def test_an_execution_sends_streams_and_reports(sent_and_streamed):
    execution, ids = sent_and_streamed

    assert execution.state == "SUCCESS", detail(execution)
    assert [(run.task_id, run.state, run.attempts) for run in execution.task_runs] == [
        ("ingest_data", "SUCCESS", 1),
        ("process_data", "SUCCESS", 1),
    ]
    assert execution.outputs == {"records_sent": 20, "rows_written": 20, "rows_quarantined": 0}
    assert ids == list(range(1, 21))


def test_a_successful_execution_logs_no_error_and_sparks_warnings_as_warnings(sent_and_streamed):
    execution, _ = sent_and_streamed

    assert execution.state == "SUCCESS", detail(execution)
    assert execution.log_levels.get("ERROR", 0) == 0, detail(execution)
    spark_warnings = [entry for entry in execution.logs if re.match(r"(\S+ \S+ )?WARN ", entry["message"])]
    assert {entry["level"] for entry in spark_warnings} <= {"WARN"}, spark_warnings


def test_two_executions_in_a_row_write_each_record_once(kestra, bootstrap, topic, spark, tmp_path):
    inputs = pipeline_inputs(bootstrap, topic, tmp_path)

    first = kestra.run(FLOW_PATH, inputs, timeout=EXECUTION_TIMEOUT)
    second = kestra.run(FLOW_PATH, inputs, timeout=EXECUTION_TIMEOUT)

    for execution in (first, second):
        assert execution.state == "SUCCESS", detail(execution)
        assert execution.outputs == {"records_sent": 20, "rows_written": 20, "rows_quarantined": 0}
    assert read_ids(spark, tmp_path / "output") == list(range(1, 41))


def test_two_executions_started_together_run_one_after_the_other_with_disjoint_ids(kestra, bootstrap, topic, spark, tmp_path):
    inputs = pipeline_inputs(bootstrap, topic, tmp_path)

    started = [kestra.submit(FLOW_PATH, inputs, timeout=EXECUTION_TIMEOUT) for _ in range(2)]
    executions = [future.result(timeout=EXECUTION_TIMEOUT + 120) for future in started]

    for execution in executions:
        assert execution.state == "SUCCESS", detail(execution)
        assert execution.outputs == {"records_sent": 20, "rows_written": 20, "rows_quarantined": 0}
    (waiting,) = [execution for execution in executions if execution.entered("QUEUED")]
    (ran_first,) = [execution for execution in executions if execution is not waiting]
    assert waiting.entered("QUEUED") < ran_first.ended <= waiting.entered("RUNNING"), waiting.state_history
    ids = ids_by_run(bootstrap, topic)
    assert sorted(ids) == sorted(execution.id for execution in executions)
    assert not set(ids[waiting.id]) & set(ids[ran_first.id]), ids
    assert read_ids(spark, tmp_path / "output") == list(range(1, 41))


def values_by_id(bootstrap: str, topic: str, isolation_level: str) -> Dict[int, List[int]]:
    """Every record's value on the topic by its id."""
    values: Dict[int, List[int]] = defaultdict(list)
    for message in topic_records(bootstrap, topic, isolation_level):
        record = json.loads(message.value)
        values[record["id"]].append(record["value"])
    return values


def test_an_ingest_attempt_killed_mid_send_is_retried_and_every_id_lands_once_with_its_values(
    kestra, bootstrap, topic, spark, tmp_path
):
    count = 200_000  # long enough a send to be killed in the middle of it
    inputs = dict(pipeline_inputs(bootstrap, topic, tmp_path), record_count=str(count))
    watcher = KafkaConsumer(bootstrap_servers=bootstrap)

    started = kestra.submit(QUICK_RETRY_SOURCE, inputs, timeout=EXECUTION_TIMEOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not started.done():
        partitions = watcher.partitions_for_topic(topic) or set()
        sending = processes_running("jobs/produce.py", topic)
        if sending and partitions:
            ends = watcher.end_offsets([TopicPartition(topic, p) for p in partitions])
            if sum(ends.values()) > 0:  # records of the open transaction are on the topic
                for pid in sending:
                    os.kill(pid, signal.SIGKILL)
                break
        watcher.poll(timeout_ms=100)
    watcher.close()
    execution = started.result(timeout=EXECUTION_TIMEOUT + 120)

    assert execution.state == "SUCCESS", detail(execution)
    assert execution.task_run("ingest_data").attempts == 2
    assert execution.outputs == {"records_sent": count, "rows_written": count, "rows_quarantined": 0}
    committed = values_by_id(bootstrap, topic, "read_committed")
    everything = values_by_id(bootstrap, topic, "read_uncommitted")
    aborted = {record_id for record_id, values in everything.items() if len(values) > 1}
    assert aborted, "the first attempt was killed before a record of it reached the topic"
    assert all(len(set(everything[record_id])) == 1 for record_id in aborted)  # the retry sent the same values
    assert sorted(committed) == list(range(1, count + 1)) and all(len(v) == 1 for v in committed.values())
    assert read_ids(spark, tmp_path / "output") == list(range(1, count + 1))


def test_an_unreachable_broker_fails_ingest_after_3_attempts_and_the_errors_branch_names_it(kestra, tmp_path):
    inputs = dict(pipeline_inputs(f"127.0.0.1:{free_port()}", "unreachable", tmp_path), kafka_timeout="5")

    execution = kestra.run(QUICK_RETRY_SOURCE, inputs, timeout=EXECUTION_TIMEOUT)

    assert execution.state == "FAILED", detail(execution)
    ingest = execution.task_run("ingest_data")
    assert (ingest.state, ingest.attempts) == ("FAILED", 3)
    assert execution.task_run("process_data") is None
    errors = execution.logs_of("ingest_data", "ERROR")
    assert any(message.startswith("error: ") and "cannot reach Kafka" in message and "within 5s" in message
               for message in errors), detail(execution)
    report = execution.task_run("report_failure")
    assert report is not None and report.state == "SUCCESS"
    assert any("failed in task ingest_data" in message for message in execution.logs_of("report_failure", "ERROR"))
    assert execution.outputs == {}


def test_a_failed_process_data_reports_only_the_records_sent(kestra, bootstrap, topic, tmp_path):
    inputs = dict(pipeline_inputs(bootstrap, topic, tmp_path), spark_master="no-such-master")

    execution = kestra.run(QUICK_RETRY_SOURCE, inputs, timeout=EXECUTION_TIMEOUT)

    assert execution.state == "FAILED", detail(execution)
    assert execution.task_run("ingest_data").state == "SUCCESS"
    assert execution.task_run("process_data").state == "FAILED"
    assert any("failed in task process_data" in message for message in execution.logs_of("report_failure", "ERROR"))
    assert execution.outputs == {"records_sent": 20}
