"""Profile the project's producer (``send_records``) and try KafkaProducer settings against it,
on a broker of its own: what the tuning of ``pipeline_lib/producer.py`` rests on.

    python bench/profile_producer.py --records 50000            # rates of each variant, then a profile
    python bench/profile_producer.py --variant linger_ms=20,batch_size=262144 --profile
    python bench/profile_producer.py --bootstrap-servers 127.0.0.1:9092 --records 200000 --rounds 5 \
        --variant "" --variant linger_ms=default,batch_size=default    # alternating, median and range

Every variant keeps acks=all and idempotence (they are fixed in send_records); a variant only
overrides the KafkaProducer arguments it names, and ``name=default`` leaves that argument to
kafka-python's own default. Rates are records/s, first send to last ack.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
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
    "linger_ms=default,batch_size=default",
    "linger_ms=5",
    "linger_ms=20,batch_size=262144",
    "linger_ms=20,batch_size=262144,compression_type=gzip",
    "linger_ms=50,batch_size=1048576",
]


# An override's value that removes the argument, so kafka-python's default applies.
DEFAULT = object()


def parse_variant(text: str) -> Dict[str, Any]:
    settings: Dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        settings[name] = DEFAULT if value == "default" else int(value) if value.isdigit() else value
    return settings


def run(bootstrap: str, topic: str, records: int, overrides: Dict[str, Any], profile: bool) -> float:
    real = producer_module.KafkaProducer

    def with_overrides(**kwargs: Any):
        merged = {**kwargs, **overrides}
        return real(**{name: value for name, value in merged.items() if value is not DEFAULT})

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
    parser.add_argument("--rounds", type=int, default=1, help="run the variants in turn this many times")
    parser.add_argument("--bootstrap-servers", help="a running broker to use instead of one of its own")
    args = parser.parse_args(argv)
    broker = None
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="profile-producer-")) / "kafka", port=free_port())
        broker.start()
        bootstrap = broker.bootstrap_servers
    variants = args.variant or VARIANTS
    rates: Dict[str, List[float]] = {variant: [] for variant in variants}
    # Each topic is new: a run never appends to the log of another.
    prefix = f"profile-{os.getpid()}-{time.time_ns()}"
    try:
        run(bootstrap, f"{prefix}-warm-up", 1000, {}, False)
        for round_number in range(args.rounds):
            # Variants alternate within a round, so a slower moment of a shared machine hits each alike.
            for index, variant in enumerate(variants):
                topic = f"{prefix}-{round_number}-{index}"
                rate = run(bootstrap, topic, args.records, parse_variant(variant), args.profile)
                rates[variant].append(rate)
                print(f"{variant or 'as in producer.py':55s} {rate:10,.0f} records/s", flush=True)
        if args.rounds > 1:
            for variant, figures in rates.items():
                print(
                    f"{variant or 'as in producer.py':55s} median {statistics.median(figures):10,.0f} records/s "
                    f"(range {min(figures):,.0f}-{max(figures):,.0f}, {len(figures)} runs)"
                )
        if not args.variant and not args.profile:
            run(bootstrap, f"{prefix}-profile", args.records, {}, True)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
