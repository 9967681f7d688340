"""The benchmark suite: the pipeline against what a user would otherwise run, side by side in
one run, on a Kafka broker of its own (a free loopback port) and one local SparkSession.

    make bench                                   # N = 20, 100,000, 1,000,000; 5 rounds each
    python bench/bench_suite.py --sizes 20,20000 --latency-seconds 5 --out /tmp/b/results.json

Every comparison runs --repeats rounds, the sides in turn and the order reversed every other
round, after a warm-up round that runs every side once; a figure is the median of its rounds
with their range, and a ratio the median (and range) of the rounds' own ratios. For each N
(records in --partitions partitions):

- producer throughput, each side in a process of its own (bench/producers.py) sending the same
  records, keys included, to a fresh topic: the project's producer (jobs/produce.py's code path:
  acks=all, idempotent, every acknowledgement counted) against a kafka-python send loop with
  its default settings and confluent-kafka's producer with acks=all and idempotence; timed
  in the process from the call to the last acknowledgement, and as a whole process; the peak
  RSS of each process;
- stream throughput, on one topic loaded with the same records, a share of them malformed
  (--malformed, 1%): the pipeline (``run_pipeline`` as jobs/stream.py runs it: parse, the
  malformed records to the quarantine with their reason, the rest to CSV), the naive job (one
  query: from_json, value * 2, CSV file sink; a malformed record becomes a row of nulls), Spark
  reading into the noop sink, and plain consumer loops (json.loads, csv.writer; a record that
  does not parse or lacks a field goes to a rejects file) on kafka-python and confluent-kafka;
  timed by the query's own clock (Spark's: its start to the end of its last trigger with rows;
  the loops: the consumer's first request to the last row written) and by the whole call
  (the pipeline: configuration, plan, the checkpoint's claim and the stop included);
- peak RSS of the driver JVM and of the Python driver during each stream measurement, and the
  files that the pipeline and the naive job write per 1,000,000 records.

Then once: end-to-end latency with ``processing-time=1s`` at a steady input (jobs/produce.py
--rate in a process of its own), and the wall time of ``make demo``'s steps. Writes
results.json (the keys of other scripts in it are kept), throughput.png and latency.png beside
it (--out).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402

RATIO_KEYS = {
    "stream_vs_naive_ratio": ("stream", "pipeline", "naive_job", ">= 0.9"),
    "stream_vs_noop_read_ratio": ("stream", "pipeline", "spark_noop_read", None),
    "stream_vs_plain_consumer_ratio": ("stream", "pipeline", "kafka_python_consumer", ">= 3"),
    "stream_vs_confluent_consumer_ratio": ("stream", "pipeline", "confluent_consumer", None),
    # The same two on a topic without malformed records: what the quarantine path costs.
    "stream_clean_vs_naive_ratio": ("stream_clean", "pipeline", "naive_job", None),
    "producer_vs_naive_ratio": ("producer", "project", "naive_kafka_python", ">= 1"),
    "producer_vs_confluent_ratio": ("producer", "project", "confluent", None),
}
LATENCY_RATIO_KEY = "latency_p99_vs_trigger_ratio"
# Kafka to Kafka: real-time mode as jobs/stream.py runs it, with the clients' waits cut, and
# micro-batches at the shortest trigger.
RTM_KEYS = {
    "rtm_latency_p99_ms": "pipeline",
    "rtm_latency_p99_ms_tuned": "tuned",
    "kafka_micro_batch_latency_p99_ms": "micro-batch",
}
RTM_TARGET = "<= 100"
LATENCY_TARGET = "<= 1.5"
# The project's producer's peak RSS less the kafka-python loop's (medians of their processes).
MEMORY_KEY = "producer_peak_rss_vs_naive_mb"
MEMORY_TARGET = "<= 20"

# Each section's timers, the first the one of its ratio keys; the others' ratios are kept as
# <key>_<timer>_ratio (stream_vs_naive_call_ratio, producer_vs_naive_process_ratio).
TIMERS = {"stream": ("query", "call"), "stream_clean": ("query", "call"), "producer": ("call", "process", "cpu")}
CLEAN_SIDES = ("pipeline", "naive_job")
TIMER_METHODS = {
    "stream.query": (
        "the query's own clock: Spark's from the query's start (its QueryStartedEvent) to the end of "
        "its last trigger with rows (that progress's timestamp + durationMs.triggerExecution); the "
        "loops' from the consumer's first request (partitions, end offsets) to the last row written"
    ),
    "stream.call": (
        "the whole call: the pipeline's configuration, plan (the topic checked on the broker), "
        "checkpoint claim, query and stop; the naive job's and the noop read's query built, "
        "started and awaited; the loops' consumer made, read to the end and closed"
    ),
    "producer.call": (
        "in the producer's own process, from the call (the project: jobs/produce.py's flags, "
        "configuration and topic check; the loops: the client's construction) to the last "
        "acknowledgement and the client's close"
    ),
    "producer.process": "the producer's whole process: interpreter start, imports, the call and exit",
    "producer.cpu": (
        "the CPU seconds of the producer's whole process (user and system, every thread, imports "
        "included): the figure the machine's other load changes least"
    ),
}
SIDE_METHODS = {
    "pipeline": (
        "run_pipeline as jobs/stream.py runs it: every record parsed and checked; the malformed "
        "go to the quarantine (JSON, with the reason and the payload), the rest to CSV with "
        "processed_value; the run's first batch is written for both sinks by one write, each row "
        "as its sink's line of text"
    ),
    "naive_job": (
        "one query: from_json, value * 2, Spark's CSV file sink; no quarantine: a malformed record "
        "becomes a row of nulls in the output"
    ),
    "spark_noop_read": "the topic read into Spark's noop sink: no parse, nothing written",
    "kafka_python_consumer": (
        "json.loads, csv.writer; a record that does not parse, lacks a field or has a value that is "
        "not an integer goes to a rejects file with the reason"
    ),
    "confluent_consumer": "as the kafka-python loop, on confluent-kafka's consumer",
    "project": "jobs/produce.py's code path (produce_main): acks=all, idempotent, every acknowledgement counted",
    "naive_kafka_python": "a kafka-python send loop, default settings (acks=1, not idempotent), then flush",
    "confluent": "confluent-kafka's producer, acks=all and idempotence, delivery reports counted",
}

STREAM_LABELS = {
    "pipeline": "pipeline (run_pipeline: parse, quarantine, CSV)",
    "naive_job": "naive job (from_json, CSV sink)",
    "spark_noop_read": "Spark reading into the noop sink",
    "kafka_python_consumer": "kafka-python loop (json.loads, csv.writer)",
    "confluent_consumer": "confluent-kafka loop (json.loads, csv.writer)",
}
PRODUCER_LABELS = {
    "project": "project producer (acks=all, idempotent)",
    "naive_kafka_python": "kafka-python send loop, default settings",
    "confluent": "confluent-kafka (acks=all, idempotent)",
}
HEADER = ["id", "value", "timestamp", "processed_value"]


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------- memory


def reset_peak_rss(pid: int) -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of one of our own processes."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mb(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Peaks:
    """Peak RSS of the driver JVM and of this Python process over a ``with`` block."""

    def __init__(self, jvm_pid: int):
        self.pids = {"driver_jvm": jvm_pid, "python_driver": os.getpid()}
        self.overall: Dict[str, float] = {}

    def measure(self) -> "_Window":
        return _Window(self)


class _Window:
    def __init__(self, peaks: Peaks):
        self.peaks = peaks
        self.result: Dict[str, Optional[float]] = {}

    def __enter__(self) -> "_Window":
        for name, pid in self.peaks.pids.items():
            # Keep the run's overall peak before the mark is reset.
            value = peak_rss_mb(pid)
            if value is not None:
                self.peaks.overall[name] = max(self.peaks.overall.get(name, 0.0), value)
            reset_peak_rss(pid)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for name, pid in self.peaks.pids.items():
            value = peak_rss_mb(pid)
            self.result[name] = value
            if value is not None:
                self.peaks.overall[name] = max(self.peaks.overall.get(name, 0.0), value)


# ---------------------------------------------------------------- producers


PRODUCERS = ("project", "naive_kafka_python", "confluent")
SEED = 7  # bench/producers.py's, so that the stream topic holds the records the producers send


def run_producer(name: str, bootstrap: str, topic: str, count: int, partitions: int) -> Dict[str, Any]:
    """One producer side (bench/producers.py) in a process of its own: its call's seconds, the
    process's wall seconds, CPU seconds and peak RSS."""
    command = [
        sys.executable, str(ROOT / "bench" / "producers.py"), name, "--bootstrap-servers", bootstrap,
        "--topic", topic, "--count", str(count), "--partitions", str(partitions),
    ]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    process_seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"producer {name} failed: {(finished.stderr or finished.stdout).strip()[-2000:]}")
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    return {
        "call_seconds": figures["seconds"], "process_seconds": round(process_seconds, 3),
        "cpu_seconds": figures["cpu_seconds"], "peak_rss_mb": figures["peak_rss_mb"],
    }


