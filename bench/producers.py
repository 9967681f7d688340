"""One producer of the benchmark, in a process of its own, sending ``--count`` records to a
topic that exists; prints one JSON line: the call's seconds, the process's CPU seconds and peak RSS.

    python bench/producers.py project --bootstrap-servers 127.0.0.1:9092 --topic t --count 1000

Every side sends the same records, keys included: ``generate_records(count, 1, seed=7)``, the
payload ``encode(record)`` and the key the record's id, as the project's producer does.

- ``project``: jobs/produce.py's own code path, ``produce_main`` with its flags (acks=all,
  idempotent, every record's acknowledgement counted);
- ``naive_kafka_python``: a kafka-python send loop with the client's default settings (acks=1,
  not idempotent, nothing checked), then ``flush``;
- ``confluent``: confluent-kafka's producer with acks=all and idempotence, delivery reports
  counted.

The call's timer runs from the call (the project: flags, configuration and the topic check
included; the loops: the client's construction) to the last acknowledgement and the client's
close. The parent times the whole process as well (interpreter start and imports included).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported by every side alike, before any timer starts: each process has the same modules loaded.
from pipeline_lib.cli import produce_main  # noqa: E402
from pipeline_lib.producer import encode, generate_records  # noqa: E402

SEED = 7


def project(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    argv = [
        "--bootstrap-servers", bootstrap, "--topic", topic, "--count", str(count), "--partitions", str(partitions),
        "--start-id", "1", "--seed", str(SEED), "--timeout", "600",
    ]
    if produce_main(argv) != 0:
        raise SystemExit("the project's producer failed")


def naive_kafka_python(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for record in generate_records(count, 1, seed=SEED):
        producer.send(topic, key=str(record["id"]).encode("utf-8"), value=encode(record))
    producer.flush()
    producer.close()


def confluent(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    from confluent_kafka import Producer

    delivered = [0]
    failed: List[str] = []

    def on_delivery(error, message) -> None:
        if error is None:
            delivered[0] += 1
        elif len(failed) < 3:
            failed.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for record in generate_records(count, 1, seed=SEED):
        payload = encode(record)
        key = str(record["id"]).encode("utf-8")
        while True:
            try:
                producer.produce(topic, payload, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(600)
    if remaining or failed or delivered[0] != count:
        raise SystemExit(f"confluent producer: {remaining} not delivered, errors {failed}")


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): ru_maxrss would count the parent's, which
    the child of a fork inherits until it execs."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


SIDES: Dict[str, Callable[[str, str, int, int], None]] = {
    "project": project,
    "naive_kafka_python": naive_kafka_python,
    "confluent": confluent,
}


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=sorted(SIDES))
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    SIDES[args.side](args.bootstrap_servers, args.topic, args.count, args.partitions)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "side": args.side, "seconds": round(seconds, 4), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
