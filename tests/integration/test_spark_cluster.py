"""The stream job on a Spark standalone cluster, end to end: a master and two workers on loopback
(as the cluster's unprivileged user, tests/integration/test_cluster.py), the driver started by
``infra/spark/submit --master spark://...``, reading a three-node Kafka cluster. A broker killed
(kill -9) and started again during the run, and an executor killed in the middle of a batch, cost
nothing: every id lands once, and a plain glob of ``batch-*.csv`` finds no attempt's file."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from infra.kafka.broker import free_port
from tests.helpers import ROOT, SUBMIT
from tests.integration.test_cluster import (  # noqa: F401  (module fixtures, shared)
    SPARK_HOME,
    cluster_user,
    shared,
    standalone_cluster,
    zip_only_python,
)
from tests.integration.test_kafka_cluster import partition_zero

pytestmark = pytest.mark.slow

BATCH_FILE = re.compile(r"batch-\d{8}-part-\d{5}\.csv")
# A fetch quota on every client of the Kafka cluster: a batch of 60,000 records then takes its
# executors tens of seconds, long enough to kill one of them while its task runs.
FETCH_BYTES_PER_SECOND = 128 * 1024


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory, cluster_user, shared):  # noqa: F811
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), cluster_user, shared, workers=2) as running:
        yield running


@pytest.fixture
def data(shared, cluster_user, topic) -> Path:  # noqa: F811
    """The run's folder in the shared one, owned by the cluster's user: the driver and the
    executors write output, checkpoint and event log there."""
    folder = shared / topic
    folder.mkdir()
    (folder / "events").mkdir()
    for path in (folder, folder / "events"):
        os.chown(path, cluster_user.uid, cluster_user.gid)
    return folder


def start_stream(data: Path, master: str, user, executor_python: str, home: Path, bootstrap: str, topic: str,
                 *job_args: str, conf: Dict[str, str], log: Path) -> subprocess.Popen:
    """jobs/stream.py through infra/spark/submit on the cluster, as the cluster's user."""
    settings = {
        "spark.pyspark.python": executor_python, "spark.sql.shuffle.partitions": "2",
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{data / 'events'}",
        "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false", **conf,
    }
    command = [
        *user.prefix, str(SUBMIT), "--master", master,
        *[argument for key, value in settings.items() for argument in ("--conf", f"{key}={value}")],
        str(ROOT / "jobs" / "stream.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--output", str(data / "output"), "--checkpoint", str(data / "checkpoint"),
        "--quarantine", str(data / "quarantine"), "--metrics-file", str(data / "metrics.jsonl"), *job_args,
    ]
    env = dict(os.environ, HOME=str(home), SPARK_HOME=SPARK_HOME, SPARK_LOCAL_IP="127.0.0.1")
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home,
                                start_new_session=True)


def produce(bootstrap: str, topic: str, count: int, log: Path, *extra: str) -> subprocess.Popen:
    """jobs/produce.py into 2 partitions; its output in ``log`` (a pipe left unread would fill
    with the client's reconnection messages while a broker is down, and block it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
             "--count", str(count), "--partitions", "2", "--timeout", "120", *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )


def batches(data: Path, kind: str) -> set:
    path = data / "checkpoint" / kind
    return {name for name in os.listdir(path) if name.isdigit()} if path.is_dir() else set()


def wait_until(condition, timeout: float, what: str, job: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if job.poll() is not None:
            break
        time.sleep(0.1)
    state = "running" if job.poll() is None else f"exited {job.returncode}"
    raise AssertionError(f"not within {timeout:g}s: {what}; the job {state}:\n{log.read_text()[-3000:]}")


def published_ids(output: Path) -> List[int]:
    ids: List[int] = []
    for path in sorted(output.glob("batch-*.csv")):
        with open(path, newline="") as handle:
            ids += [int(row["id"]) for row in csv.DictReader(handle)]
    return ids


def summary(data: Path) -> dict:
    lines = (data / "metrics.jsonl").read_text().splitlines()
    return next(record for record in map(json.loads, lines) if record["type"] == "summary")


def assert_output_holds_each_id_once(data: Path, total: int) -> None:
    output = data / "output"
    visible = [name for name in os.listdir(output) if not name.startswith((".", "_"))]
    assert visible and all(BATCH_FILE.fullmatch(name) for name in visible), sorted(visible)[:10]
    assert not list(output.glob("_staging/*")), "a batch's staging folder was left"
    ids = published_ids(output)
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids twice"
    assert sorted(ids) == list(range(1, total + 1))
    assert summary(data)["written"] == total


def stop(job: subprocess.Popen) -> int:
    """SIGTERM to spark-submit (the driver's JVM): the batch being written finishes, exit 0."""
    job.send_signal(signal.SIGTERM)
    return job.wait(timeout=120)


def end(job: subprocess.Popen, *producers: subprocess.Popen) -> None:
    """Kill what a failed test left running: the job's process group, the producers."""
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    for producer in producers:
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=60)