# Malformed payloads of the stream topic, in turn: what a broken or foreign producer sends.
MALFORMED: List[Callable[[Dict[str, Any]], bytes]] = [
    lambda record: json.dumps(record).encode("utf-8")[:-9],  # cut short: not JSON
    lambda record: json.dumps({**record, "value": str(record["value"])}).encode("utf-8"),  # "75", not 75
    lambda record: json.dumps({"id": record["id"], "timestamp": record["timestamp"]}).encode("utf-8"),  # no value
    lambda record: json.dumps(list(record.values())).encode("utf-8"),  # an array
    lambda record: b"\xff\xfe" + json.dumps(record).encode("utf-8"),  # not UTF-8
]


def malformed_positions(count: int, share: float) -> List[int]:
    """Which of ``count`` records are malformed: ceil(count * share) of them (one at least when
    ``share`` > 0), spread evenly."""
    bad = min(count, math.ceil(count * share)) if share > 0 else 0
    return [int((index + 0.5) * count / bad) for index in range(bad)]


def load_workload(bootstrap: str, topic: str, count: int, share: float) -> int:
    """Fill ``topic`` with the producers' records (``generate_records(count, 1, seed=7)``, keyed
    by id), those at :func:`malformed_positions` replaced by :data:`MALFORMED` payloads in turn;
    returns how many are malformed. confluent-kafka loads it (fastest; it is not measured)."""
    from confluent_kafka import Producer

    from pipeline_lib.producer import encode, generate_records

    bad = {position: index for index, position in enumerate(malformed_positions(count, share))}
    failed: List[str] = []

    def on_delivery(error, message) -> None:
        if error is not None:
            failed.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20})
    for position, record in enumerate(generate_records(count, 1, seed=SEED)):
        payload = MALFORMED[bad[position] % len(MALFORMED)](record) if position in bad else encode(record)
        while True:
            try:
                producer.produce(topic, payload, str(record["id"]).encode("utf-8"), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(600) or failed:
        raise RuntimeError(f"loading {topic}: not every record delivered ({failed[:3]})")
    return len(bad)


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Create ``topic`` and wait until the broker lists it (creation reaches metadata later)."""
    from pipeline_lib.kafka_client import KafkaSettings, ensure_topic, topic_exists

    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic)
    ensure_topic(kafka, partitions, timeout)
    deadline = time.monotonic() + timeout
    while not topic_exists(kafka, timeout):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} was created but is not listed after {timeout:g}s")
        time.sleep(0.2)


def topic_size(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    """Drop a measured producer's topic, so that every round finds the broker as lean."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic], timeout_ms=30000)
    finally:
        admin.close()


# ---------------------------------------------------------------- stream readers


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def query_clock():
    """A StreamingQueryListener that keeps Spark's own clock of every query: when it started and
    when its last trigger with rows ended (made here: pyspark is imported once Spark runs)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class QueryClock(StreamingQueryListener):
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.started: List[tuple] = []  # (query id, epoch seconds), in start order
            self.ends: Dict[str, float] = {}
            self.terminated: set = set()

        def onQueryStarted(self, event) -> None:
            with self.lock:
                self.started.append((str(event.id), _epoch(event.timestamp)))

        def onQueryProgress(self, event) -> None:
            progress = event.progress
            if progress.numInputRows:
                end = _epoch(progress.timestamp) + progress.durationMs.get("triggerExecution", 0) / 1000
                with self.lock:
                    self.ends[str(progress.id)] = max(end, self.ends.get(str(progress.id), 0.0))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            with self.lock:
                self.terminated.add(str(event.id))

        def mark(self) -> int:
            with self.lock:
                return len(self.started)

        def seconds_since(self, mark: int, timeout: float = 60.0) -> float:
            """From the start of the first query started since ``mark`` to the end of the last
            trigger with rows of any of them, once Spark reported them all terminated."""
            deadline = time.monotonic() + timeout
            while True:
                with self.lock:
                    queries = self.started[mark:]
                    done = queries and all(query in self.terminated for query, _ in queries)
                    if done:
                        ends = [self.ends[query] for query, _ in queries if query in self.ends]
                        if not ends:
                            raise RuntimeError("a query ended with no trigger that had rows")
                        return max(ends) - min(started for _, started in queries)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Spark did not report the queries' end within {timeout:g}s")
                time.sleep(0.05)

    return QueryClock()


def stream_pipeline(spark, bootstrap: str, topic: str, work: Path) -> Dict[str, Any]:
    from pipeline_lib.pipeline import load_pipeline_config
    from pipeline_lib.run import run_pipeline

    config = load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "output.path": str(work / "output"),
            "quarantine.path": str(work / "quarantine"), "checkpoint": str(work / "checkpoint"),
            "trigger": "available-now",
        },
        environ={},
    )
    lines: List[str] = []
    summary = run_pipeline(spark, config, emit=lines.append)
    files = len(glob.glob(str(work / "output" / "batch-*")))
    return {
        "rows": summary.written + summary.quarantined, "written": summary.written, "rejected": summary.quarantined,
        "run_seconds": round(summary.seconds, 3), "batches": summary.batches, "files": files, "batch_lines": lines[:20],
    }


def _kafka_stream(spark, bootstrap: str, topic: str):
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )


def _await_rows(query) -> Dict[str, Any]:
    query.awaitTermination()
    if query.exception() is not None:
        raise RuntimeError(str(query.exception()))
    progress = [p for p in query.recentProgress if p]
    rows = sum(int(p["numInputRows"]) for p in progress)
    return {"rows": rows, "written": rows, "rejected": 0, "batches": sum(1 for p in progress if p["numInputRows"])}


def stream_naive_job(spark, bootstrap: str, topic: str, work: Path) -> Dict[str, Any]:
    from pyspark.sql import functions as F

    from pipeline_lib.schema import RECORD_SCHEMA

    query = (
        _kafka_stream(spark, bootstrap, topic)
        .select(F.from_json(F.col("value").cast("string"), RECORD_SCHEMA).alias("r"))
        .select("r.*")
        .withColumn("processed_value", F.col("value") * 2)
        .writeStream.format("csv")
        .option("header", "true")
        .option("path", str(work / "output"))
        .option("checkpointLocation", str(work / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    result = _await_rows(query)
    result["files"] = len(glob.glob(str(work / "output" / "part-*")))
    return result


def stream_noop(spark, bootstrap: str, topic: str, work: Path) -> Dict[str, Any]:
    query = (
        _kafka_stream(spark, bootstrap, topic)
        .writeStream.format("noop")
        .option("checkpointLocation", str(work / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    result = _await_rows(query)
    result["written"] = 0
    return result


def _loop_row(payload: bytes) -> tuple:
    """A plain loop's row of a payload; ValueError, KeyError or TypeError for a malformed one."""
    record = json.loads(payload)
    value = record["value"]
    if type(value) is not int:
        raise TypeError(f"value {value!r} is not an integer")
    return (record["id"], value, record["timestamp"], value * 2)


def stream_kafka_python(spark, bootstrap: str, topic: str, work: Path, timeout: float = 900) -> Dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    written = rejected = 0
    try:
        started = time.perf_counter()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        work.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with open(work / "output.csv", "w", newline="") as handle, open(work / "rejects.csv", "w", newline="") as bad:
            writer, rejects = csv.writer(handle), csv.writer(bad)
            writer.writerow(HEADER)
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500, max_records=10000).values():
                    for message in records:
                        try:
                            writer.writerow(_loop_row(message.value))
                            written += 1
                        except (ValueError, KeyError, TypeError) as error:
                            rejects.writerow((message.partition, message.offset, repr(error)))
                            rejected += 1
                remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        query_seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return {"rows": written + rejected, "written": written, "rejected": rejected, "files": 1, "query_seconds": query_seconds}


