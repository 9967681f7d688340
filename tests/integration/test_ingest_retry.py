"""Kestra retries of ingest_data: a run (``--run-id``, Kestra's execution id) is one Kafka
transaction. A producer killed half-way and run again with the same arguments sends the same
records, once: the killed attempt's records stay in the log, aborted, and the stream job (reading
read_committed) never writes them; another run continues after the highest id."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline_lib.producer import run_records
from tests.helpers import ROOT, topic_records
from tests.integration.test_pipeline import read_csv, stream

RUN_START = "2024-05-08T15:20:00.123Z"


def produce_command(bootstrap, topic, run_id, count, rate):
    return [
        sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--count", str(count), "--rate", str(rate), "--partitions", "2", "--run-id", run_id, "--run-start", RUN_START,
    ]


def expected_records(run_id, count, start_id, rate):
    start = datetime.fromisoformat(RUN_START.replace("Z", "+00:00"))
    return list(run_records(count, start_id, run_id, run_start=start, rate=rate))


class TopicLog:
    """Offsets written to a topic, aborted records and transaction markers included."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        # Asking for a topic that does not exist yet must not create it (with 1 partition).
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, allow_auto_create_topics=False)

    def size(self):
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            return 0
        return sum(self.consumer.end_offsets([TopicPartition(self.topic, p) for p in partitions]).values())

    def close(self):
        self.consumer.close()


def committed_records(bootstrap, topic):
    return [message.value for message in topic_records(bootstrap, topic, "read_committed")]


def run(command):
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)


@pytest.mark.slow
def test_a_killed_ingest_retried_lands_every_record_once_with_the_first_attempts_values(spark, bootstrap, topic, tmp_path):
    count, rate = 3000, 500
    command = produce_command(bootstrap, topic, "execution-1", count, rate)
    log = TopicLog(bootstrap, topic)

    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 90
    while log.size() < count // 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    written_by_first = log.size()
    assert first.returncode == -signal.SIGKILL
    assert count // 3 <= written_by_first < count, f"killed after {written_by_first} of {count} records, not half-way"
    assert committed_records(bootstrap, topic) == [], "the killed attempt's records are readable"

    retry = run(command)
    assert retry.returncode == 0, retry.stderr
    assert f"sent {count} records to {topic}" in retry.stdout
    # A retry after the run was committed (Kestra's timeout just after the commit) sends nothing.
    again = run(command)
    assert again.returncode == 0, again.stderr
    assert "already on" in again.stdout and f"sent {count} records" in again.stdout
    second_execution = run(produce_command(bootstrap, topic, "execution-2", 500, 5000))
    assert second_execution.returncode == 0, second_execution.stderr
    # The log holds the killed attempt's records and the retry's: those records are there twice.
    assert log.size() >= written_by_first + count + 500
    log.close()

    stream(spark, bootstrap, topic, tmp_path)

    rows = read_csv(spark, tmp_path).collect()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids twice"
    expected = expected_records("execution-1", count, 1, rate) + expected_records("execution-2", 500, count + 1, 5000)
    assert sorted(ids) == [record["id"] for record in expected]
    written = {row["id"]: (row["value"], row["timestamp"]) for row in rows}
    for record in expected:
        value, timestamp = written[record["id"]]
        assert value == record["value"], record
        assert timestamp == pytest.approx(record["timestamp"], abs=1e-6), record
    print(f"killed after {written_by_first} records; retried twice; rows {len(rows)}, duplicated 0")


def test_two_executions_send_disjoint_ids_and_a_run_is_the_same_on_every_attempt(bootstrap, topic):
    first = run(produce_command(bootstrap, topic, "execution-a", 20, 1000))
    second = run(produce_command(bootstrap, topic, "execution-b", 20, 1000))

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    records = sorted((json.loads(value) for value in committed_records(bootstrap, topic)), key=lambda record: record["id"])
    assert records == expected_records("execution-a", 20, 1, 1000) + expected_records("execution-b", 20, 21, 1000)
    assert [record["value"] for record in records[:20]] != [record["value"] for record in records[20:]]