def test_stream_on_the_cluster_rides_out_a_broker_killed_and_started_again_each_id_once(
    spark_cluster, kafka_cluster, cluster_user, shared, zip_only_python, data, topic, tmp_path  # noqa: F811
):
    bootstrap, log = kafka_cluster.bootstrap_servers, tmp_path / "driver.log"
    first = produce(bootstrap, topic, 100, tmp_path / "producer.log")
    assert first.wait(timeout=180) == 0, (tmp_path / "producer.log").read_text()[-2000:]
    job = start_stream(data, spark_cluster.master_url, cluster_user, zip_only_python, shared, bootstrap, topic,
                       "--trigger", "processing-time=1s", conf={"spark.ui.enabled": "false"}, log=log)
    producer, killed = first, None
    try:
        wait_until(lambda: "0" in batches(data, "commits"), 240, "the first batch committed", job, log)
        producer = produce(bootstrap, topic, 1800, tmp_path / "producer.log", "--rate", "50")
        wait_until(lambda: len(published_ids(data / "output")) > 110, 120, "records of the second run read", job, log)
        killed = partition_zero(bootstrap, topic)["leader_id"]

        assert kafka_cluster.kill_node(killed) is not None
        killed_at = time.monotonic()
        committed = len(batches(data, "commits"))
        # The driver's Kafka admin client may wait out its default.api.timeout.ms (60 s) on the
        # dead node before it asks the others: one batch stalls, and the query goes on.
        wait_until(lambda: len(batches(data, "commits")) > committed, 240, "a batch with a broker down", job, log)
        print(f"a batch committed {time.monotonic() - killed_at:.1f}s after the kill")
        assert kafka_cluster.start_node(killed)
        assert producer.wait(timeout=180) == 0, (tmp_path / "producer.log").read_text()[-2000:]
        wait_until(lambda: len(published_ids(data / "output")) >= 1900, 180, "every record written", job, log)
        assert stop(job) == 0, log.read_text()[-3000:]
    finally:
        end(job, producer)
        if killed is not None:  # the cluster is the run's: every node back, whatever happened
            kafka_cluster.start_node(killed)

    assert_output_holds_each_id_once(data, 1900)


def set_fetch_quota(bootstrap: str, bytes_per_second: int = 0) -> None:
    """Kafka's default client quota on fetched bytes (ConfigCommand); 0 removes it."""
    change = (["--add-config", f"consumer_byte_rate={bytes_per_second}"] if bytes_per_second
              else ["--delete-config", "consumer_byte_rate"])
    result = subprocess.run(
        [str(ROOT / "infra" / "kafka" / "bin" / "kafka-run-class"), "kafka.admin.ConfigCommand", "--bootstrap-server",
         bootstrap, "--alter", "--entity-type", "clients", "--entity-default", *change],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def busy_executor(ui_port: int) -> str:
    """The id of an executor running a task, from the driver's REST API; '' when none is."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        application = json.loads(urllib.request.urlopen(base, timeout=5).read())[0]["id"]
        executors = json.loads(urllib.request.urlopen(f"{base}/{application}/executors", timeout=5).read())
    except (OSError, IndexError, ValueError):
        return ""
    return next((e["id"] for e in executors if e["id"] != "driver" and e["activeTasks"] > 0), "")


def executor_pid(executor_id: str, worker_pids: List[int]) -> int:
    """The pid of executor ``executor_id`` (CoarseGrainedExecutorBackend) among the workers' children."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if (parent in worker_pids and b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in arguments
                and arguments[arguments.index(b"--executor-id") + 1].decode() == executor_id):
            return int(entry)
    raise LookupError(f"no process of executor {executor_id} under the workers {worker_pids}")


def task_ends(events: Path) -> List[dict]:
    lines = [line for path in sorted(events.rglob("*")) if path.is_file() for line in path.read_text().splitlines()]
    return [event for event in map(json.loads, lines) if event["Event"] == "SparkListenerTaskEnd"]


def test_an_executor_killed_in_the_middle_of_a_batch_has_its_tasks_retried_and_each_id_lands_once(
    spark_cluster, kafka_cluster, cluster_user, shared, zip_only_python, data, topic, tmp_path  # noqa: F811
):
    bootstrap, total, log = kafka_cluster.bootstrap_servers, 60_000, tmp_path / "driver.log"
    producer = produce(bootstrap, topic, total, tmp_path / "producer.log")
    assert producer.wait(timeout=300) == 0, (tmp_path / "producer.log").read_text()[-2000:]
    ui_port = free_port()
    set_fetch_quota(bootstrap, FETCH_BYTES_PER_SECOND)
    try:
        job = start_stream(data, spark_cluster.master_url, cluster_user, zip_only_python, shared, bootstrap, topic,
                           "--trigger", "available-now", conf={"spark.ui.port": str(ui_port)}, log=log)
        try:
            wait_until(lambda: "0" in batches(data, "offsets"), 240, "batch 0 planned", job, log)
            wait_until(lambda: busy_executor(ui_port) != "", 120, "a task of batch 0 running", job, log)
            killed = busy_executor(ui_port)
            pid = executor_pid(killed, spark_cluster.worker_pids)
            assert "0" not in batches(data, "commits"), "batch 0 ended before the kill"
            os.kill(pid, signal.SIGKILL)
            assert job.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            end(job)
    finally:
        set_fetch_quota(bootstrap)

    ends = task_ends(data / "events")
    lost = [end for end in ends if end["Task End Reason"]["Reason"] == "ExecutorLostFailure"]
    assert lost and {end["Task Info"]["Executor ID"] for end in lost} == {killed}
    succeeded = {(end["Stage ID"], end["Task Info"]["Index"]) for end in ends
                 if end["Task End Reason"]["Reason"] == "Success" and end["Task Info"]["Attempt"] > 0}
    assert {(end["Stage ID"], end["Task Info"]["Index"]) for end in lost} <= succeeded
    assert batches(data, "commits") == {"0"}
    assert_output_holds_each_id_once(data, total)