def stream_confluent(spark, bootstrap: str, topic: str, work: Path, timeout: float = 900) -> Dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        }
    )
    written = rejected = 0
    try:
        started = time.perf_counter()
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        expected = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            expected += high - low
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        work.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with open(work / "output.csv", "w", newline="") as handle, open(work / "rejects.csv", "w", newline="") as bad:
            writer, rejects = csv.writer(handle), csv.writer(bad)
            writer.writerow(HEADER)
            while written + rejected < expected and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=10000, timeout=0.5):
                    if message.error():
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise RuntimeError(str(message.error()))
                    try:
                        writer.writerow(_loop_row(message.value()))
                        written += 1
                    except (ValueError, KeyError, TypeError) as error:
                        rejects.writerow((message.partition(), message.offset(), repr(error)))
                        rejected += 1
        query_seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return {"rows": written + rejected, "written": written, "rejected": rejected, "files": 1, "query_seconds": query_seconds}


STREAMS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "spark_noop_read": stream_noop,
    "naive_job": stream_naive_job,
    "pipeline": stream_pipeline,
    "kafka_python_consumer": stream_kafka_python,
    "confluent_consumer": stream_confluent,
}


# ---------------------------------------------------------------- measurements


def measure_producer(name: str, bootstrap: str, topic: str, size: int, partitions: int) -> Dict[str, Any]:
    """One producer side's run to a fresh topic, checked (every record on it) and dropped."""
    create_topic(bootstrap, topic, partitions)
    load = round(os.getloadavg()[0], 2)
    run = {**run_producer(name, bootstrap, topic, size, partitions), "load_1m": load}
    on_topic = topic_size(bootstrap, topic)
    if on_topic != size:
        raise RuntimeError(f"{name} left {on_topic} records on {topic}, not {size}")
    delete_topic(bootstrap, topic)
    return run


def measure_stream(name: str, spark, bootstrap: str, topic: str, work: Path, peaks: Peaks, clock) -> Dict[str, Any]:
    """One stream reader's run over ``topic`` into ``work``: both timers, its counts, the
    driver's peak memory and the time its JVM spent collecting garbage in the call."""
    from bench.latency_realtime import collected_ms, garbage_collectors

    mark = clock.mark()
    load = round(os.getloadavg()[0], 2)
    collectors = garbage_collectors(spark)
    with peaks.measure() as window:
        collected = collected_ms(collectors)
        started = time.perf_counter()
        outcome = STREAMS[name](spark, bootstrap, topic, work)
        call_seconds = time.perf_counter() - started
        collected = collected_ms(collectors) - collected
    query_seconds = outcome.pop("query_seconds", None)
    if query_seconds is None:
        query_seconds = clock.seconds_since(mark)
    return {
        "query_seconds": round(query_seconds, 3), "call_seconds": round(call_seconds, 3), "load_1m": load,
        "driver_jvm_gc_ms": collected, "peak_rss_mb": window.result, **outcome,
    }


