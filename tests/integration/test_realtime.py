"""Real-time mode, Kafka to Kafka: valid records to the output topic, rejected ones to the
quarantine topic, in one query; pipelines it cannot run refused before any query starts; and the
Kafka quarantine of a micro-batch run."""

import base64
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.plan import make_plan
from pipeline_lib.reports import Listener
from pipeline_lib.run import run
from pipeline_lib.triggers import spark_trigger
from tests.conftest import send_raw
from tests.helpers import ROOT, job, topic_records

# Queries of real-time mode: long-running tasks that take their seconds to start and to stop.
pytestmark = pytest.mark.slow

VALID = [json.dumps({"id": i, "value": 10 * i, "timestamp": 1715181600.0 + i}).encode() for i in range(1, 21)]
# Each rejected payload, with the reason the quarantine gives it.
REJECTED = {
    b"{not json": "invalid JSON",
    b'{"id": 21}': "missing required field 'value'",
    b'{"id": 22, "value": "75"}': "field 'value' is not a valid int",
    b"\xff\xfe": "payload is not valid UTF-8",
    None: "payload is null",
}
QUARANTINE_COLUMNS = ["payload", "payload_base64", "topic", "partition", "offset", "kafka_timestamp", "headers", "reason"]
_names = itertools.count(1)


def fresh_topics(bootstrap, partitions=2):
    """An input topic (created with ``partitions``) and its output and quarantine topics."""
    name = f"rt{next(_names)}-{time.time_ns()}"
    for topic, count in ((name, partitions), (f"{name}-out", 1), (f"{name}-quarantine", 1)):
        ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), count, 30)
    return name, f"{name}-out", f"{name}-quarantine"


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def real_time_config(bootstrap, topic, folder, **overrides):
    return load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "trigger": "real-time=5s",
            "output.format": "kafka", "output.topic": f"{topic}-out",
            "quarantine.format": "kafka", "quarantine.topic": f"{topic}-quarantine",
            "checkpoint": str(folder / "checkpoint"), **overrides,
        },
        environ={},
    )


class Reports(Listener):
    def __init__(self):
        self.batches, self.summaries = [], []

    def on_batch(self, report):
        self.batches.append(report)

    def on_summary(self, summary):
        self.summaries.append(summary)


@pytest.fixture(scope="module")
def real_time_run(spark, bootstrap, tmp_path_factory):
    """One real-time run over 20 valid and 5 rejected records in two partitions, stopped once
    Spark committed the epochs that read them all: its topics and its reports."""
    topic, output, quarantine = fresh_topics(bootstrap)
    payloads = VALID + list(REJECTED)
    send_raw(bootstrap, topic, payloads, partitions=2)
    plan = make_plan(real_time_config(bootstrap, topic, tmp_path_factory.mktemp("realtime")), spark)
    reports, stop, failures = Reports(), threading.Event(), []

    def running():
        try:
            run(plan, spark, [reports], stop_event=stop)
        except Exception as error:  # noqa: BLE001 (reported by the waiting test)
            failures.append(error)

    runner = threading.Thread(target=running)
    runner.start()
    try:
        wait_until(
            lambda: failures or sum(report.rows_read for report in reports.batches) >= len(payloads),
            300,
            "the epochs that read every record",
        )
    finally:
        stop.set()
        runner.join(120)
    assert not failures, failures
    return {
        "topic": topic, "reports": reports,
        "output": topic_records(bootstrap, output), "quarantine": topic_records(bootstrap, quarantine),
    }


def test_real_time_mode_sends_each_valid_record_once_keyed_by_id_with_processed_value(real_time_run):
    messages = real_time_run["output"]

    records = {message.key.decode(): json.loads(message.value) for message in messages}
    assert Counter(message.key for message in messages).most_common(1)[0][1] == 1
    assert sorted(int(key) for key in records) == list(range(1, 21))
    assert all(
        list(record) == ["id", "value", "timestamp", "processed_value"]
        and record["processed_value"] == 2 * record["value"] and int(key) == record["id"]
        for key, record in records.items()
    )


def test_real_time_mode_sends_every_rejected_record_to_the_quarantine_topic_with_its_reason(real_time_run):
    topic, messages = real_time_run["topic"], real_time_run["quarantine"]

    records = [json.loads(message.value) for message in messages]
    assert all(list(record) == QUARANTINE_COLUMNS for record in records)
    assert [message.key.decode() for message in messages] == [
        f"{topic}-{record['partition']}-{record['offset']}" for record in records
    ]
    payloads = {
        base64.b64decode(record["payload_base64"]) if record["payload_base64"] else
        record["payload"].encode() if record["payload"] is not None else None: record["reason"]
        for record in records
    }
    assert (len(records), payloads) == (len(REJECTED), REJECTED)


