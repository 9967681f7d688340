"""Nothing lost, nothing twice: the stream job killed mid-flight, the broker stopped mid-produce
and mid-stream, and checkpoints that do not match their output folder."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline_lib.checkpoint import CheckpointMismatchError
from tests.helpers import ROOT, spark_submit_command, topic_records
from tests.integration.test_pipeline import produce, read_csv, stream


def stream_command(bootstrap, topic, folder, *extra):
    return spark_submit_command(
        ROOT / "jobs" / "stream.py", "--bootstrap-servers", bootstrap, "--topic", topic,
        "--output", str(folder / "output"), "--checkpoint", str(folder / "checkpoint"),
        "--quarantine", str(folder / "quarantine"), *extra,
    )


def start(command, log_path):
    """A process group of its own, so one signal reaches spark-submit, its JVM and Python."""
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    log = open(log_path, "ab")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)


def kill_group(process, sig=signal.SIGKILL):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def batch_files(folder, kind):
    path = folder / "checkpoint" / kind
    return {name for name in os.listdir(path) if name.isdigit()} if path.is_dir() else set()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def consumed_ids(bootstrap, topic):
    return [int(message.key) for message in topic_records(bootstrap, topic)]


def assert_each_once(ids, expected):
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
    missing = set(expected) - set(ids)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert set(ids) == set(expected)


@pytest.mark.slow
def test_stream_job_killed_repeatedly_writes_every_record_once(spark, bootstrap, topic, tmp_path):
    total = 50_000
    producer = start(
        [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
         "--count", str(total), "--rate", "1000", "--partitions", "2"],
        tmp_path / "producer.log",
    )
    command = stream_command(bootstrap, topic, tmp_path, "--trigger", "processing-time=1s", "--max-offsets-per-trigger", "3000")
    wait_until(lambda: (tmp_path / "producer.log").exists() and consumed_offsets_exist(bootstrap, topic), 60, "producer start")
    kills = []

    # 1: during the very first batch (planned in the offsets log, not yet committed)
    job = start(command, tmp_path / "stream.log")
    wait_until(lambda: "0" in batch_files(tmp_path, "offsets"), 120, "first batch planned")
    kill_group(job)
    kills.append(("first batch", sorted(batch_files(tmp_path, "commits"))))
    # 2..4: mid-stream, each at another moment: right after a commit, as the next batch is
    # planned, and at an arbitrary time into a run
    moments = [
        lambda before: len(batch_files(tmp_path, "commits")) > before + 1,
        lambda before: len(batch_files(tmp_path, "offsets")) > before + 2,
        None,
    ]
    for moment in moments:
        job = start(command, tmp_path / "stream.log")
        before = len(batch_files(tmp_path, "commits"))
        if moment is None:
            wait_until(lambda: len(batch_files(tmp_path, "commits")) > before, 120, "a batch committed")
            time.sleep(1.7)
        else:
            wait_until(lambda: moment(before), 120, "the kill moment")
        kill_group(job)
        kills.append(("mid-stream", len(batch_files(tmp_path, "commits"))))

    assert producer.wait(timeout=180) == 0, (tmp_path / "producer.log").read_text()[-2000:]
    final = subprocess.run(command[:-4] + ["--trigger", "available-now"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                           env=dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable))
    assert final.returncode == 0, final.stderr[-3000:]

    assert len(kills) == 4
    assert kills[0][1] == [], "the first kill came after batch 0 was committed"
    ids = [row["id"] for row in read_csv(spark, tmp_path).select("id").collect()]
    assert_each_once(ids, range(1, total + 1))
    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, total + 1))
    print(f"kills: {kills}; rows: {len(ids)}")


def plain_reader_ids(folder):
    """The ids a reader that knows nothing of Spark sees: pandas over a glob of the CSV files."""
    import pandas

    files = sorted(glob.glob(str(folder / "*.csv")))
    return pandas.concat([pandas.read_csv(name) for name in files])["id"].tolist() if files else []


def consumed_offsets_exist(bootstrap, topic):
    from pipeline_lib.kafka_client import KafkaSettings, topic_exists

    return topic_exists(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 5)


def records_on_topic(consumer, topic):
    """How many records ``topic`` holds: the sum of its partitions' end offsets (0 before it exists)."""
    partitions = consumer.partitions_for_topic(topic) or set()
    return sum(consumer.end_offsets([TopicPartition(topic, number) for number in partitions]).values())


@pytest.mark.slow
def test_broker_restart_during_produce_loses_and_duplicates_nothing(kafka, bootstrap, topic, tmp_path):
    total = 20_000
    producer = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
         "--count", str(total), "--rate", "2000", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watcher = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        # The outage starts once sending has: records acknowledged, far from all of them.
        wait_until(lambda: records_on_topic(watcher, topic) >= 1000, 60, "the first records on the topic")
        before_outage = records_on_topic(watcher, topic)
        watcher.close()
        try:
            kafka.stop()
            time.sleep(5)
        finally:
            kafka.start()
        stdout, stderr = producer.communicate(timeout=180)
    finally:
        watcher.close()
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=30)

    assert before_outage < total / 2, f"{before_outage} of {total} records were sent before the outage"
    assert producer.returncode == 0, stderr[-3000:]
    assert f"sent {total} records to {topic}" in stdout
    assert_each_once(consumed_ids(bootstrap, topic), range(1, total + 1))