def stream_summary(runs: List[Dict[str, Any]], size: int) -> Dict[str, Any]:
    """:func:`summarize` for a stream reader, with its counts, the pipeline's first batch lines,
    and each process's highest peak RSS over the rounds."""
    lines = [run.pop("batch_lines", None) for run in runs]
    summary = summarize("stream", runs, size)
    for key in ("rows", "written", "rejected", "batches", "files"):
        if key in runs[-1]:
            summary[key] = runs[-1][key]
    if lines[0]:
        summary["batch_lines"] = lines[0]
    processes = {process for run in runs for process in run["peak_rss_mb"]}
    summary["peak_rss_mb"] = {
        process: max((run["peak_rss_mb"][process] or 0.0) for run in runs) or None for process in sorted(processes)
    }
    return summary


# ---------------------------------------------------------------- latency


def latency_phase(spark, bootstrap: str, work: Path, args, peaks: Peaks) -> Dict[str, Any]:
    """Records' own timestamps against the moment their micro-batch was committed.

    The commit moment of batch N is its report's ``finished_at``: the moment every sink had
    committed it and the output's ledger marked it (the batch is then visible to readers). Each row's latency is that moment minus the ``timestamp`` field of its record
    (set by the producer when it made the record), read back from ``batch-N-part-*.csv``.
    """
    import numpy as np

    from pipeline_lib.pipeline import load_pipeline_config
    from pipeline_lib.reports import BatchReport, Listener
    from pipeline_lib.run import run_pipeline

    topic = "latency"
    create_topic(bootstrap, topic, args.partitions)
    trigger = f"processing-time={args.trigger_seconds:g}s"
    config = load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "output.path": str(work / "output"),
            "quarantine.path": str(work / "quarantine"), "checkpoint": str(work / "checkpoint"),
            "trigger": trigger,
        },
        environ={},
    )
    count = int(args.latency_rate * args.latency_seconds)
    commits: Dict[int, float] = {}
    write_seconds: Dict[int, float] = {}
    rows_seen = [0]
    queries: List[Any] = []
    outcome: Dict[str, Any] = {}
    stop = threading.Event()

    class Commits(Listener):
        def on_batch(self, report: BatchReport) -> None:
            if not report.skipped:
                commits[report.batch_id] = report.finished_at
                write_seconds[report.batch_id] = report.seconds
                rows_seen[0] += report.rows_read

    def run() -> None:
        try:
            outcome["summary"] = run_pipeline(spark, config, emit=lambda line: None, stop_event=stop, listeners=[Commits()])
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            outcome["error"] = error

    with peaks.measure() as window:
        thread = threading.Thread(target=run, name="latency-pipeline", daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "error" not in outcome:
            active = spark.streams.active
            if active and not active[0].status["isTriggerActive"] and active[0].status["message"] != "Initializing sources":
                queries.append(active[0])
                break
            time.sleep(0.2)
        if "error" in outcome or not queries:
            stop.set()
            raise outcome.get("error") or RuntimeError("latency: the query did not start within 120s")
        say(f"latency: query ready; producing {count} records at {args.latency_rate:g}/s")
        input_started = time.time()
        producer = subprocess.run(
            [
                sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
                "--count", str(count), "--rate", f"{args.latency_rate:g}", "--partitions", str(args.partitions),
                "--start-id", "1", "--seed", "7", "--timeout", "120",
            ],
            capture_output=True, text=True, timeout=args.latency_seconds + 180,
        )
        input_ended = time.time()
        if producer.returncode != 0:
            stop.set()
            raise RuntimeError(f"latency producer failed: {producer.stderr.strip() or producer.stdout.strip()}")
        deadline = time.monotonic() + max(60.0, 10 * args.trigger_seconds)
        while rows_seen[0] < count and time.monotonic() < deadline and "error" not in outcome:
            time.sleep(0.1)
        stop.set()
        thread.join(120)
    if "error" in outcome:
        raise outcome["error"]

    rows: List[tuple] = []
    for batch_id, committed in sorted(commits.items()):
        for path in sorted(glob.glob(str(work / "output" / f"batch-{batch_id:08d}-part-*.csv"))):
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    stamp = float(row["timestamp"])
                    rows.append((stamp, committed - stamp, batch_id))
    warmup = min(5.0, args.latency_seconds * 0.1)
    steady = [latency for stamp, latency, _ in rows if stamp >= input_started + warmup]
    everything = [latency for _, latency, _ in rows]

    def percentiles(values: List[float]) -> Dict[str, Optional[float]]:
        if not values:
            return {"p50_s": None, "p95_s": None, "p99_s": None, "max_s": None, "records": 0}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {
            "p50_s": round(float(p50), 4), "p95_s": round(float(p95), 4), "p99_s": round(float(p99), 4),
            "max_s": round(float(max(values)), 4), "records": len(values),
        }

    # Spark's own account of each batch with rows (durationMs: addBatch is the foreachBatch call).
    spark_ms: Dict[str, Any] = {}
    progresses = [p for p in (queries[0].recentProgress if queries else []) if p and p["numInputRows"]]
    for key in sorted({key for p in progresses for key in (p["durationMs"] or {})}):
        values = [p["durationMs"][key] for p in progresses if key in p["durationMs"]]
        spark_ms[key] = {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "max": max(values)}

    batches = []
    for batch_id, committed in sorted(commits.items()):
        values = [latency for _, latency, b in rows if b == batch_id]
        if values:
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            batches.append(
                {
                    "batch": batch_id, "committed_after_s": round(committed - input_started, 3), "rows": len(values),
                    "p50_s": round(float(p50), 4), "p95_s": round(float(p95), 4), "p99_s": round(float(p99), 4),
                    "max_s": round(float(max(values)), 4), "write_s": write_seconds.get(batch_id),
                }
            )
    steady_figures = percentiles(steady)
    return {
        "method": (
            "commit moment = batch N's report finished_at, when every sink committed it and the output's "
            "ledger marked _batches/N; latency = that moment - the record's own timestamp field "
            "(set when the producer made it), read from batch-N-part-*.csv"
        ),
        "trigger": trigger,
        "trigger_seconds": args.trigger_seconds,
        "rate_records_per_s": args.latency_rate,
        "seconds": args.latency_seconds,
        "records_sent": count,
        "records_measured": len(rows),
        "input_seconds": round(input_ended - input_started, 2),
        "warmup_excluded_s": warmup,
        **steady_figures,
        "including_warmup": percentiles(everything),
        "batches": batches,
        "batch_write_s": percentiles(list(write_seconds.values())) if write_seconds else None,
        "spark_duration_ms": spark_ms,
        "peak_rss_mb": window.result,
    }


# ---------------------------------------------------------------- make demo


def realtime_latency_phase(spark, bootstrap: str, work: Path, args) -> Dict[str, Any]:
    """Real-time mode, Kafka to Kafka with the quarantine topic: per round each variant of
    bench/latency_realtime.py once (the order reversed every other round), a record's latency
    from its send to a consumer reading it off the output topic; per variant the median and range
    of the rounds' percentiles after the warm-up records."""
    from bench.latency_realtime import VARIANTS, measure

    settings = argparse.Namespace(
        count=args.rtm_count, rate=args.rtm_rate, partitions=args.partitions, interval="5m",
        warm_up=args.rtm_warm_up, timeout=300.0,
    )
    rounds: Dict[str, List[Dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_index in range(args.repeats):
        for variant in in_turn(VARIANTS, round_index):
            run = measure(spark, bootstrap, work, variant, settings)
            if run["received"] != args.rtm_count or not run["after_warm_up"]:
                raise RuntimeError(f"real-time {variant}: {run['received']} of {args.rtm_count} records came through")
            rounds[variant].append(run)
            figures, stalled = run["after_warm_up"], run["stalls_after_warm_up"]
            say(
                f"  round {round_index + 1}, {variant}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
                f"stalls {[(stall['worst_ms'], stall['jvm_gc_ms'], stall['python_gc_ms']) for stall in stalled]} "
                "(worst ms, JVM and Python GC ms)"
            )
    return {
        "rate_records_per_s": args.rtm_rate,
        "records": args.rtm_count,
        "warm_up_records": args.rtm_warm_up,
        "partitions": args.partitions,
        "method": (
            "per run fresh topics and a query of its own in the bench's session; a first record through "
            "before the clock starts; kafka-python sends at the rate (linger_ms 0, acks 1), each record's "
            "timestamp its send time; a kafka-python consumer (fetch_max_wait_ms 10) reads the output topic; "
            "latency = moment read - timestamp; percentiles of the records after the warm-up; variants: "
            "pipeline = run() as jobs/stream.py --trigger real-time runs it, tuned = the same records with "
            "the source's kafka.fetch.max.wait.ms 10 and the sink's kafka.linger.ms 0, micro-batch = the "
            "pipeline with --trigger processing-time=0s (the shortest trigger) to the same Kafka sink"
        ),
        "variants": {
            variant: {
                f"{key}_ms": spread([run["after_warm_up"][f"{key}_ms"] for run in runs])
                for key in ("p50", "p95", "p99", "max")
            }
            | {"runs": runs}
            for variant, runs in rounds.items()
        },
    }


DEMO_STEPS = ("broker", "produce", "spark_start", "batch", "finish")
MADE_STEPS = ("venv", "jars", "dist")


def demo_steps(lines: Sequence[Tuple[float, str]], total: float) -> Dict[str, Optional[float]]:
    """The seconds of ``make demo``'s steps from the lines ``infra/demo.sh`` printed, each with
    the moment it came (seconds from the start), and the run's ``total``: every step None when a
    line it ends at is missing."""

    def first(pattern: str) -> Optional[float]:
        """The moment of the first line matching ``pattern``."""
        return next((t for t, text in lines if re.search(pattern, text)), None)

    broker = first(r"^Kafka (started|already running)")
    produced = first(r"^sent \d+ records")
    batch_lines = [(t, re.search(r"^batch \d+: \d+ rows in ([0-9.]+)s", text)) for t, text in lines]
    batches = [(t, float(m.group(1))) for t, m in batch_lines if m]
    if broker is None or produced is None or not batches:
        return dict.fromkeys(DEMO_STEPS)
    first_batch_at, first_batch_seconds = batches[0]
    return {
        "broker": round(broker, 2),
        "produce": round(produced - broker, 2),
        "spark_start": round(first_batch_at - first_batch_seconds - produced, 2),
        "batch": round(sum(seconds for _, seconds in batches), 2),
        "finish": round(total - batches[-1][0], 2),
    }


def demo_phase(work: Path, make_steps: Optional[Path]) -> Dict[str, Any]:
    """``infra/demo.sh`` as ``make demo`` runs it, in a folder of its own (its .demo and its own
    broker on a free port), each step timed from the lines the script prints."""
    tree = work / "tree"
    (tree / "infra").mkdir(parents=True)
    shutil.copy(ROOT / "infra" / "demo.sh", tree / "infra" / "demo.sh")
    for name in ("infra/kafka", "infra/spark", "jobs", "dist"):
        os.symlink(ROOT / name, tree / name)
    environ = {
        **os.environ, "PY": sys.executable, "KAFKA_HOME": str(work / "kafka"), "KAFKA_PORT": str(free_port()),
    }
    lines: List[Tuple[float, str]] = []
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", str(tree / "infra" / "demo.sh")], cwd=tree, env=environ,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    code = process.wait()
    total = time.perf_counter() - started

    steps = demo_steps(lines, total)
    made = {}
    if make_steps and make_steps.exists():
        made = json.loads(make_steps.read_text()).get("steps", {})
    result = {
        "method": (
            "venv and jars: make's own targets timed by bench/make_steps.py at the start of make bench "
            "(up_to_date says whether they had work to do); the rest: infra/demo.sh run in a folder "
            "of its own, each step ending at the line it prints: broker (probe + start) to "
            "'Kafka started', produce to 'sent N records', Spark start to the first batch's start "
            "(its line minus its own seconds), batch = the batch lines' seconds, finish = the rest "
            "(--show, Spark and broker shut-down)"
        ),
        "exit_code": code,
        "steps_s": {
            **{name: made.get(name, {}).get("seconds") for name in MADE_STEPS},
            **steps,
        },
        "make_steps_up_to_date": {name: step.get("up_to_date") for name, step in made.items()} or None,
        "script_seconds": round(total, 2),
    }
    if code != 0:
        result["tail"] = [text for _, text in lines[-5:]]
    return result


# ---------------------------------------------------------------- results


def machine() -> Dict[str, Any]:
    memory_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def versions(spark) -> Dict[str, Optional[str]]:
    import confluent_kafka
    import kafka

    import pipeline_lib

    jars = sorted(glob.glob(str(ROOT / "infra" / "kafka" / "libs" / "kafka_2.13-*.jar")))
    broker = re.search(r"kafka_2\.13-(.+)\.jar$", jars[-1]).group(1) if jars else None
    return {
        "spark": spark.version,
        "kafka": broker,
        "kafka_python": kafka.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "java": subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0],
        "pipeline_lib": getattr(pipeline_lib, "__version__", None),
    }


def timer_key(key: str, timer: str) -> str:
    """The name of a ratio on a section's other timer: stream_vs_naive_ratio -> stream_vs_naive_call_ratio."""
    return f"{key[: -len('_ratio')]}_{timer}_ratio"


def spread(values: List[float], digits: int = 3) -> Dict[str, Any]:
    """The median of ``values``, their range and the values themselves, in round order."""
    return {
        "median": round(statistics.median(values), digits),
        "range": [round(min(values), digits), round(max(values), digits)],
        "rounds": [round(value, digits) for value in values],
    }


def in_turn(names: Any, round_index: int) -> List[str]:
    """The sides' order in a round: as listed, reversed every other round."""
    return list(names) if round_index % 2 == 0 else list(reversed(list(names)))


def summarize(section: str, runs: List[Dict[str, Any]], size: int) -> Dict[str, Any]:
    """A side's figures at one N: the median and range of records/s on each of the section's
    timers (``records_per_s`` on the first), and every round's own figures."""
    summary: Dict[str, Any] = {}
    for timer in TIMERS[section]:
        rates = spread([size / run[f"{timer}_seconds"] for run in runs], 1)
        summary[f"{timer}_records_per_s"] = rates["median"]
        summary[f"{timer}_records_per_s_range"] = rates["range"]
    main_timer = TIMERS[section][0]
    summary["records_per_s"] = summary[f"{main_timer}_records_per_s"]
    summary["records_per_s_range"] = summary[f"{main_timer}_records_per_s_range"]
    summary["runs"] = runs
    return summary


def ratios(results: Dict[str, Any], size: int) -> Dict[str, Dict[str, Any]]:
    """Every ratio at one N, each the median and range of the rounds' own ratios (ours / theirs
    in records/s, the two measured in the same round), on each timer of its section; and the
    producers' peak RSS difference, round by round."""
    out: Dict[str, Dict[str, Any]] = {}
    for key, (section, ours, theirs, _) in RATIO_KEYS.items():
        figures = results[section].get(str(size), {})
        if ours not in figures or theirs not in figures:
            continue
        for index, timer in enumerate(TIMERS[section]):
            pairs = zip(figures[ours]["runs"], figures[theirs]["runs"], strict=True)
            values = [theirs_run[f"{timer}_seconds"] / ours_run[f"{timer}_seconds"] for ours_run, theirs_run in pairs]
            out[key if index == 0 else timer_key(key, timer)] = spread(values)
    producers = results["producer"].get(str(size), {})
    if "project" in producers and "naive_kafka_python" in producers:
        pairs = zip(producers["project"]["runs"], producers["naive_kafka_python"]["runs"], strict=True)
        out[MEMORY_KEY] = spread([ours["peak_rss_mb"] - theirs["peak_rss_mb"] for ours, theirs in pairs], 1)
    return out


def ratio_keys() -> List[str]:
    """Every ratio key results.json has at its top level (each with a ``_range`` beside it)."""
    keys = []
    for key, (section, *_) in RATIO_KEYS.items():
        keys += [key, *(timer_key(key, timer) for timer in TIMERS[section][1:])]
    return keys + [MEMORY_KEY]


def _plot_medians(axis, results: Dict[str, Any], section: str, name: str, label: str, style: Dict[str, Any]) -> None:
    """One side's medians against N, a bar from the lowest round to the highest at each."""
    points = [
        (size, results[section][str(size)][name])
        for size in results["settings"]["sizes"]
        if results.get(section, {}).get(str(size), {}).get(name, {}).get("records_per_s")
    ]
    if points:
        medians = [figure["records_per_s"] for _, figure in points]
        low = [figure["records_per_s"] - figure["records_per_s_range"][0] for _, figure in points]
        high = [figure["records_per_s_range"][1] - figure["records_per_s"] for _, figure in points]
        axis.errorbar([size for size, _ in points], medians, yerr=[low, high], marker="o", capsize=3, label=label, **style)


def charts(results: Dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    when = f"{results['machine']['cores']} cores, {results['machine']['memory_gib']:g} GiB, {results['date'][:10]}"
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    share = results["settings"].get("malformed_share", 0)
    for axis, section, labels, title in (
        (left, "stream", STREAM_LABELS, f"Stream, the query's own clock (available-now, {share:.0%} malformed)"),
        (right, "producer", PRODUCER_LABELS, "Producer, call to last acknowledgement (a process each)"),
    ):
        for name, label in labels.items():
            style = {"linewidth": 3, "color": "black"} if name in ("pipeline", "project") else {"linewidth": 1.5}
            _plot_medians(axis, results, section, name, label, style)
        if section == "stream":
            style = {"linewidth": 2, "color": "black", "linestyle": "--"}
            _plot_medians(axis, results, "stream_clean", "pipeline", "pipeline, on a topic without malformed records", style)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(f"records (N, in {results['settings']['partitions']} partitions)")
        axis.set_ylabel("throughput (records/s)")
        axis.set_title(title, fontsize=11)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    figure.suptitle(f"Throughput against N: median of {results['repeats']} rounds, bars from the lowest to the highest ({when})")
    figure.tight_layout()
    figure.savefig(folder / "throughput.png", dpi=110)
    plt.close(figure)

    latency = results.get("latency") or {}
    batches = latency.get("batches") or []
    figure, (axis, realtime_axis) = plt.subplots(1, 2, figsize=(17, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    if batches:
        x = [b["committed_after_s"] for b in batches]
        for key, label in (("max_s", "max"), ("p99_s", "p99"), ("p95_s", "p95"), ("p50_s", "p50")):
            axis.plot(x, [b[key] for b in batches], marker=".", label=f"{label} of the batch's records")
        axis.axhline(latency["trigger_seconds"], color="grey", linestyle="--", label=f"trigger interval ({latency['trigger_seconds']:g} s)")
        if latency.get("p99_s"):
            axis.axhline(latency["p99_s"], color="red", linestyle=":", label=f"p99 of the run after warm-up ({latency['p99_s']:.2f} s)")
        axis.axvspan(0, latency.get("warmup_excluded_s", 0), color="orange", alpha=0.15, label="warm-up, left out of the run's percentiles")
    axis.set_xlabel("batch committed at (s since the input started)")
    axis.set_ylabel("latency: record timestamp to batch committed (s)")
    axis.set_ylim(bottom=0)
    axis.set_title(
        f"End-to-end latency per micro-batch: {latency.get('trigger', '')}, "
        f"{latency.get('rate_records_per_s', 0):,.0f} records/s for {latency.get('seconds', 0):g} s ({when})",
        fontsize=11,
    )
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    realtime_chart(realtime_axis, results.get("latency_realtime") or {}, latency)
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=110)
    plt.close(figure)


def realtime_chart(axis, realtime: Dict[str, Any], latency: Dict[str, Any]) -> None:
    """Real-time mode's percentiles per variant: the median of the rounds, bars to their range."""
    variants = realtime.get("variants") or {}
    keys = ("p50", "p95", "p99", "max")
    width = 0.8 / max(1, len(variants))
    for offset, (variant, figures) in enumerate(variants.items()):
        medians = [figures[f"{key}_ms"]["median"] for key in keys]
        low = [median - figures[f"{key}_ms"]["range"][0] for median, key in zip(medians, keys)]
        high = [figures[f"{key}_ms"]["range"][1] - median for median, key in zip(medians, keys)]
        positions = [index + offset * width for index in range(len(keys))]
        label = "micro-batches, processing-time=0s" if variant == "micro-batch" else f"real-time, {variant}"
        axis.bar(positions, medians, width, yerr=[low, high], capsize=3, label=label)
    if latency.get("p99_s"):
        axis.axhline(1000 * latency["p99_s"], color="red", linestyle=":", label="micro-batch p99 (left)")
    axis.axhline(100, color="grey", linestyle="--", label="target p99: 100 ms")
    axis.set_xticks([index + width * (len(variants) - 1) / 2 for index in range(len(keys))], keys)
    axis.set_yscale("log")
    axis.set_ylabel("latency: send to read off the output topic (ms)")
    axis.set_title(
        f"Kafka to Kafka: {realtime.get('rate_records_per_s', 0):,.0f} records/s, "
        f"{realtime.get('records', 0):,} a run", fontsize=11,
    )
    axis.grid(True, axis="y", which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,100000,1000000", help="comma-separated record counts (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every comparison, at least 3 (default %(default)s)")
    parser.add_argument("--malformed", type=float, default=0.01, help="share of malformed records on the stream topic")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="records/s of the latency phase's input")
    parser.add_argument("--trigger-seconds", type=float, default=1.0)
    parser.add_argument("--rtm-count", type=int, default=6000, help="records per run of the real-time latency phase")
    parser.add_argument("--rtm-rate", type=float, default=1000.0, help="records/s of the real-time latency phase")
    parser.add_argument("--rtm-warm-up", type=int, default=1000, help="first records of a real-time run left out")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="results.json; the charts go beside it")
    parser.add_argument("--make-steps", help="JSON of bench/make_steps.py (venv and jars timings)")
    parser.add_argument("--skip-demo", action="store_true", help="leave make demo's timing out (its keys stay, null)")
    parser.add_argument("--work", help="scratch folder (default: a new temporary one, removed at the end)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats: at least 3, for a median and a range")
    sizes = sorted({int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip()})
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-suite-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench_started = time.perf_counter()

    from pipeline_lib.session import get_spark

    broker = LocalKafka(work / "kafka", port=free_port(), heap="1g")
    say(f"starting a broker on {broker.bootstrap_servers}")
    broker.start()
    results: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "sizes": sizes, "partitions": args.partitions, "spark_master": "local[*]",
            "stream_trigger": "available-now", "latency_trigger_seconds": args.trigger_seconds,
            "repeats": args.repeats, "malformed_share": args.malformed,
        },
        "repeats": args.repeats,
        # The machine is shared: a busy one (load above its cores) stretches every wall-clock figure.
        "load_average": {"start": [round(load, 2) for load in os.getloadavg()]},
        "method": {
            "rounds": (
                f"every comparison {args.repeats} rounds after a warm-up round (every side once on 1,000 "
                "records); in a round each side runs once, in the order listed, reversed every other round; "
                "a figure is the median of the rounds (range: their lowest and highest), a ratio the median "
                "of the rounds' own ratios (ours / theirs in records/s, both of the same round)"
            ),
            "workload": (
                "the producers: generate_records(N, 1, seed=7), keyed by id, each side to a fresh topic "
                "(deleted after); the stream topic: the same records, confluent-kafka loading them, "
                f"ceil(N * {args.malformed:g}) of them spread evenly replaced by malformed payloads in turn "
                "(cut short, value as text, no value, an array, not UTF-8); stream_clean: the pipeline and "
                "the naive job once more on the same records without malformed ones"
            ),
            "timers": TIMER_METHODS,
            "sides": SIDE_METHODS,
            "memory": (
                "streams: VmHWM of the driver JVM and of the Python driver, reset (clear_refs 5) before each "
                "measurement, the highest of the rounds; producers: the peak RSS (ru_maxrss) of the side's own "
                f"process; {MEMORY_KEY}: the project's less the kafka-python loop's, round by round"
            ),
            "load": "load_1m of each round: the machine's 1-minute load average as the side started",
        },
        "producer": {},
        "stream": {},
        "stream_clean": {},
        "workload": {},
        "files_per_million_records": {"pipeline": {}, "naive_job": {}},
    }
    try:
        spark = get_spark("bench-suite", conf={"spark.ui.enabled": "false"})
        jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        peaks = Peaks(jvm_pid)
        results["versions"] = versions(spark)
        bootstrap = broker.bootstrap_servers

        clock = query_clock()
        spark.streams.addListener(clock)

        # The warm-up round: every side once, alike (the JIT, the connector's classes, Python's
        # imports, the broker's and the page cache), on a small topic of the same workload.
        warm = 1000
        create_topic(bootstrap, "warm-up", args.partitions)
        load_workload(bootstrap, "warm-up", warm, args.malformed)
        say("warm-up round: every producer and every stream reader once")
        for name in PRODUCERS:
            measure_producer(name, bootstrap, f"warm-up-{name.replace('_', '-')}", warm, args.partitions)
        for name in STREAMS:
            measure_stream(name, spark, bootstrap, "warm-up", work / "warm-up" / name, peaks, clock)

        for size in sizes:
            produced: Dict[str, List[Dict[str, Any]]] = {name: [] for name in PRODUCERS}
            for round_index in range(args.repeats):
                for name in in_turn(PRODUCERS, round_index):
                    topic = f"n{size}-r{round_index}-{name.replace('_', '-')}"
                    run = measure_producer(name, bootstrap, topic, size, args.partitions)
                    produced[name].append(run)
                    say(f"N={size:,} round {round_index + 1}: producer {name}: {size / run['call_seconds']:,.0f} records/s")
            results["producer"][str(size)] = {name: summarize("producer", produced[name], size) for name in PRODUCERS}

            topic = f"n{size}-stream"
            create_topic(bootstrap, topic, args.partitions)
            malformed = load_workload(bootstrap, topic, size, args.malformed)
            results["workload"][str(size)] = {"records": size, "malformed": malformed}
            streamed: Dict[str, List[Dict[str, Any]]] = {name: [] for name in STREAMS}
            for round_index in range(args.repeats):
                for name in in_turn(STREAMS, round_index):
                    folder = work / f"n{size}" / f"r{round_index}-{name}"
                    run = measure_stream(name, spark, bootstrap, topic, folder, peaks, clock)
                    if run["rows"] != size:
                        raise RuntimeError(f"{name} went through {run['rows']} rows of {topic}, not {size}")
                    if name in ("pipeline", "kafka_python_consumer", "confluent_consumer") and run["rejected"] != malformed:
                        raise RuntimeError(f"{name} rejected {run['rejected']} rows of {topic}, not the {malformed} malformed")
                    streamed[name].append(run)
                    shutil.rmtree(folder, ignore_errors=True)
                    say(f"N={size:,} round {round_index + 1}: stream {name}: {size / run['query_seconds']:,.0f} records/s")
            results["stream"][str(size)] = {name: stream_summary(streamed[name], size) for name in STREAMS}
            for name in results["files_per_million_records"]:
                files = streamed[name][-1]["files"]
                results["files_per_million_records"][name][str(size)] = round(files * 1_000_000 / size, 2)

            topic = f"n{size}-clean"
            create_topic(bootstrap, topic, args.partitions)
            load_workload(bootstrap, topic, size, 0.0)
            clean: Dict[str, List[Dict[str, Any]]] = {name: [] for name in CLEAN_SIDES}
            for round_index in range(args.repeats):
                for name in in_turn(CLEAN_SIDES, round_index):
                    folder = work / f"n{size}" / f"clean-r{round_index}-{name}"
                    run = measure_stream(name, spark, bootstrap, topic, folder, peaks, clock)
                    if run["rows"] != size or run["rejected"]:
                        raise RuntimeError(f"{name} went through {run['rows']} rows of {topic} ({run['rejected']} rejected)")
                    clean[name].append(run)
                    shutil.rmtree(folder, ignore_errors=True)
                    say(f"N={size:,} round {round_index + 1}: stream {name}, no malformed records: "
                        f"{size / run['query_seconds']:,.0f} records/s")
            results["stream_clean"][str(size)] = {name: stream_summary(clean[name], size) for name in CLEAN_SIDES}

        say(f"latency: {args.latency_rate:g} records/s for {args.latency_seconds:g}s, trigger {args.trigger_seconds:g}s")
        results["latency"] = latency_phase(spark, bootstrap, work / "latency", args, peaks)
        say(f"  p50 {results['latency']['p50_s']}s, p95 {results['latency']['p95_s']}s, p99 {results['latency']['p99_s']}s")
        say(f"real-time latency: {args.rtm_count:,} records at {args.rtm_rate:g}/s, {args.repeats} rounds of each variant")
        results["latency_realtime"] = realtime_latency_phase(spark, bootstrap, work / "latency-realtime", args)
        with peaks.measure():
            pass
        results["memory"] = {
            "peak_rss_mb": dict(peaks.overall),
            "method": "VmHWM of /proc/<pid>/status, reset (clear_refs 5) before each measurement; overall = the run's highest",
        }
        spark.stop()
    finally:
        broker.stop()

    if args.skip_demo:
        results["demo"] = {"skipped": True, "steps_s": dict.fromkeys(MADE_STEPS + DEMO_STEPS)}
    else:
        say("make demo's steps")
        results["demo"] = demo_phase(work / "demo", Path(args.make_steps) if args.make_steps else None)
        say(f"  {results['demo']['steps_s']}")

    largest = max(sizes)
    results["ratios"] = {str(size): ratios(results, size) for size in sizes}
    results["ratio_records"] = largest
    for key, figures in results["ratios"][str(largest)].items():
        results[key] = figures["median"]
        results[f"{key}_range"] = figures["range"]
    p99 = results["latency"].get("p99_s")
    results[LATENCY_RATIO_KEY] = round(p99 / results["latency"]["trigger_seconds"], 3) if p99 else None
    for key, variant in RTM_KEYS.items():
        figures = results["latency_realtime"]["variants"][variant]["p99_ms"]
        results[key], results[f"{key}_range"] = figures["median"], figures["range"]
    results["targets"] = {key: target for key, (*_, target) in RATIO_KEYS.items() if target}
    results["targets"][MEMORY_KEY] = MEMORY_TARGET
    results["targets"][LATENCY_RATIO_KEY] = LATENCY_TARGET
    results["targets"]["rtm_latency_p99_ms"] = RTM_TARGET
    results["bench_seconds"] = round(time.perf_counter() - bench_started, 1)
    results["load_average"]["end"] = [round(load, 2) for load in os.getloadavg()]
    # Other scripts keep their own keys in this file (bench/soak.py's soak): leave them be.
    previous = json.loads(out.read_text()) if out.exists() else {}
    results.update({key: value for key, value in previous.items() if key not in results})
    out.write_text(json.dumps(results, indent=2) + "\n")
    charts(results, out.parent)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {out}, {out.parent / 'throughput.png'}, {out.parent / 'latency.png'}")
    for key in [*ratio_keys(), LATENCY_RATIO_KEY, *RTM_KEYS]:
        spread_text = f", range {results[key + '_range']}" if key + "_range" in results else ""
        say(f"{key} = {results[key]}{spread_text} (target {results['targets'].get(key, 'none')}) at N={largest:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
