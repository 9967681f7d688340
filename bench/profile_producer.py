"""Profile the project's producer (``send_records``) and try KafkaProducer settings against it,
on a broker of its own: what the tuning of ``pipeline_lib/producer.py`` rests on.

    python bench/profile_producer.py --records 50000            # rates of each variant, then a profile
    python bench/profile_producer.py --variant linger_ms=20,batch_size=262144 --profile

Every variant keeps acks=all and idempotence (they are fixed in send_records); a variant only
overrides the KafkaProducer arguments it names. Rates are records/s, first send to last ack.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402
from pipeline_lib import producer as producer_module  # noqa: E402
from pipeline_lib.producer import load_producer_config, send_records  # noqa: E402

VARIANTS = [
    "",
    "linger_ms=5",
    "linger_ms=20,batch_size=262144",
    "linger_ms=20,batch_size=262144,compression_type=gzip",
    "linger_ms=50,batch_size=1048576",
]


def parse_variant(text: str) -> Dict[str, Any]:
    settings: Dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        settings[name] = int(value) if value.isdigit() else value
    return settings


def run(bootstrap: str, topic: str, records: int, overrides: Dict[str, Any], profile: bool) -> float:
    real = producer_module.KafkaProducer

    def with_overrides(**kwargs: Any):
        return real(**{**kwargs, **overrides})

    producer_module.KafkaProducer = with_overrides
    config = load_producer_config(
        overrides={"kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "count": records, "partitions": 2, "start_id": 1, "timeout": 120},
        environ={},
    )
    profiler = cProfile.Profile() if profile else None
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        send_records(config, emit=lambda line: None)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    finally:
        producer_module.KafkaProducer = real
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
        print(text.getvalue())
    return records / seconds


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--variant", action="append", help="name=value,... of KafkaProducer arguments (repeatable)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of each variant")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profile-producer-"))
    broker = LocalKafka(work / "kafka", port=free_port())
    broker.start()
    try:
        run(broker.bootstrap_servers, "warm-up", 1000, {}, False)
        for index, variant in enumerate(args.variant or VARIANTS):
            rate = run(broker.bootstrap_servers, f"variant-{index}", args.records, parse_variant(variant), args.profile)
            print(f"{variant or 'as in producer.py':55s} {rate:10,.0f} records/s", flush=True)
        if not args.variant and not args.profile:
            run(broker.bootstrap_servers, "profile", args.records, {}, True)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
