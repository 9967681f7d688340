"""Where a new checkpoint starts reading (a point in time), and what a resumed one does when
Kafka's retention deleted offsets it had not read yet."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline_lib.kafka_client import KafkaSettings, earliest_offsets, ensure_topic
from tests.helpers import ROOT, job
from tests.integration.test_pipeline import assert_ids_once, produce, read_csv, stream


def now_ms():
    return int(time.time() * 1000)


def test_a_new_checkpoint_starts_at_the_first_record_at_or_after_the_starting_timestamp(
    spark, bootstrap, topic, tmp_path
):
    produce(bootstrap, topic, 10)
    time.sleep(0.05)  # Kafka's timestamps are milliseconds: none of the first ten shares one with the start
    start = now_ms()
    time.sleep(0.05)
    produce(bootstrap, topic, 10, start_id=11)

    summary = stream(spark, bootstrap, topic, tmp_path, **{"source.starting_timestamp": start})

    assert summary.written == 10
    assert_ids_once(read_csv(spark, tmp_path), range(11, 21))


def test_an_iso_8601_starting_timestamp_is_read_as_the_same_instant(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 10)
    second = int(time.time()) + 1  # the next whole second: the first ten came before it
    time.sleep(max(0.0, second + 0.05 - time.time()))
    produce(bootstrap, topic, 10, start_id=11)

    summary = stream(
        spark, bootstrap, topic, tmp_path,
        **{"source.starting_timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))},
    )

    assert summary.written == 10
    assert_ids_once(read_csv(spark, tmp_path), range(11, 21))


def test_a_resumed_checkpoint_goes_on_from_its_offsets_whatever_the_starting_timestamp(
    spark, bootstrap, topic, tmp_path
):
    produce(bootstrap, topic, 10)
    stream(spark, bootstrap, topic, tmp_path)
    produce(bootstrap, topic, 5, start_id=11)

    # After every record: a new checkpoint would read none of them.
    summary = stream(spark, bootstrap, topic, tmp_path, **{"source.starting_timestamp": now_ms() + 600_000})

    assert summary.written == 5
    assert_ids_once(read_csv(spark, tmp_path), range(1, 16))


def test_a_starting_timestamp_after_every_record_starts_at_the_end_and_reads_the_records_that_come_later(
    spark, bootstrap, topic, tmp_path
):
    produce(bootstrap, topic, 10)
    later = {"source.starting_timestamp": now_ms() + 600_000}

    first = stream(spark, bootstrap, topic, tmp_path, **later)
    produce(bootstrap, topic, 5, start_id=11)
    second = stream(spark, bootstrap, topic, tmp_path, **later)

    assert (first.written, second.written) == (0, 5)
    assert_ids_once(read_csv(spark, tmp_path), range(11, 16))


@pytest.mark.parametrize(
    "flag, value, said",
    [
        ("--starting-timestamp", "yesterday", "'yesterday' is neither epoch milliseconds nor an ISO-8601 time"),
        ("--starting-timestamp", "1715181600", "1715181600 is not epoch milliseconds (that would be before 1973)"),
        ("--on-data-loss", "ignore", "'ignore' is not allowed; allowed: 'fail' or 'skip'"),
    ],
)
def test_a_bad_starting_point_or_data_loss_setting_is_one_line_naming_the_flag(flag, value, said, tmp_path):
    result = job("stream", flag, value, "--checkpoint", str(tmp_path / "checkpoint"), timeout=120)

    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {flag}: {said}"), result.stderr


# A stopped job, Kafka's retention and what is left


def set_retention(bootstrap, topic, milliseconds):
    """The topic's retention.ms: ``milliseconds``, or back to the broker's default with None."""
    value = ("DELETE", None) if milliseconds is None else str(milliseconds)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": value})])
    finally:
        admin.close()


def retention_deletes_up_to(bootstrap, topic, offset, timeout=60):
    """Let retention delete every record of the topic's partition 0 (it has ``offset``), then keep
    the records that come after; within ``timeout`` seconds."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic)
    set_retention(bootstrap, topic, 100)
    try:
        deadline = time.monotonic() + timeout
        while earliest_offsets(kafka, 10)[0] < offset:
            assert time.monotonic() < deadline, f"retention did not delete the records of {topic} in {timeout}s"
            time.sleep(0.2)
    finally:
        set_retention(bootstrap, topic, None)


