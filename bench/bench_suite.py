"""The benchmark suite: the pipeline against what a user would otherwise run, side by side in
one run, on a Kafka broker of its own (a free loopback port) and one local SparkSession.

    make bench                                   # N = 20, 100,000, 1,000,000; about 15 minutes
    python bench/bench_suite.py --sizes 20,2000 --latency-seconds 5 --out /tmp/b/results.json

For each N (records in --partitions partitions):

- producer throughput: the project's producer (``send_records``: acks=all, idempotent) against a
  kafka-python send loop with its default settings and confluent-kafka's producer with acks=all
  and idempotence; the project's topic then feeds every stream measurement of that N;
- stream throughput, from the query's start (first offset) to the last row committed, with the
  available-now trigger: the pipeline (``run_pipeline``, as jobs/stream.py runs it), the naive
  naive job (one query: from_json, value * 2, CSV file sink), Spark reading into the noop sink,
  and plain consumer loops (json.loads, csv.writer) on kafka-python and on confluent-kafka;
- peak RSS of the driver JVM and of the Python driver during each of them, and the files that the
  pipeline and the naive job write per 1,000,000 records.

Then once: end-to-end latency with ``processing-time=1s`` at a steady input (jobs/produce.py
--rate in a process of its own), and the wall time of ``make demo``'s steps. Writes
results.json, throughput.png and latency.png beside it (--out).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

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
    "producer_vs_naive_ratio": ("producer", "project", "naive_kafka_python", ">= 1"),
    "producer_vs_confluent_ratio": ("producer", "project", "confluent", None),
}
LATENCY_RATIO_KEY = "latency_p99_vs_trigger_ratio"
LATENCY_TARGET = "<= 2"

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


def producer_project(bootstrap: str, topic: str, count: int, partitions: int) -> int:
    from pipeline_lib.producer import load_producer_config, send_records

    config = load_producer_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "count": count,
            "partitions": partitions, "start_id": 1, "seed": 7, "timeout": 600,
        },
        environ={},
    )
    return send_records(config, emit=say)


def producer_naive(bootstrap: str, topic: str, count: int, partitions: int) -> int:
    from kafka import KafkaProducer

    from pipeline_lib.producer import generate_records

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for record in generate_records(count, 1, seed=7):
        producer.send(topic, json.dumps(record).encode("utf-8"))
    producer.flush()
    producer.close()
    return count


def producer_confluent(bootstrap: str, topic: str, count: int, partitions: int) -> int:
    from confluent_kafka import Producer

    from pipeline_lib.producer import generate_records

    delivered = [0]
    failed: List[str] = []

    def on_delivery(error, message) -> None:
        if error is None:
            delivered[0] += 1
        elif len(failed) < 3:
            failed.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for record in generate_records(count, 1, seed=7):
        payload = json.dumps(record).encode("utf-8")
        key = str(record["id"]).encode("utf-8")
        while True:
            try:
                producer.produce(topic, payload, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(600)
    if remaining or failed:
        raise RuntimeError(f"confluent producer: {remaining} not delivered, errors {failed}")
    return delivered[0]


PRODUCERS: Dict[str, Callable[[str, str, int, int], int]] = {
    "project": producer_project,
    "naive_kafka_python": producer_naive,
    "confluent": producer_confluent,
}


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


# ---------------------------------------------------------------- stream readers


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
    return {"rows": summary.written + summary.quarantined, "batches": summary.batches, "files": files, "batch_lines": lines[:20]}


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
    return {"rows": sum(int(p["numInputRows"]) for p in progress), "batches": sum(1 for p in progress if p["numInputRows"])}


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
    return _await_rows(query)


def stream_kafka_python(spark, bootstrap: str, topic: str, work: Path, timeout: float = 900) -> Dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    rows = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        work.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with open(work / "output.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500, max_records=10000).values():
                    for message in records:
                        record = json.loads(message.value)
                        writer.writerow((record["id"], record["value"], record["timestamp"], record["value"] * 2))
                        rows += 1
                remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()
    return {"rows": rows, "files": 1}


def stream_confluent(spark, bootstrap: str, topic: str, work: Path, timeout: float = 900) -> Dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        }
    )
    rows = 0
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        expected = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            expected += high - low
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        work.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with open(work / "output.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            while rows < expected and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=10000, timeout=0.5):
                    if message.error():
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise RuntimeError(str(message.error()))
                    record = json.loads(message.value())
                    writer.writerow((record["id"], record["value"], record["timestamp"], record["value"] * 2))
                    rows += 1
    finally:
        consumer.close()
    return {"rows": rows, "files": 1}


STREAMS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "spark_noop_read": stream_noop,
    "naive_job": stream_naive_job,
    "pipeline": stream_pipeline,
    "kafka_python_consumer": stream_kafka_python,
    "confluent_consumer": stream_confluent,
}


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
    lines: List[tuple] = []
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

    def first(pattern: str) -> Optional[tuple]:
        return next(((t, re.search(pattern, text)) for t, text in lines if re.search(pattern, text)), None)

    broker = first(r"^Kafka (started|already running)")
    produced = first(r"^sent \d+ records")
    batch_lines = [(t, re.search(r"^batch \d+: \d+ rows in ([0-9.]+)s", text)) for t, text in lines]
    batch_lines = [(t, m) for t, m in batch_lines if m]
    steps: Dict[str, Optional[float]] = {"broker": None, "produce": None, "spark_start": None, "batch": None, "finish": None}
    if broker and produced and batch_lines:
        batch_seconds = sum(float(m.group(1)) for _, m in batch_lines)
        first_batch_at, first_match = batch_lines[0]
        spark_start = first_batch_at - float(first_match.group(1)) - produced[0]
        steps = {
            "broker": round(broker[0], 2),
            "produce": round(produced[0] - broker[0], 2),
            "spark_start": round(spark_start, 2),
            "batch": round(batch_seconds, 2),
            "finish": round(total - batch_lines[-1][0], 2),
        }
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
            "venv": made.get("venv", {}).get("seconds"),
            "jars": made.get("jars", {}).get("seconds"),
            "dist": made.get("dist", {}).get("seconds"),
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


def ratios(results: Dict[str, Any], size: int) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for key, (section, ours, theirs, _) in RATIO_KEYS.items():
        figures = results[section].get(str(size), {})
        a = figures.get(ours, {}).get("records_per_s")
        b = figures.get(theirs, {}).get("records_per_s")
        out[key] = round(a / b, 3) if a and b else None
    p99 = results.get("latency", {}).get("p99_s")
    out[LATENCY_RATIO_KEY] = round(p99 / results["latency"]["trigger_seconds"], 3) if p99 else None
    return out


def charts(results: Dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["settings"]["sizes"]
    when = f"{results['machine']['cores']} cores, {results['machine']['memory_gib']:g} GiB, {results['date'][:10]}"
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    for axis, section, labels, title in (
        (left, "stream", STREAM_LABELS, "Stream: first offset to last row committed (available-now)"),
        (right, "producer", PRODUCER_LABELS, "Producer: first send to last acknowledgement"),
    ):
        for name, label in labels.items():
            points = [
                (size, results[section][str(size)][name]["records_per_s"])
                for size in sizes
                if results[section].get(str(size), {}).get(name, {}).get("records_per_s")
            ]
            if points:
                style = {"linewidth": 3, "color": "black"} if name in ("pipeline", "project") else {"linewidth": 1.5}
                axis.plot(*zip(*points), marker="o", label=label, **style)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(f"records (N, in {results['settings']['partitions']} partitions)")
        axis.set_ylabel("throughput (records/s)")
        axis.set_title(title, fontsize=11)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    figure.suptitle(f"Throughput against N, one run ({when})")
    figure.tight_layout()
    figure.savefig(folder / "throughput.png", dpi=110)
    plt.close(figure)

    latency = results.get("latency") or {}
    batches = latency.get("batches") or []
    figure, axis = plt.subplots(figsize=(13, 5.5))
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
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=110)
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,100000,1000000", help="comma-separated record counts (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="records/s of the latency phase's input")
    parser.add_argument("--trigger-seconds", type=float, default=1.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="results.json; the charts go beside it")
    parser.add_argument("--make-steps", help="JSON of bench/make_steps.py (venv and jars timings)")
    parser.add_argument("--skip-demo", action="store_true", help="leave make demo's timing out (its keys stay, null)")
    parser.add_argument("--work", help="scratch folder (default: a new temporary one, removed at the end)")
    args = parser.parse_args(argv)
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
        },
        "producer": {},
        "stream": {},
        "files_per_million_records": {"pipeline": {}, "naive_job": {}},
    }
    try:
        spark = get_spark("bench-suite", conf={"spark.ui.enabled": "false"})
        jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        peaks = Peaks(jvm_pid)
        results["versions"] = versions(spark)
        bootstrap = broker.bootstrap_servers

        # Warm-up: the connector's classes, the JIT and Python's imports, on a small topic.
        create_topic(bootstrap, "warm-up", args.partitions)
        producer_project(bootstrap, "warm-up", 1000, args.partitions)
        for name in ("spark_noop_read", "pipeline"):
            STREAMS[name](spark, bootstrap, "warm-up", work / "warm-up" / name)

        for size in sizes:
            produced: Dict[str, Any] = {}
            for name, produce in PRODUCERS.items():
                topic = f"n{size}-{name.replace('_', '-')}"
                create_topic(bootstrap, topic, args.partitions)
                say(f"N={size:,}: producer {name}")
                with peaks.measure() as window:
                    started = time.perf_counter()
                    produce(bootstrap, topic, size, args.partitions)
                    seconds = time.perf_counter() - started
                on_topic = topic_size(bootstrap, topic)
                if on_topic != size:
                    raise RuntimeError(f"{name} left {on_topic} records on {topic}, not {size}")
                produced[name] = {
                    "seconds": round(seconds, 3), "records_per_s": round(size / seconds, 1), "peak_rss_mb": window.result,
                }
                say(f"  {size / seconds:,.0f} records/s")
            results["producer"][str(size)] = produced

            topic = f"n{size}-project"
            streamed: Dict[str, Any] = {}
            for name, read in STREAMS.items():
                say(f"N={size:,}: stream {name}")
                with peaks.measure() as window:
                    started = time.perf_counter()
                    outcome = read(spark, bootstrap, topic, work / f"n{size}" / name)
                    seconds = time.perf_counter() - started
                if outcome["rows"] != size:
                    raise RuntimeError(f"{name} went through {outcome['rows']} rows of {topic}, not {size}")
                streamed[name] = {
                    "seconds": round(seconds, 3), "records_per_s": round(size / seconds, 1),
                    "peak_rss_mb": window.result, **outcome,
                }
                if name in results["files_per_million_records"]:
                    results["files_per_million_records"][name][str(size)] = round(outcome["files"] * 1_000_000 / size, 2)
                say(f"  {size / seconds:,.0f} records/s")
            results["stream"][str(size)] = streamed
            shutil.rmtree(work / f"n{size}", ignore_errors=True)

        say(f"latency: {args.latency_rate:g} records/s for {args.latency_seconds:g}s, trigger {args.trigger_seconds:g}s")
        results["latency"] = latency_phase(spark, bootstrap, work / "latency", args, peaks)
        say(f"  p50 {results['latency']['p50_s']}s, p95 {results['latency']['p95_s']}s, p99 {results['latency']['p99_s']}s")
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
        results["demo"] = {"skipped": True, "steps_s": dict.fromkeys(("venv", "jars", "dist", "broker", "produce", "spark_start", "batch", "finish"))}
    else:
        say("make demo's steps")
        results["demo"] = demo_phase(work / "demo", Path(args.make_steps) if args.make_steps else None)
        say(f"  {results['demo']['steps_s']}")

    largest = max(sizes)
    results["ratio_records"] = largest
    results.update(ratios(results, largest))
    results["targets"] = {key: target for key, (*_, target) in RATIO_KEYS.items() if target}
    results["targets"][LATENCY_RATIO_KEY] = LATENCY_TARGET
    results["bench_seconds"] = round(time.perf_counter() - bench_started, 1)
    out.write_text(json.dumps(results, indent=2) + "\n")
    charts(results, out.parent)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {out}, {out.parent / 'throughput.png'}, {out.parent / 'latency.png'}")
    for key in [*RATIO_KEYS, LATENCY_RATIO_KEY]:
        say(f"{key} = {results[key]} (target {results['targets'].get(key, 'none')}) at N={largest:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
