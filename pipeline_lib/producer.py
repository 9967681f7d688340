"""Generate records and send them to Kafka with kafka-python, counting only acknowledged sends."""

from __future__ import annotations

import json
import random
import time
from typing import Callable, Dict, Iterator, List, Optional

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import NonNegativeInt, PositiveFloat, conint

from pipeline_lib.config import Settings, parse, read_layers
from pipeline_lib.kafka_client import (
    KAFKA_ENVIRONMENT,
    KafkaSettings,
    KafkaUnavailableError,
    connection_error,
    describe,
    ensure_topic,
)


class ProducerConfig(Settings):
    """Everything ``jobs/produce.py`` needs."""

    kafka: KafkaSettings = KafkaSettings()
    count: NonNegativeInt = 20
    rate: Optional[PositiveFloat] = None  # records per second; None sends as fast as acknowledged
    seed: Optional[int] = None
    start_id: Optional[NonNegativeInt] = None  # None: one past the highest id on the topic
    partitions: conint(ge=1, le=10000) = 1  # type: ignore[valid-type]
    timeout: PositiveFloat = 30.0  # seconds to reach the broker and to have every record acknowledged


def load_producer_config(
    path: Optional[str] = None,
    overrides: Optional[Dict[str, object]] = None,
    environ: Optional[Dict[str, str]] = None,
) -> ProducerConfig:
    """Read, merge and validate the producer's configuration (see ``pipeline_lib.config``).

    >>> load_producer_config(overrides={"count": 5}).count
    5
    """
    return parse(ProducerConfig, read_layers(path, overrides, environ, KAFKA_ENVIRONMENT))


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
        created = ensure_topic(kafka, config.partitions, config.timeout)
        start_id = config.start_id if config.start_id is not None else (1 if created else next_id(kafka, config.timeout))
        producer = KafkaProducer(
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
        raise ProduceError(str(connection_error(kafka, config.timeout, error)), 0, config.count) from None
    futures: List = []
    interval = 1.0 / config.rate if config.rate else 0.0
    next_send = time.monotonic()
    try:
        for record in generate_records(config.count, start_id, config.seed):
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



def next_id(kafka: KafkaSettings, timeout: float, tail: int = 100) -> int:
    """One past the highest record id among the last ``tail`` records of each partition of
    ``kafka.topic`` (1 for an empty topic), so that runs one after another never reuse an id.
    Only committed records count: those of an aborted transaction are not on the topic for
    readers. Payloads without an integer ``id`` are passed over.
    """
    consumer = KafkaConsumer(
        isolation_level="read_committed",
        enable_auto_commit=False,
        request_timeout_ms=max(int(timeout * 1000), 31000),
        bootstrap_timeout_ms=int(timeout * 1000),
        client_id="pipeline-next-id",
        **kafka.client_options(),
    )
    try:
        partitions = [TopicPartition(kafka.topic, p) for p in consumer.partitions_for_topic(kafka.topic) or ()]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in remaining:
            consumer.seek(tp, max(starts[tp], ends[tp] - tail))
        highest = 0
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                highest = max([highest, *(_record_id(record.value) for record in records)])
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        return highest + 1
    finally:
        consumer.close()


def _record_id(payload: Optional[bytes]) -> int:
    try:
        record_id = json.loads(payload) if payload else None
        record_id = record_id.get("id") if isinstance(record_id, dict) else None
    except ValueError:
        return 0
    return record_id if isinstance(record_id, int) and not isinstance(record_id, bool) else 0
