"""End-to-end latency of real-time mode: from a record's send to its arrival on the output topic.

    python bench/latency_realtime.py                        # 4,000 records at 500/s, real-time=5m
    python bench/latency_realtime.py --rate 1000 --count 10000 --interval 30s --warm-up 2000

A broker of its own (a free loopback port), one local SparkSession and, per variant, fresh
topics (--partitions for the input). The query starts and a first record goes through (so the
figures leave out Spark's start, not the query's warm-up); then a kafka-python producer
(``linger_ms=0``) sends --count records at --rate from a thread, each with its send time as its
``timestamp``, while a kafka-python consumer (``fetch_max_wait_ms=10``, so that its own wait
does not count) reads the output topic. A record's latency is the moment it is consumed minus
its ``timestamp``, which the pipeline carries through; a record sent twice (at-least-once)
counts at its first arrival. Percentiles are given over all records and over those after the
first --warm-up (the query's warm-up: JIT, the clients' first batches, as measured apart).

Variants: ``pipeline`` runs the plan as ``jobs/stream.py`` does (``run``, the clients'
defaults); ``tuned`` runs the same records (``realtime.records``) with the source's
``kafka.fetch.max.wait.ms=10`` and the sink's ``kafka.linger.ms=0``; ``micro-batch`` runs the
plan as ``pipeline`` does with ``--trigger processing-time=0s`` instead (the shortest trigger:
the next batch starts as the last ends). They run --repeats times,
interleaved, in one session: the session's first run pays the JVM's own warm-up. The figures go
to --out (JSON) and the console. `make bench` runs `measure` for its Kafka-to-Kafka latency phase.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402

VARIANTS = ("pipeline", "tuned", "micro-batch")
# A record this late (ms) is part of a stall; records sent less than STALL_GAP_S apart are one.
STALL_MS = 50.0
STALL_GAP_S = 0.5


def percentiles(values: List[float]) -> Dict[str, float]:
    """p50, p95, p99 and max of ``values`` (seconds), in milliseconds.

    >>> percentiles([0.001 * n for n in range(1, 101)])
    {'count': 100, 'p50_ms': 50.5, 'p95_ms': 95.1, 'p99_ms': 99.0, 'max_ms': 100.0}
    """
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "count": len(values),
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p95_ms": round(1000 * cuts[94], 1),
        "p99_ms": round(1000 * cuts[98], 1),
        "max_ms": round(1000 * max(values), 1),
    }


def garbage_collectors(spark) -> List[Any]:
    """The driver JVM's garbage collectors (in local mode the executors' too)."""
    return list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans())


def collected_ms(collectors: List[Any]) -> int:
    """Milliseconds ``collectors`` have spent collecting since the JVM started."""
    return sum(collector.getCollectionTime() for collector in collectors)


class Pauses:
    """The garbage collections of the driver JVM (Spark's, in local mode the executors' too)
    and of this Python process (the producer's and the measuring consumer's) while it is
    entered: when each ended and how long it took. The JVM's are sampled every 0.1 s (its
    collection time grew by so much in that interval); Python's are timed by ``gc.callbacks``."""

    def __init__(self, spark):
        self._collectors = garbage_collectors(spark)
        self.jvm: List[Tuple[float, float]] = []
        self.python: List[Tuple[float, float]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="gc-sampler", daemon=True)
        self._started = 0.0

    def _sample(self) -> None:
        last = collected_ms(self._collectors)
        while not self._stop.wait(0.1):
            now = collected_ms(self._collectors)
            if now > last:
                self.jvm.append((time.time(), float(now - last)))
            last = now

    def _python(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.python.append((time.time(), 1000 * (time.perf_counter() - self._started)))

    def __enter__(self) -> "Pauses":
        gc.callbacks.append(self._python)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._sampler.join()
        gc.callbacks.remove(self._python)

    def summary(self) -> Dict[str, Any]:
        return {
            "jvm_gc_ms": sum(ms for _, ms in self.jvm),
            "python_gc_ms": round(sum(ms for _, ms in self.python), 1),
            "python_gc_longest_ms": round(max((ms for _, ms in self.python), default=0.0), 1),
        }

    def within(self, start: float, end: float) -> Dict[str, float]:
        """Collection milliseconds that ended between ``start`` and ``end`` (epoch seconds)."""
        return {
            "jvm_gc_ms": sum(ms for moment, ms in self.jvm if start <= moment <= end),
            "python_gc_ms": round(sum(ms for moment, ms in self.python if start <= moment <= end), 1),
        }


def stalls(
    sent: Dict[int, float],
    appended: Dict[int, float],
    written: Dict[int, float],
    latencies: Dict[int, float],
    pauses: Pauses,
    begin: float,
) -> List[Dict[str, Any]]:
    """The runs of records later than :data:`STALL_MS`, by send time (``begin`` the first
    send), each with the garbage collections that ended while its records waited, and where
    its worst record waited: from its send until the broker appended it to the input topic
    (``appended``: its LogAppendTime), until Spark wrote it to the output topic (``written``:
    its timestamp there), and from then until the measuring consumer read it.

    A single pause of the query or of the measuring process makes every record sent during it
    late: in 6,000 records, one pause of 180 ms puts the p99 near 130 ms.
    """
    late = sorted(
        (sent[record_id], latency, record_id) for record_id, latency in latencies.items() if 1000 * latency > STALL_MS
    )
    found: List[Dict[str, Any]] = []
    group: List[Tuple[float, float, int]] = []
    for record in late + [(float("inf"), 0.0, 0)]:
        if group and record[0] - group[-1][0] > STALL_GAP_S:
            first, last = group[0][0], max(moment + latency for moment, latency, _ in group)
            worst_moment, worst, worst_id = max(group, key=lambda late_record: late_record[1])
            found.append(
                {
                    "sent_after_s": round(first - begin, 2),
                    "records": len(group),
                    "worst_ms": round(1000 * worst, 1),
                    "worst_until_appended_ms": (
                        round(1000 * (appended[worst_id] - worst_moment), 1) if worst_id in appended else None
                    ),
                    "worst_until_written_ms": round(1000 * (written[worst_id] - worst_moment), 1),
                    **pauses.within(first - 0.1, last),
                }
            )
            group = []
        group.append(record)
    return found


def append_times(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> Dict[int, float]:
    """When the broker appended each of the records 1 to ``count`` of ``topic`` (its
    LogAppendTime), read back from the topic once the run is over."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000)
    appended: Dict[int, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(appended) < count and time.monotonic() < deadline:
            for message in consumer:
                record_id = json.loads(message.value)["id"]
                if record_id > 0:
                    appended.setdefault(record_id, message.timestamp / 1000)
    finally:
        consumer.close()
    return appended


def measure(spark, bootstrap: str, work: Path, variant: str, args: argparse.Namespace) -> Dict[str, Any]:
    """One run of ``variant`` on topics of its own: when the first record came through, and the
    latency percentiles of the records after it."""
    from kafka import KafkaConsumer, KafkaProducer

    from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
    from pipeline_lib.pipeline import load_pipeline_config
    from pipeline_lib.plan import make_plan
    from pipeline_lib.realtime import kafka_writer, records
    from pipeline_lib.run import run
    from pipeline_lib.sources.kafka import KafkaSource

    topic = f"latency-{variant}-{time.time_ns()}"
    output = f"{topic}-out"
    # The input topic stamps each record with the moment the broker appended it.
    stamped = {"message.timestamp.type": "LogAppendTime"}
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), args.partitions, 30, replication_factor=1, configs=stamped)
    for name in (output, f"{topic}-quarantine"):
        ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=name), 1, 30)
    config = load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap,
            "kafka.topic": topic,
            # The same pipeline as micro-batches: the shortest trigger, a batch as soon as one ends.
            "trigger": "processing-time=0s" if variant == "micro-batch" else f"real-time={args.interval}",
            "output.format": "kafka",
            "output.topic": output,
            "quarantine.format": "kafka",
            "quarantine.topic": f"{topic}-quarantine",
            "checkpoint": str(work / topic / "checkpoint"),
        },
        environ={},
    )
    plan = make_plan(config, spark)
    stop = threading.Event()
    if variant in ("pipeline", "micro-batch"):
        runner = threading.Thread(target=run, args=(plan, spark), kwargs={"stop_event": stop})
        runner.start()
        query = None
    else:

        class TunedKafkaSource(KafkaSource):
            def _configure(self, reader):
                return super()._configure(reader).option("kafka.fetch.max.wait.ms", "10")

        source = TunedKafkaSource(plan.config.source.options, plan.config.kafka)  # type: ignore[arg-type]
        routed = records(replace(plan.config, source=source), plan.schema, plan.parse, plan.steps, source.read_stream(spark))
        query = (
            kafka_writer(plan.config, routed.writeStream)
            .option("kafka.linger.ms", "0")
            .trigger(**plan.trigger)
            .option("checkpointLocation", plan.queries[0].checkpoint)
            .start()
        )
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    consumer = KafkaConsumer(
        output, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10, consumer_timeout_ms=200
    )

    sent: Dict[int, float] = {}

    def send(record_id: int) -> None:
        sent[record_id] = time.time()
        producer.send(topic, json.dumps({"id": record_id, "value": record_id, "timestamp": sent[record_id]}).encode())

    arrived: Dict[int, float] = {}
    try:
        started = time.monotonic()
        while 0 not in arrived:  # the query runs and a record went through
            if time.monotonic() - started > args.timeout:
                raise TimeoutError(f"{variant}: no record through the query in {args.timeout}s")
            send(0)
            producer.flush()
            for message in consumer:
                arrived.setdefault(json.loads(message.value)["id"], time.time())
        ready_seconds = time.monotonic() - started

        def sending() -> None:
            begin = time.monotonic()
            for record_id in range(1, args.count + 1):
                pause = begin + record_id / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                send(record_id)
            producer.flush()

        sender = threading.Thread(target=sending)
        latencies: Dict[int, float] = {}
        written: Dict[int, float] = {}
        deadline = time.monotonic() + args.count / args.rate + args.timeout
        with Pauses(spark) as pauses:
            begin = time.time()
            sender.start()
            while len(latencies) < args.count and time.monotonic() < deadline:
                for message in consumer:
                    now = time.time()
                    record = json.loads(message.value)
                    if record["id"] > 0 and record["id"] not in latencies:
                        latencies[record["id"]] = now - record["timestamp"]
                        written[record["id"]] = message.timestamp / 1000  # when Spark's producer sent it
            sender.join()
    finally:
        stop.set()
        if query is not None:
            query.stop()
        else:
            runner.join(120)
        producer.close()
        consumer.close()
    appended = append_times(bootstrap, topic, args.count)
    ordered = [latencies[record_id] for record_id in sorted(latencies)]
    after_warm_up = {record_id: latency for record_id, latency in latencies.items() if record_id > args.warm_up}
    return {
        "variant": variant,
        "ready_seconds": round(ready_seconds, 1),
        "received": len(latencies),
        "all": percentiles(ordered),
        "after_warm_up": percentiles(ordered[args.warm_up :]) if len(ordered) > args.warm_up + 1 else None,
        **pauses.summary(),
        "stalls_after_warm_up": stalls(sent, appended, written, after_warm_up, pauses, begin),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000, help="records per variant (default 4000)")
    parser.add_argument("--rate", type=float, default=500.0, help="records per second (default 500)")
    parser.add_argument("--partitions", type=int, default=2, help="of the input topic (default 2)")
    parser.add_argument("--interval", default="5m", help="the real-time trigger's checkpoint interval (default 5m)")
    parser.add_argument("--warm-up", type=int, default=1000, help="first records left out of the steady figures")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)} (default all)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each variant, interleaved: the first pays the JVM's warm-up"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the query, for the records")
    parser.add_argument("--out", default=str(ROOT / "build" / "latency_realtime.json"), help="the figures, JSON")
    args = parser.parse_args()
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    from pipeline_lib.session import get_spark

    work = Path(tempfile.mkdtemp(prefix="latency-realtime-"))
    broker = LocalKafka(work / "kafka", port=free_port(), heap="1g")
    broker.start()
    try:
        spark = get_spark(
            "bench-latency-realtime", master=f"local[{max(2, args.partitions)}]", conf={"spark.ui.enabled": "false"}
        )
        results = [
            {"round": round_number, **measure(spark, broker.bootstrap_servers, work, variant, args)}
            for round_number in range(1, args.repeats + 1)
            for variant in variants
        ]
        spark.stop()
    finally:
        broker.stop()
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "settings": {key: value for key, value in vars(args).items() if key != "out"},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        figures = {
            part: "/".join(str((result[part] or {}).get(key)) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            for part in ("all", "after_warm_up")
        }
        print(
            f"round {result['round']}, {result['variant']}: {result['received']} of {args.count} records; "
            f"p50/p95/p99/max ms: all {figures['all']}, after warm-up {figures['after_warm_up']}"
        )
    print(f"load average {os.getloadavg()}; figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