@pytest.mark.slow
def test_an_outage_longer_than_the_timeout_ends_the_producer_saying_how_many_were_not_acknowledged(
    kafka, bootstrap, topic
):
    total = 20_000
    producer = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
         "--count", str(total), "--rate", "2000", "--timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watcher = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        wait_until(lambda: records_on_topic(watcher, topic) >= 1000, 60, "the first records on the topic")
        watcher.close()
        try:
            kafka.stop()
            stdout, stderr = producer.communicate(timeout=120)  # the broker stays down until then
        finally:
            kafka.start()
    finally:
        watcher.close()
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=30)

    assert producer.returncode == 1, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    match = re.fullmatch(rf"error: (\d+) of {total} records were not acknowledged by {re.escape(topic)}\b.*; (\d+) were", line)
    assert match, line
    missing, acknowledged = int(match.group(1)), int(match.group(2))
    assert missing > 0 and missing + acknowledged == total
    assert "Traceback" not in stderr and f"sent {total} records" not in stdout
    ids = consumed_ids(bootstrap, topic)
    assert len(ids) == len(set(ids)) and len(ids) >= acknowledged  # a record may land with its ack lost


@pytest.mark.slow
def test_a_running_stream_job_rides_out_a_broker_outage_and_catches_up_by_itself(
    kafka, spark, bootstrap, topic, tmp_path
):
    produce(bootstrap, topic, 1000)
    job = start(stream_command(bootstrap, topic, tmp_path, "--trigger", "processing-time=1s"), tmp_path / "stream.log")
    try:
        wait_until(lambda: len(batch_files(tmp_path, "commits")) >= 1, 180, "first batch committed")
        try:
            kafka.stop()
            time.sleep(8)
        finally:
            kafka.start()
        produce(bootstrap, topic, 1000, start_id=1001)
        wait_until(lambda: job.poll() is not None or _rows(spark, tmp_path) >= 2000, 180, "the job to catch up")

        assert job.poll() is None, f"the stream job ended (exit {job.returncode}): {_tail(tmp_path / 'stream.log')}"
        assert_each_once([row["id"] for row in read_csv(spark, tmp_path).select("id").collect()], range(1, 2001))
        assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, 2001))
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    finally:
        if job.poll() is None:
            kill_group(job)

    assert job.returncode == 0, _tail(tmp_path / "stream.log")
    assert "done: 2000 rows written, 0 quarantined" in (tmp_path / "stream.log").read_text(), _tail(tmp_path / "stream.log")


def _tail(path, characters=3000):
    return path.read_text(errors="replace")[-characters:]


def _rows(spark, folder):
    try:
        return read_csv(spark, folder).count()
    except Exception:  # noqa: BLE001 (no committed batch yet)
        return 0


def test_deleted_output_folder_is_refused_naming_it(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)
    stream(spark, bootstrap, topic, tmp_path)
    shutil.rmtree(tmp_path / "output")

    with pytest.raises(CheckpointMismatchError, match=f"output folder {tmp_path / 'output'} is gone but checkpoint .* has committed batches"):
        stream(spark, bootstrap, topic, tmp_path)


def test_new_checkpoint_on_a_written_output_is_refused(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)
    stream(spark, bootstrap, topic, tmp_path)
    shutil.rmtree(tmp_path / "checkpoint")

    with pytest.raises(CheckpointMismatchError, match="already holds written batches but checkpoint .* is new"):
        stream(spark, bootstrap, topic, tmp_path)


def test_checkpoint_of_another_output_is_refused(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)
    stream(spark, bootstrap, topic, tmp_path)

    with pytest.raises(CheckpointMismatchError, match=f"belongs to the pipeline writing output to {tmp_path / 'output'}"):
        stream(spark, bootstrap, topic, tmp_path, **{"output.path": str(tmp_path / "elsewhere")})


def test_a_checkpoint_that_never_planned_a_batch_is_bound_again(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)
    with pytest.raises(Exception, match="does not exist"):
        stream(spark, bootstrap, f"{topic}-mistyped", tmp_path, **{"output.path": str(tmp_path / "mistyped")})

    summary = stream(spark, bootstrap, topic, tmp_path)

    assert summary.written == 5


