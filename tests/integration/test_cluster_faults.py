"""The pipeline on the three-node cluster of tests/conftest.py (replication factor 3,
min.insync.replicas 2, unclean leader election off) under the faults Kafka's own system tests
(tests/kafkatest/tests/core/replication_test.py) and Jepsen's Kafka analysis inject: the
partition leader killed again and again, a broker hung past the replica lag time, two brokers of
three down, a client cut off from one broker; then the output's file system full, and the
checkpoint's turned read-only under a running job. Each test checks, with Spark and with a plain
glob of the CSV, that no acknowledged id is lost and none is written twice, prints a line of the
report (fault, times injected, ids sent, acknowledged, in the output once, lost, duplicated),
and leaves the cluster whole again."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

import pandas
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from infra.kafka.broker import LocalKafkaCluster
from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
from tests.helpers import ROOT, run
from tests.integration.test_faults import (
    assert_each_once,
    batch_files,
    kill_group,
    plain_reader_ids,
    planned_end_offset,
    start,
    stream_command,
    wait_until,
)
from tests.integration.test_pipeline import produce, read_csv, stream

pytestmark = pytest.mark.slow

NODES = (1, 2, 3)


@pytest.fixture
def cluster(kafka_cluster, topic):
    """The session's cluster; after the test every node runs again, resumed, answers on its
    port and is registered, and every replica of ``topic`` is in sync."""
    yield kafka_cluster
    for node in kafka_cluster.nodes:
        kafka_cluster.resume_node(node.node_id)
    kafka_cluster.start()
    for node in kafka_cluster.nodes:
        node.wait_ready(120)
    wait_until(lambda: in_sync(kafka_cluster, topic), 120, f"every replica of {topic} in sync")


def partitions(cluster: LocalKafkaCluster, topic: str, nodes: Iterable[int] = NODES) -> List[dict]:
    """``topic``'s partitions (``leader_id``, ``isr_nodes``, ...) as the brokers ``nodes`` see
    them, by index; [] while it does not exist. Asked again while a broker just killed or
    paused is the one the client picked."""
    bootstrap = ",".join(cluster.node(node_id).bootstrap_servers for node_id in nodes)
    deadline = time.monotonic() + 60
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=5000)
            try:
                (described,) = admin.describe_topics([topic])
            finally:
                admin.close()
            return sorted(described["partitions"], key=lambda partition: partition["partition_index"])
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def active_controller(cluster: LocalKafkaCluster) -> Optional[int]:
    """The node whose controller leads the metadata quorum; None if the quorum does not say."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=10000)
    try:
        return admin.describe_metadata_quorum()["topics"][0]["partitions"][0]["leader_id"]
    except KafkaError:
        return None
    finally:
        admin.close()


def led_by(cluster: LocalKafkaCluster, topic: str, nodes: List[int]) -> bool:
    """Whether partition 0 of ``topic`` has its leader among ``nodes``, as they see it."""
    return partitions(cluster, topic, nodes)[0]["leader_id"] in nodes


def in_sync(cluster: LocalKafkaCluster, topic: str) -> bool:
    return all(len(partition["isr_nodes"]) == len(NODES) for partition in partitions(cluster, topic))


def produce_command(bootstrap: str, topic: str, count: int, *extra: str) -> List[str]:
    return [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
            "--count", str(count), *extra]


def start_producer(command: List[str], folder: Path, name: str) -> subprocess.Popen:
    """``command`` running, its stdout in ``folder/<name>.out`` and its stderr in ``<name>.err``."""
    with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)


def acknowledged(folder: Path, name: str, first_id: int, count: int) -> Set[int]:
    """The ids a finished producer run had acknowledged: all when it said it sent them, else all
    but those its failure line names."""
    sent = set(range(first_id, first_id + count))
    if f"sent {count} records" in (folder / f"{name}.out").read_text():
        return sent
    named = re.search(r"\(ids ([\d, -]+);", (folder / f"{name}.err").read_text())
    assert named, (folder / f"{name}.err").read_text()
    missing: Set[int] = set()
    for span in named.group(1).split(", "):
        low, _, high = span.partition("-")
        missing.update(range(int(low), int(high or low) + 1))
    return sent - missing