def test_real_time_mode_reports_each_committed_epoch_from_sparks_progress(real_time_run):
    reports = real_time_run["reports"]

    summary = reports.summaries[0]
    assert (summary.written, summary.quarantined) == (20, 5)
    assert sum(report.rows_read for report in reports.batches) == 25
    assert [report.batch_id for report in reports.batches] == list(range(len(reports.batches)))
    assert {part.partition for report in reports.batches for part in report.offsets} == {0, 1}


@pytest.mark.slow
def test_sigterm_stops_a_real_time_job_cleanly_with_its_summary(bootstrap, tmp_path):
    topic, output, quarantine = fresh_topics(bootstrap)
    send_raw(bootstrap, topic, VALID[:10] + [b"{not json"], partitions=2)
    command = [
        sys.executable, str(ROOT / "jobs" / "stream.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--format", "kafka", "--output-topic", output, "--quarantine-topic", quarantine,
        "--checkpoint", str(tmp_path / "checkpoint"), "--trigger", "real-time=5s",
    ]
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT)
    try:
        wait_until(lambda: process.poll() is not None or len(topic_records(bootstrap, output)) >= 10, 300, "the records sent")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()

    assert process.returncode == 0, stderr[-3000:]
    assert stdout.splitlines()[-1].startswith("done: ")
    traces = [line for line in stderr.splitlines() if "Exception" in line or line.startswith(("\tat ", "Traceback"))]
    assert traces == []


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "error: output.format: real-time mode writes to Kafka only, not csv to output"),
        (["--format", "kafka", "--output-topic", "out", "--quarantine", "rejects"],
         "error: quarantine.format: real-time mode writes to Kafka only, not json to rejects"),
        (["--format", "kafka", "--output-topic", "out", "--quarantine-topic", "rejects", "--source", "files",
          "--source-path", "."], "error: --source: real-time mode reads Kafka only, not files in ."),
    ],
)
def test_a_pipeline_real_time_mode_cannot_run_is_refused_with_exit_2_and_one_line(tmp_path, flags, message):
    result = job(
        "stream", "--trigger", "real-time", "--checkpoint", str(tmp_path / "checkpoint"), *flags, timeout=120
    )

    assert (result.returncode, len(result.stderr.splitlines())) == (2, 1), result.stderr
    assert result.stderr.startswith(message)
    assert not (tmp_path / "checkpoint").exists()


def test_an_expectation_spark_cannot_run_in_real_time_mode_is_refused_before_any_query_starts(
    spark, bootstrap, tmp_path
):
    topic, _, _ = fresh_topics(bootstrap)
    spark.udf.register("python_positive", lambda value: value is not None and value > 0, "boolean")
    expectation = {"name": "expect", "options": {"name": "positive", "condition": "python_positive(value)",
                                                 "on_violation": "drop"}}
    config = real_time_config(bootstrap, topic, tmp_path, transforms=["add_processed_value", expectation])

    with pytest.raises(ConfigError, match=r"^transforms\[1\]: expect\(.*EvalPythonExec.* real-time mode"):
        make_plan(config, spark)
    assert not (tmp_path / "checkpoint").exists()


def test_a_topic_with_more_partitions_than_local_task_slots_is_refused(spark, bootstrap, tmp_path):
    topic, _, _ = fresh_topics(bootstrap, partitions=3)  # the test session runs local[2]

    with pytest.raises(ConfigError, match=r"^trigger: .* each of the 3 partitions .* runs 2 at once"):
        make_plan(real_time_config(bootstrap, topic, tmp_path), spark)


@pytest.mark.slow
def test_the_kafka_quarantine_of_an_available_now_run_holds_every_rejected_record_once(bootstrap, tmp_path):
    topic, _, quarantine = fresh_topics(bootstrap)
    send_raw(bootstrap, topic, VALID[:5] + list(REJECTED), partitions=2)

    result = job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine-topic", quarantine, timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 5 rows written, 5 quarantined" in result.stdout
    records = {message.key.decode(): json.loads(message.value) for message in topic_records(bootstrap, quarantine)}
    assert len(topic_records(bootstrap, quarantine)) == len(records) == len(REJECTED)
    assert all(
        key == f"{topic}-{record['partition']}-{record['offset']}" and list(record) == QUARANTINE_COLUMNS
        for key, record in records.items()
    )
    assert Counter(record["reason"] for record in records.values()) == Counter(REJECTED.values())


@pytest.mark.parametrize(
    "trigger, expected",
    [
        ("real-time", {"realTime": "300 seconds"}),
        ("real-time=30s", {"realTime": "30 seconds"}),
        ("real-time=1.5m", {"realTime": "90 seconds"}),
        ("real-time=5500ms", {"realTime": "5.5 seconds"}),
    ],
)
def test_real_time_trigger_strings_map_to_sparks_real_time_trigger(trigger, expected):
    assert spark_trigger(trigger) == expected


def test_a_real_time_trigger_without_its_interval_after_the_sign_is_refused_naming_the_forms():
    with pytest.raises(ConfigError, match=r"^trigger: unknown trigger 'real-time='; allowed: .*real-time\[="):
        spark_trigger("real-time=")
