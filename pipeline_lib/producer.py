"""Generate records and send them to Kafka with kafka-python, counting only acknowledged sends."""

from __future__ import annotations

import json
import random
import time
from typing import Callable, Dict, Iterator, List, Optional

from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline_lib.config import ProducerConfig
from pipeline_lib.kafka_client import KafkaUnavailableError, describe, ensure_topic, unreachable


class ProduceError(RuntimeError):
    """Records could not all be sent; ``acknowledged`` of ``requested`` were."""

    def __init__(self, message: str, acknowledged: int = 0, requested: int = 0):
        super().__init__(message)
        self.acknowledged = acknowledged
        self.requested = requested


def generate_records(
    count: int,
    start_id: int = 1,
    seed: Optional[int] = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[Dict[str, object]]:
    """Records ``{"id", "value", "timestamp"}``: ids consecutive from ``start_id``, value a
    random integer 0..100, timestamp the moment of generation in epoch seconds (ms precision).

    >>> next(generate_records(1, seed=7, clock=lambda: 1715181600.1234))
    {'id': 1, 'value': 41, 'timestamp': 1715181600.123}
    """
    rng = random.Random(seed)
    for record_id in range(start_id, start_id + count):
        yield {"id": record_id, "value": rng.randint(0, 100), "timestamp": round(clock(), 3)}


def encode(record: Dict[str, object]) -> bytes:
    """The wire form: compact JSON as in ``{"id": 1, "value": 75, "timestamp": 1715181600.123}``."""
    return json.dumps(record).encode("utf-8")


def send_records(config: ProducerConfig, emit: Callable[[str], None] = print) -> int:
    """Send ``config.count`` generated records; return how many the broker acknowledged.

    Raises :class:`ProduceError` when the broker cannot be reached within ``config.timeout`` or
    any record is not acknowledged, saying how many were.
    """
    kafka = config.kafka
    try:
        ensure_topic(kafka, config.partitions, config.timeout)
        producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            retries=2**31 - 1,
            # Retries go on until delivery_timeout_ms; a record still unacknowledged then fails.
            delivery_timeout_ms=int(config.timeout * 1000),
            request_timeout_ms=min(int(config.timeout * 1000), 30000),
            max_block_ms=int(config.timeout * 1000),
            bootstrap_timeout_ms=int(config.timeout * 1000),
            client_id="pipeline-producer",
            **kafka.client_options(),
        )
    except KafkaUnavailableError as error:
        raise ProduceError(str(error), 0, config.count) from None
    except KafkaError as error:
        raise ProduceError(str(unreachable(kafka, config.timeout, error)), 0, config.count) from None
    futures: List = []
    interval = 1.0 / config.rate if config.rate else 0.0
    next_send = time.monotonic()
    try:
        for record in generate_records(config.count, config.start_id, config.seed):
            if interval:
                next_send += interval
                time.sleep(max(0.0, next_send - time.monotonic()))
            futures.append(producer.send(kafka.topic, key=str(record["id"]).encode("utf-8"), value=encode(record)))
        producer.flush(timeout=config.timeout)
    except KafkaError as error:
        emit(f"send interrupted: {describe(error)}")
    finally:
        producer.close(timeout=5)
    acknowledged = sum(1 for future in futures if future.succeeded())
    if acknowledged < config.count:
        failures = [future.exception for future in futures if future.failed()]
        cause = describe(failures[0]) if failures else "not acknowledged in time"
        raise ProduceError(
            f"{config.count - acknowledged} of {config.count} records were not acknowledged "
            f"by {kafka.topic} ({cause}); {acknowledged} were",
            acknowledged,
            config.count,
        )
    return acknowledged

