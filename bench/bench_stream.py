"""End-to-end throughput: Kafka -> parse_json -> add_processed_value -> CSV (+ quarantine),
against merely reading the same topic, both measured in one run on a broker of its own.

    make bench            # or: python bench/bench_stream.py --records 200000

Prints rows per second of each and the pipeline's share of the read-only rate. The machine is
small and noisy: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402
from pipeline_lib.config import load_pipeline_config, load_producer_config  # noqa: E402
from pipeline_lib.pipeline import run_pipeline  # noqa: E402
from pipeline_lib.producer import send_records  # noqa: E402
from pipeline_lib.session import get_spark  # noqa: E402
from pipeline_lib.sources import read_stream  # noqa: E402


def read_only_seconds(spark, config, checkpoint: Path) -> float:
    started = time.perf_counter()
    query = (
        read_stream(spark, config.source, config.kafka)
        .writeStream.format("noop")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    broker = LocalKafka(work / "kafka", port=free_port())
    broker.start()
    try:
        kafka = {"kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.topic": "bench"}
        started = time.perf_counter()
        send_records(load_producer_config(overrides={**kafka, "count": args.records, "partitions": 2}, environ={}))
        produce_rate = args.records / (time.perf_counter() - started)
        config = load_pipeline_config(
            overrides={
                **kafka,
                "output.path": str(work / "output"),
                "quarantine.path": str(work / "quarantine"),
                "checkpoint": str(work / "checkpoint"),
            },
            environ={},
        )
        spark = get_spark("bench-stream", conf={"spark.ui.enabled": "false"})
        read_only_seconds(spark, config, work / "warm-up")  # JIT and connector start-up
        read_rate = args.records / read_only_seconds(spark, config, work / "read-only")
        summary = run_pipeline(spark, config, emit=lambda line: None)
        pipeline_rate = args.records / summary.seconds
        assert summary.written == args.records, summary.line()
    finally:
        broker.stop()
    print(f"records: {args.records} in 2 partitions")
    print(f"producer (acks=all, idempotent):                 {produce_rate:12,.0f} records/s")
    print(f"Spark reading the topic only (noop sink):        {read_rate:12,.0f} rows/s")
    print(f"pipeline: parse, transform, CSV + quarantine:    {pipeline_rate:12,.0f} rows/s")
    print(f"pipeline / read only: {pipeline_rate / read_rate:.2f}")


if __name__ == "__main__":
    main()
