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
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402

VARIANTS = ("pipeline", "tuned", "micro-batch")


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
    for name, partitions in ((topic, args.partitions), (output, 1), (f"{topic}-quarantine", 1)):
        ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=name), partitions, 30)
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
        routed = records(replace(plan.config, source=source), plan.schema, plan.steps, source.read_stream(spark))
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

    def send(record_id: int) -> None:
        producer.send(topic, json.dumps({"id": record_id, "value": record_id, "timestamp": time.time()}).encode())

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
        sender.start()
        latencies: Dict[int, float] = {}
        deadline = time.monotonic() + args.count / args.rate + args.timeout
        while len(latencies) < args.count and time.monotonic() < deadline:
            for message in consumer:
                now = time.time()
                record = json.loads(message.value)
                if record["id"] > 0:
                    latencies.setdefault(record["id"], now - record["timestamp"])
        sender.join()
    finally:
        stop.set()
        if query is not None:
            query.stop()
        else:
            runner.join(120)
        producer.close()
        consumer.close()
    ordered = [latencies[record_id] for record_id in sorted(latencies)]
    return {
        "variant": variant,
        "ready_seconds": round(ready_seconds, 1),
        "received": len(latencies),
        "all": percentiles(ordered),
        "after_warm_up": percentiles(ordered[args.warm_up :]) if len(ordered) > args.warm_up + 1 else None,
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