def test_refusal_reaches_the_command_line_as_one_line(bootstrap, topic, tmp_path):
    from tests.helpers import job

    produce(bootstrap, topic, 1)
    (tmp_path / "checkpoint" / "offsets").mkdir(parents=True)
    (tmp_path / "checkpoint" / "offsets" / "0").write_text("v1\n")  # it planned a batch
    (tmp_path / "checkpoint" / "pipeline-owner.json").write_text('{"sinks": {"output": "/somewhere/else"}}')

    result = job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"), timeout=300,
    )

    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1
    assert len(errors) == 1 and "belongs to the pipeline writing output to /somewhere/else" in errors[0]
    assert "Traceback" not in result.stderr


STOPS = {
    # how the job was started, whom the signal reaches, which signal, the exit code shells expect
    "python, Ctrl-C": ("python", "group", signal.SIGINT, 130),
    "python, kill": ("python", "process", signal.SIGTERM, 0),
    "spark-submit, Ctrl-C": ("spark-submit", "group", signal.SIGINT, 130),
    "spark-submit, kill": ("spark-submit", "process", signal.SIGTERM, 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STOPS))
def test_a_stop_signal_ends_a_running_job_cleanly_with_its_summary(case, bootstrap, topic, tmp_path):
    launcher, target, number, expected_code = STOPS[case]
    produce(bootstrap, topic, 30)
    args = ["--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
            "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"),
            "--trigger", "processing-time=1s"]
    command = ([sys.executable, str(ROOT / "jobs" / "stream.py"), *args] if launcher == "python"
               else spark_submit_command(ROOT / "jobs" / "stream.py", *args))
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                           start_new_session=True)
    try:
        wait_until(lambda: len(batch_files(tmp_path, "commits")) >= 1, 180, "first batch committed")
        time.sleep(2)  # idle triggers now: nothing more to read
        if target == "group":
            os.killpg(job.pid, number)  # what a terminal's Ctrl-C does
        else:
            job.send_signal(number)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            kill_group(job)

    assert job.returncode == expected_code, stderr[-3000:]
    assert "done: 30 rows written, 0 quarantined" in stdout
    assert "Traceback" not in stderr and "Py4J" not in stderr, stderr[-3000:]
    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, 31))


def planned_end_offset(folder, batch_id):
    """The end offset of partition 0 that the checkpoint planned for ``batch_id`` (offsets/N's last line)."""
    if batch_id < 0:
        return 0
    last_line = (folder / "checkpoint" / "offsets" / str(batch_id)).read_text().splitlines()[-1]
    (partitions,) = json.loads(last_line).values()
    return partitions["0"]


@pytest.mark.slow
def test_a_stop_signal_during_a_batch_lets_that_batch_finish_whole_and_the_next_run_goes_on(
    spark, bootstrap, topic, tmp_path
):
    total = 100_000
    produce(bootstrap, topic, total)
    args = ["--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
            "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"),
            "--trigger", "processing-time=1s", "--max-offsets-per-trigger", "20000"]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    job = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "stream.py"), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)

    def batch_being_written():
        # Planned (offsets/N), not committed (commits/N), its files being staged by Spark.
        for name in batch_files(tmp_path, "offsets") - batch_files(tmp_path, "commits"):
            if (tmp_path / "output" / "_staging" / f"batch-{name}").is_dir():
                return int(name)
        return None

    try:
        deadline = time.monotonic() + 300
        while (in_flight := batch_being_written()) is None and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert in_flight is not None, "no batch seen while being written"
        job.send_signal(signal.SIGTERM)
        stdout, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            kill_group(job)

    assert job.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # The batch in flight was finished and marked; the next one may have begun before the stop
    # was seen, and was then finished too.
    last = max(int(name) for name in os.listdir(tmp_path / "output" / "_batches") if name.isdigit())
    assert last >= in_flight
    written = planned_end_offset(tmp_path, last)
    assert written < total, "the stop came after the last batch"
    assert f"done: {written} rows written, 0 quarantined" in stdout, stdout[-2000:]
    in_flight_ids = [id_ for path in glob.glob(str(tmp_path / "output" / f"batch-{in_flight:08d}-part-*.csv"))
                     for id_ in pandas_ids(path)]
    first, end = planned_end_offset(tmp_path, in_flight - 1) + 1, planned_end_offset(tmp_path, in_flight)
    assert_each_once(in_flight_ids, range(first, end + 1))
    visible = [os.path.basename(path) for path in glob.glob(str(tmp_path / "output" / "*"))]
    files = [name for name in visible if not name.startswith("_")]
    assert all(re.fullmatch(r"batch-\d{8}-part-\d{5}\.csv", name) for name in files), visible
    assert not glob.glob(str(tmp_path / "output" / "_staging" / "batch-*")), "a batch was left staged"
    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, written + 1))

    rest = stream(spark, bootstrap, topic, tmp_path)

    assert rest.written == total - written
    assert_each_once([row["id"] for row in read_csv(spark, tmp_path).select("id").collect()], range(1, total + 1))
    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, total + 1))


def pandas_ids(path):
    import pandas

    return pandas.read_csv(path)["id"].tolist()