def settled(cluster: LocalKafkaCluster, topic: str) -> bool:
    """Whether every replica of ``topic`` has its log end at its high watermark: what a leader
    appended but had not committed when its followers went (records it never acknowledged) is
    committed now, so the topic holds what it will hold."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=5000)
    try:
        lags = [
            partition["offset_lag"]
            for broker in admin.describe_log_dirs([topic])
            for log_dir in broker["log_dirs"]
            for described in log_dir["topics"]
            if described["name"] == topic
            for partition in described["partitions"]
        ]
    except KafkaError:
        return False
    finally:
        admin.close()
    return len(lags) == len(NODES) * len(partitions(cluster, topic)) and not any(lags)


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=31000)
    try:
        tps = [TopicPartition(topic, number) for number in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def topic_ids(bootstrap: str, topic: str) -> List[int]:
    """Every record id on ``topic``, each partition read to its end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=31000)
    try:
        tps = [TopicPartition(topic, number) for number in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        ids: List[int] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                ids += [json.loads(record.value)["id"] for record in records]
        return ids
    finally:
        consumer.close()


def rows_in_output(folder: Path) -> int:
    """Rows in the published CSV files (lines but the header): cheap enough to poll."""
    return sum(max(0, len(path.read_bytes().splitlines()) - 1) for path in (folder / "output").glob("*.csv"))


def check_output(spark, folder: Path, fault: str, times: int, sent: int, acked: Set[int], expected: Set[int]):
    """Prints the report's line, then: Kafka kept every acknowledged id, and Spark and a plain
    glob see each id of ``expected`` (everything the topic holds) once, and nothing else."""
    by_spark = [row["id"] for row in read_csv(spark, folder).select("id").collect()]
    counts = Counter(by_spark)
    once = sum(1 for number in counts.values() if number == 1)
    lost = len(acked - set(by_spark))
    print(f"\n| {fault} | {times} | {sent} | {len(acked)} | {once} | {lost} | {len(by_spark) - len(counts)} |")
    assert acked <= expected, f"{len(acked - expected)} acknowledged ids are not on the topic"
    assert_each_once(by_spark, expected)
    assert_each_once(plain_reader_ids(folder / "output"), expected)


@contextmanager
def streaming_here(spark, bootstrap: str, topic: str, folder: Path):
    """The pipeline running in this process (processing-time=1s) for the block, then stopped
    between batches; the block's value holds its error, if it failed."""
    stop, outcome = threading.Event(), {}

    def target():
        try:
            stream(spark, bootstrap, topic, folder, trigger="processing-time=1s", stop_event=stop)
        except Exception as error:  # noqa: BLE001 (the test asserts there was none)
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    try:
        yield outcome
    finally:
        stop.set()
        thread.join(timeout=120)


def test_the_leader_killed_three_times_mid_send_and_mid_stream_loses_no_acknowledged_id_and_writes_none_twice(
    cluster, spark, topic, tmp_path
):
    bootstrap, total = cluster.bootstrap_servers, 2400
    produce(bootstrap, topic, 100)  # the topic, and a first batch for the job
    job = start(stream_command(bootstrap, topic, tmp_path, "--trigger", "processing-time=1s"), tmp_path / "stream.log")
    producer = None
    mid_send, cycles = [], []
    try:
        wait_until(lambda: batch_files(tmp_path, "commits"), 240, "the stream job's first batch")
        # 57 s of sending at 40 records/s: a kill cycle takes 10 s on a quiet machine, 20 s on a busy
        # one, and the third kill comes two cycles after the first.
        producer = start_producer(
            produce_command(bootstrap, topic, total - 100, "--rate", "40", "--timeout", "60"), tmp_path, "producer"
        )
        wait_until(lambda: end_offset(bootstrap, topic) >= 300, 60, "the producer under way")
        for _ in range(3):
            began = time.monotonic()
            leader = partitions(cluster, topic)[0]["leader_id"]
            mid_send.append(producer.poll() is None)
            cluster.kill_node(leader)
            alive = [node for node in NODES if node != leader]
            # Leadership moves once the controller fences the dead broker (broker.session.timeout.ms, 5 s).
            wait_until(lambda alive=alive: led_by(cluster, topic, alive), 60, "a new leader")
            moved = time.monotonic() - began
            cluster.start_node(leader)
            wait_until(lambda: in_sync(cluster, topic), 120, f"node {leader} back in sync")
            cycles.append(f"node {leader}: leader moved in {moved:.1f}s, back in sync {time.monotonic() - began:.1f}s")
        assert producer.wait(timeout=300) == 0, (tmp_path / "producer.err").read_text()
        wait_until(lambda: rows_in_output(tmp_path) >= total or job.poll() is not None, 180, "the job to catch up")
        assert job.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    finally:
        print("\n" + "; ".join(cycles))
        for process in (producer, job):
            if process is not None and process.poll() is None:
                kill_group(process)

    assert mid_send == [True, True, True], "a kill came after the producer had finished"
    assert job.returncode == 0, (tmp_path / "stream.log").read_text()[-3000:]
    ids = set(range(1, total + 1))
    check_output(spark, tmp_path, "partition leader kill -9, restarted after the session timeout", 3, total, ids, ids)


def test_a_follower_paused_past_the_replica_lag_time_leaves_the_isr_and_costs_no_acknowledged_id(
    cluster, spark, topic, tmp_path
):
    bootstrap, total = cluster.bootstrap_servers, 2100
    produce(bootstrap, topic, 100)
    # Past the lag time (5 s) and the leader's check of it (every half of that), with time to
    # see the shrink; the broker may be fenced too (broker.session.timeout.ms, 5 s).
    pause = LocalKafkaCluster.REPLICA_LAG_MS / 1000 + 5
    with streaming_here(spark, bootstrap, topic, tmp_path) as outcome:
        wait_until(lambda: batch_files(tmp_path, "commits") or "error" in outcome, 120, "the stream's first batch")
        producer = start_producer(
            produce_command(bootstrap, topic, total - 100, "--rate", "100", "--timeout", "60"), tmp_path, "producer"
        )
        try:
            wait_until(lambda: end_offset(bootstrap, topic) >= 400, 60, "the producer under way")
            partition = partitions(cluster, topic)[0]
            # Not the active controller: with it hung, the shrink would wait for another to be elected.
            busy = (partition["leader_id"], active_controller(cluster))
            follower = next(node for node in partition["replica_nodes"] if node not in busy)
            others = [node for node in NODES if node != follower]
            isr_seen: List[List[int]] = []
            cluster.pause_node(follower)
            try:
                paused = time.monotonic()
                while time.monotonic() - paused < pause:
                    isr_seen.append(partitions(cluster, topic, others)[0]["isr_nodes"])
                    time.sleep(0.5)
                was_running = producer.poll() is None
            finally:
                cluster.resume_node(follower)
            assert producer.wait(timeout=120) == 0, (tmp_path / "producer.err").read_text()
        finally:
            if producer.poll() is None:
                kill_group(producer)
        wait_until(lambda: in_sync(cluster, topic), 120, f"node {follower} back in sync")
        wait_until(lambda: rows_in_output(tmp_path) >= total or "error" in outcome, 120, "the stream to catch up")
    assert "error" not in outcome, outcome.get("error")

    assert was_running, "the producer had finished before the pause ended"
    assert any(follower not in isr for isr in isr_seen), f"node {follower} stayed in the ISR: {isr_seen}"
    ids = set(range(1, total + 1))
    check_output(spark, tmp_path, f"follower SIGSTOP {pause:g} s (replica lag 5 s), then SIGCONT", 1, total, ids, ids)


def test_two_brokers_of_three_down_stop_the_producer_in_one_line_while_the_job_waits_and_both_go_on_after(
    cluster, spark, topic, tmp_path
):
    bootstrap, first_count = cluster.bootstrap_servers, 3000
    produce(bootstrap, topic, 100)
    job = start(stream_command(bootstrap, topic, tmp_path, "--trigger", "processing-time=1s"), tmp_path / "stream.log")
    producer = None
    try:
        wait_until(lambda: batch_files(tmp_path, "commits"), 240, "the stream job's first batch")
        leader = partitions(cluster, topic)[0]["leader_id"]
        producer = start_producer(
            produce_command(bootstrap, topic, first_count, "--rate", "300", "--timeout", "10"), tmp_path, "first"
        )
        wait_until(lambda: end_offset(bootstrap, topic) >= 600, 60, "the producer under way")
        # The followers, so that the partition keeps its leader: with two of three controllers
        # gone no other could be elected, and the job would fail its offset requests in time.
        for node in NODES:
            if node != leader:
                cluster.kill_node(node)
        assert producer.wait(timeout=120) == 1
        still_waiting = job.poll() is None
        cluster.start()
        for node in cluster.nodes:
            node.wait_ready(120)
        # Before the next run looks for the highest id: records the leader took in but never
        # acknowledged become readable once the followers copy them, and their ids must count.
        wait_until(lambda: settled(cluster, topic), 120, "the followers caught up with the leader")
        first_acked = acknowledged(tmp_path, "first", 101, first_count)
        on_topic = topic_ids(bootstrap, topic)
        rest = first_count - len(first_acked)
        second = run(produce_command(bootstrap, topic, rest, "--timeout", "60"), timeout=180)
        assert second.returncode == 0, second.stderr
        expected = set(on_topic) | set(range(max(on_topic) + 1, max(on_topic) + 1 + rest))
        wait_until(lambda: rows_in_output(tmp_path) >= len(expected) or job.poll() is not None, 180, "the catch-up")
        assert job.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    finally:
        for process in (producer, job):
            if process is not None and process.poll() is None:
                kill_group(process)

    failure = (tmp_path / "first.err").read_text().splitlines()
    assert len(failure) == 1, failure
    assert re.fullmatch(
        rf"error: {rest} of {first_count} records were not acknowledged by {topic} within 10s "
        rf"\(ids [\d, -]+; (RequestTimedOutError|KafkaTimeoutError|NotEnoughReplicasError)\b.*\); "
        rf"{first_count - rest} were",
        failure[0],
    ), failure[0]
    assert still_waiting, "the stream job ended while two brokers were down"
    assert job.returncode == 0, (tmp_path / "stream.log").read_text()[-3000:]
    assert f"sent {rest} records to {topic}" in second.stdout
    acked = set(range(1, 101)) | first_acked | set(range(max(on_topic) + 1, max(on_topic) + 1 + rest))
    check_output(spark, tmp_path, "two followers kill -9, started again after the producer gave up", 1,
                 100 + first_count + rest, acked, expected)


def test_a_producer_cut_off_from_the_partition_leader_rides_the_cut_out_and_every_id_lands_once(
    cluster, client_namespace, spark, topic, tmp_path
):
    if client_namespace.unavailable:
        pytest.skip(client_namespace.unavailable)
    bootstrap, total = cluster.bootstrap_servers, 2000
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 1, 30)
    # A broker may answer for a topic just created before its metadata has the partition.
    wait_until(lambda: partitions(cluster, topic), 30, "the new topic's partition in the brokers' metadata")
    leader = partitions(cluster, topic)[0]["leader_id"]
    # From inside the namespace the brokers are only reachable on their addresses there.
    inside = client_namespace.command(
        produce_command(cluster.extra_bootstrap_servers, topic, total, "--rate", "200", "--timeout", "60")
    )
    producer = start_producer(inside, tmp_path, "producer")
    try:
        wait_until(lambda: end_offset(bootstrap, topic) >= 300, 60, "the producer under way")
        client_namespace.cut(leader)
        try:
            time.sleep(1)  # what was in flight lands
            during_cut = [end_offset(bootstrap, topic)]
            time.sleep(7)
            during_cut.append(end_offset(bootstrap, topic))
        finally:
            client_namespace.heal(leader)
        assert producer.wait(timeout=120) == 0, (tmp_path / "producer.err").read_text()
    finally:
        if producer.poll() is None:
            kill_group(producer)

    assert during_cut[0] == during_cut[1] < total, f"records arrived through the cut: {during_cut}"
    assert f"sent {total} records" in (tmp_path / "producer.out").read_text()
    stream(spark, bootstrap, topic, tmp_path)
    ids = set(range(1, total + 1))
    check_output(spark, tmp_path, f"producer cut off from leader {leader} for 8 s (blackhole routes)", 1, total,
                 ids, ids)


@contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of ``size`` on ``folder`` for the block, unmounted after; the test is skipped
    where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {folder} here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount(folder: Path, options: str) -> None:
    """``mount -o remount,<options>``, again while a file is open for writing there (EBUSY)."""
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.05)


def visible_batches(output: Path) -> Dict[int, List[int]]:
    """The ids a glob of ``batch-*.csv`` sees, by batch."""
    seen: Dict[int, List[int]] = {}
    for path in sorted(output.glob("batch-*.csv")):
        seen.setdefault(int(path.name.split("-")[1]), []).extend(pandas.read_csv(path)["id"].tolist())
    return seen


def test_a_full_output_file_system_stops_the_job_in_one_line_shows_only_whole_batches_and_a_rerun_writes_every_id_once(
    cluster, spark, topic, tmp_path
):
    bootstrap, total = cluster.bootstrap_servers, 6000
    produce(bootstrap, topic, total)
    # 192 KiB hold four batches of 1000 rows (CSV, checksums, the sink's lists and marks); the fifth fills it.
    with tmpfs(tmp_path / "output", "192k") as output:
        failed = run(stream_command(bootstrap, topic, tmp_path, "--max-offsets-per-trigger", "1000"), timeout=600)
        seen = visible_batches(output)
        planned = {int(name) for name in batch_files(tmp_path, "offsets")}
        remount(output, "size=16m")
        stream(spark, bootstrap, topic, tmp_path)
        check_output(spark, tmp_path, "output tmpfs full (192 KiB), then grown to 16 MiB", 1, total,
                     set(range(1, total + 1)), set(range(1, total + 1)))

    # spark-submit hands the Python driver's stderr to its own stdout.
    errors = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("error:")]
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: StorageError: no space is left on the file system of output folder {output} (writing "
    ), errors
    assert seen and set(seen) <= planned, f"batches {sorted(seen)} visible, {sorted(planned)} planned"
    for batch_id, ids in seen.items():
        start_offset, end = planned_end_offset(tmp_path, batch_id - 1), planned_end_offset(tmp_path, batch_id)
        assert sorted(ids) == list(range(start_offset + 1, end + 1)), f"batch {batch_id} is not whole"