def create_rolling_topic(bootstrap, topic):
    """A topic whose segments roll after 100 ms, so that its records sit in closed segments, which
    retention deletes. (segment.bytes cannot go below 1 MiB on Kafka 4, so time rolls them.)"""
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 1, 30, configs={"segment.ms": "100"})


def stopped_past_retention(spark, bootstrap, topic, folder):
    """A job read ids 1-20 and stopped; ids 21-30 (offsets 20-29) came and Kafka's retention
    deleted them before the job ran again; then ids 31-35 came and stay."""
    create_rolling_topic(bootstrap, topic)
    produce(bootstrap, topic, 20)
    stream(spark, bootstrap, topic, folder)
    produce(bootstrap, topic, 10, start_id=21)
    retention_deletes_up_to(bootstrap, topic, 30)
    produce(bootstrap, topic, 5, start_id=31)


def stream_job(bootstrap, topic, folder, *extra):
    return job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(folder / "output"),
        "--quarantine", str(folder / "quarantine"), "--checkpoint", str(folder / "checkpoint"), *extra,
        timeout=300,
    )


def test_offsets_deleted_by_retention_while_the_job_was_stopped_stop_it_with_one_line_naming_them(
    spark, bootstrap, topic, tmp_path
):
    stopped_past_retention(spark, bootstrap, topic, tmp_path)

    result = stream_job(bootstrap, topic, tmp_path)

    assert result.returncode == 1, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: DataLossError: Kafka's retention deleted offsets of topic {topic} that checkpoint "
        f"{tmp_path / 'checkpoint'} had not read: partition 0 offsets 20 to 29 (10); --on-data-loss skip "
        "(source.on_data_loss: skip) goes on from the earliest offsets left"
    ]
    assert "Traceback" not in result.stderr
    assert_ids_once(read_csv(spark, tmp_path), range(1, 21))


@pytest.mark.slow
def test_on_data_loss_skip_goes_on_from_what_is_left_and_counts_the_lost_offsets_in_the_summary(
    spark, bootstrap, topic, tmp_path
):
    stopped_past_retention(spark, bootstrap, topic, tmp_path)
    metrics = tmp_path / "metrics.jsonl"

    result = stream_job(bootstrap, topic, tmp_path, "--on-data-loss", "skip", "--metrics-file", str(metrics))

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "skipping offsets deleted by retention before this job read them: partition 0 offsets 20 to 29 (10)" in lines
    assert lines[-1].startswith("done: 5 rows written, 0 quarantined in ")
    assert lines[-1].endswith("; 10 offsets lost to retention")
    summary = json.loads(metrics.read_text().splitlines()[-1])
    assert (summary["type"], summary["written"], summary["offsets_lost"]) == ("summary", 5, 10)
    assert_ids_once(read_csv(spark, tmp_path), [*range(1, 21), *range(31, 36)])


def children(pid):
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.slow
def test_records_deleted_by_retention_while_the_job_runs_stop_it_with_one_line_naming_them(
    bootstrap, topic, tmp_path
):
    create_rolling_topic(bootstrap, topic)
    produce(bootstrap, topic, 20)
    command = [
        sys.executable, str(ROOT / "jobs" / "stream.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--output", str(tmp_path / "output"), "--quarantine", str(tmp_path / "quarantine"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--trigger", "processing-time=1s",
    ]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr_file:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr_file, env=env, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "checkpoint" / "commits" / "0").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the first batch was not committed"
            time.sleep(0.2)
        # The driver's JVM held still (as a slow batch would) while retention deletes what comes next.
        (jvm,) = children(process.pid)
        os.kill(jvm, signal.SIGSTOP)
        try:
            produce(bootstrap, topic, 10, start_id=21)
            retention_deletes_up_to(bootstrap, topic, 30)
        finally:
            os.kill(jvm, signal.SIGCONT)
        process.wait(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    stderr = log.read_text()

    assert process.returncode == 1, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line == (
        "error: DataLossError: Kafka no longer holds records this job was to read (deleted by retention, or with "
        f"the topic): Could not read records in offset [20, 30) for topic partition {topic}-0; --on-data-loss skip "
        "(source.on_data_loss: skip) goes on from the earliest offsets left"
    )