def test_a_checkpoint_turned_read_only_mid_run_stops_the_job_in_one_line_and_after_repair_it_resumes_with_every_id_once(
    cluster, spark, topic, tmp_path
):
    bootstrap, more = cluster.bootstrap_servers, 1000
    produce(bootstrap, topic, 100)
    command = stream_command(bootstrap, topic, tmp_path, "--trigger", "processing-time=1s")
    with tmpfs(tmp_path / "checkpoint", "16m") as checkpoint:
        job = start(command, tmp_path / "stream.log")
        producer = None
        try:
            wait_until(lambda: batch_files(tmp_path, "commits"), 240, "the first batch committed")
            # Records keep coming, so that the job has batches to plan once the file system is read-only.
            producer = start_producer(
                produce_command(bootstrap, topic, more, "--rate", "100", "--timeout", "60"), tmp_path, "producer"
            )
            wait_until(lambda: len(batch_files(tmp_path, "commits")) >= 2, 120, "a second batch committed")
            remount(checkpoint, "ro")
            try:
                job.wait(timeout=120)
            finally:
                remount(checkpoint, "rw")
            assert producer.wait(timeout=120) == 0, (tmp_path / "producer.err").read_text()
        finally:
            for process in (producer, job):
                if process is not None and process.poll() is None:
                    kill_group(process)
        logs = {kind: sorted(batch_files(tmp_path, kind), key=int) for kind in ("offsets", "commits")}
        for kind, names in logs.items():
            for name in names:
                version, *entries = (checkpoint / kind / name).read_text().splitlines()
                assert version == "v1" and all(json.loads(entry) is not None for entry in entries), f"{kind}/{name}"
        stream(spark, bootstrap, topic, tmp_path)
        ids = set(range(1, 100 + more + 1))
        check_output(spark, tmp_path, "checkpoint tmpfs remounted read-only mid-run, then rw", 1, 100 + more, ids, ids)

    errors = [line for line in (tmp_path / "stream.log").read_text().splitlines() if line.startswith("error:")]
    assert job.returncode == 1, (tmp_path / "stream.log").read_text()[-3000:]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: StorageError: checkpoint folder {checkpoint} is on a read-only file system (writing {checkpoint}/"
    ), errors
