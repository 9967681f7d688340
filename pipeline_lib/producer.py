"""Generate records and send them to Kafka with kafka-python, counting only acknowledged sends."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from pydantic import NonNegativeInt, PositiveFloat, conint, field_validator, model_validator

from pipeline_lib.config import Settings, parse, read_layers
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import (
    KAFKA_ENVIRONMENT,
    KafkaSettings,
    KafkaUnavailableError,
    connection_error,
    describe,
    ensure_topic,
)

# A transaction must end within the broker's transaction.max.timeout.ms (15 minutes by default).
MAX_TRANSACTION_MS = 900_000
MAX_RUN_SECONDS = 780
RUN_HEADER = "pipeline-run-id"
RUN_TAIL = 1000  # records per partition scanned for a run already committed
# Records sent whose outcome is not counted yet, at most: memory stays the same for a thousand
# records or ten million (a future kept per record to the end cost about half a kilobyte a
# record), and the window is wider than what a healthy broker leaves unacknowledged at full speed.
ACK_WINDOW = 20_000


class ProducerConfig(Settings):
    """Everything ``jobs/produce.py`` needs."""

    kafka: KafkaSettings = KafkaSettings()
    count: NonNegativeInt = 20
    rate: Optional[PositiveFloat] = None  # records per second; None sends as fast as acknowledged
    seed: Optional[int] = None
    start_id: Optional[NonNegativeInt] = None  # None: one past the highest id on the topic
    partitions: conint(ge=1, le=10000) = 1  # type: ignore[valid-type]
    # If the topic is created; None: 3 on a cluster of three brokers or more, else 1.
    replication_factor: Optional[conint(ge=1, le=32767)] = None  # type: ignore[valid-type]
    timeout: PositiveFloat = 30.0  # seconds to reach the broker and to have every record acknowledged
    # A run (a Kestra execution): its records are one Kafka transaction, their values seeded by
    # the run id and their timestamps counted from run_start, so a retry sends the same records.
    run_id: Optional[str] = None
    run_start: Optional[datetime] = None

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and re.fullmatch(r"[A-Za-z0-9._:@+=/-]{1,200}", value) is None:
            raise ValueError(f"{value!r} is not a run id (1-200 letters, digits or . _ : @ + = / -)")
        return value

    @model_validator(mode="after")
    def _one_transaction(self) -> "ProducerConfig":
        if self.run_start is not None and self.run_id is None:
            raise ValueError("run_start: needs run_id (a run's records are reproduced from both)")
        if self.run_id is not None and self.rate and self.count / self.rate > MAX_RUN_SECONDS:
            raise ValueError(
                f"rate: a run is one Kafka transaction, at most {MAX_RUN_SECONDS}s here; "
                f"{self.count} records at {self.rate:g}/s take {self.count / self.rate:.0f}s"
            )
        return self


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


class ProduceError(PipelineError):
    """Records could not all be sent; ``acknowledged`` of ``requested`` were."""

    def __init__(self, message: str, acknowledged: int = 0, requested: int = 0):
        super().__init__(message)
        self.acknowledged = acknowledged
        self.requested = requested


def generate_records(
    count: int,
    start_id: int = 1,
    seed: Optional[Union[int, str]] = None,
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


def run_records(
    count: int,
    start_id: int,
    run_id: str,
    seed: Optional[int] = None,
    run_start: Optional[datetime] = None,
    rate: Optional[float] = None,
) -> Iterator[Dict[str, object]]:
    """The records of a run: the same for every attempt of the run. Values come from a generator
    seeded by ``run_id`` (and ``seed``); record k's timestamp is ``run_start`` plus k intervals
    of the rate (1 ms without one). Without ``run_start`` timestamps are the moment of generation.

    >>> first = list(run_records(3, 1, "exec-1", run_start=datetime(2024, 5, 8, 15, 20, tzinfo=timezone.utc), rate=10))
    >>> first == list(run_records(3, 1, "exec-1", run_start=datetime(2024, 5, 8, 15, 20, tzinfo=timezone.utc), rate=10))
    True
    >>> [record["timestamp"] for record in first]
    [1715181600.0, 1715181600.1, 1715181600.2]
    """
    clock: Callable[[], float] = time.time
    if run_start is not None:
        start = (run_start if run_start.tzinfo else run_start.replace(tzinfo=timezone.utc)).timestamp()
        step = 1.0 / rate if rate else 0.001
        ticks = itertools.count()
        clock = lambda: start + next(ticks) * step  # noqa: E731
    return generate_records(count, start_id, f"{run_id}:{seed}" if seed is not None else run_id, clock)


def encode(record: Dict[str, object]) -> bytes:
    """The wire form: compact JSON as in ``{"id": 1, "value": 75, "timestamp": 1715181600.123}``."""
    return json.dumps(record).encode("utf-8")


def _close(producer: KafkaProducer, config: ProducerConfig) -> None:
    """Close once every record sent has its outcome, so the count of those not acknowledged is final.

    A record the broker never answered fails at the delivery timeout (``config.timeout``) after it
    was sent, so waiting a little longer than that settles them all. Should one still be open,
    kafka-python's ``close`` raises from its flush before stopping the sender thread, and raises
    again when the object is collected at exit; stopping that thread here ends both.
    """
    try:
        producer.close(timeout=config.timeout + 5)
    except KafkaTimeoutError:
        producer._sender.force_close()
        producer._closed = True


def send_records(config: ProducerConfig, emit: Callable[[str], None] = print) -> int:
    """Send ``config.count`` generated records; return how many the broker acknowledged.

    With ``config.run_id`` the records are one Kafka transaction (transactional id from the run
    id): a new attempt of the run fences the previous one and aborts what it left open, sends the
    same records (see :func:`run_records`) from the same first id, and a run already committed is
    not sent again. Raises :class:`ProduceError` when the broker cannot be reached within
    ``config.timeout`` or any record is not acknowledged, saying how many were.
    """
    kafka = config.kafka
    transactional = config.run_id is not None
    try:
        created = ensure_topic(kafka, config.partitions, config.timeout, config.replication_factor)
        if created:
            plural = "" if config.partitions == 1 else "s"
            emit(f"created topic {kafka.topic}: {config.partitions} partition{plural}, replication factor {created}")
        extra: Dict[str, object] = {}
        if transactional and config.run_id:
            extra = dict(
                transactional_id=transactional_id(kafka.topic, config.run_id),
                transaction_timeout_ms=_transaction_ms(config),
            )
        producer = KafkaProducer(
            acks="all",
            enable_idempotence=True,
            retries=2**31 - 1,
            # Retries go on until delivery_timeout_ms; a record still unacknowledged then fails.
            delivery_timeout_ms=int(config.timeout * 1000),
            request_timeout_ms=min(int(config.timeout * 1000) - 20, 30000),  # + linger_ms <= delivery
            max_block_ms=int(config.timeout * 1000),
            bootstrap_timeout_ms=int(config.timeout * 1000),
            # Fewer, larger requests, where kafka-python's per-record send() dominates: against
            # kafka-python's defaults, a median +11% records/s in bench/profile_producer.py (5
            # alternating pairs of 200,000; pair by pair -23% to +11% on a busy machine).
            # lz4: kafka-python sums every byte of a batch (CRC-32C) in pure Python, and lz4
            # leaves it a quarter of them: 12% less CPU a record over 100,000 records. Every
            # reader of the topic decodes it (Spark's connector, kafka-python with the lz4
            # package this project installs, librdkafka).
            linger_ms=20,
            batch_size=256 * 1024,
            compression_type="lz4",
            client_id="pipeline-producer",
            **extra,
            **kafka.client_options(),
        )
    except ConfigError as error:
        # Only the cluster can tell a factor is too large, so this comes after the flags were
        # parsed; the message still names the flag, as a bad flag's does.
        raise ProduceError(f"--replication-factor: {str(error).partition(': ')[2]}", 0, config.count) from None
    except KafkaUnavailableError as error:
        raise ProduceError(str(error), 0, config.count) from None
    except KafkaError as error:
        raise ProduceError(str(connection_error(kafka, config.timeout, error)), 0, config.count) from None
    try:
        if transactional:
            # Fences an earlier attempt of this run: its open transaction is aborted (or, if it
            # was committing, completed) before this returns, so the scan below sees the truth.
            producer.init_transactions()
        scan = not created and (config.start_id is None or transactional)
        # A run's records are one transaction at the end of the log, unless others came after:
        # a longer tail finds them after a few executions more.
        tail = RUN_TAIL if transactional else 100
        highest, committed = _scan_tail(kafka, config.timeout, tail, config.run_id) if scan else (0, 0)
    except KafkaError as error:
        _close(producer, config)
        raise ProduceError(f"Kafka at {kafka.bootstrap_servers}: {describe(error)}", 0, config.count) from None
    if committed:
        _close(producer, config)
        emit(f"run {config.run_id} is already on {kafka.topic} (committed by an earlier attempt): nothing sent again")
        return config.count
    start_id = config.start_id if config.start_id is not None else highest + 1
    if transactional:
        return _send_transaction(config, producer, start_id, emit)
    outcomes = _Outcomes(start_id, config.timeout)
    interrupted: Optional[KafkaError] = None
    interval = 1.0 / config.rate if config.rate else 0.0
    next_send = time.monotonic()
    try:
        for record in generate_records(config.count, start_id, config.seed):
            if interval:
                next_send += interval
                time.sleep(max(0.0, next_send - time.monotonic()))
            outcomes.add(producer.send(kafka.topic, key=str(record["id"]).encode("utf-8"), value=encode(record)))
        producer.flush(timeout=config.timeout)
    except KafkaError as error:
        interrupted = error  # the records it kept from being sent or acknowledged are counted below
    finally:
        _close(producer, config)
    outcomes.settle()
    if outcomes.acknowledged < config.count:
        raise ProduceError(_not_acknowledged(config, outcomes, interrupted), outcomes.acknowledged, config.count)
    return outcomes.acknowledged


class _Outcomes:
    """The outcome of every record sent, counted in the order sent as the broker answers: at
    most ``window`` futures are held, and a send beyond them waits for the oldest. Counted on
    the sending thread alone; the records are those of consecutive ids from ``first_id``."""

    def __init__(self, first_id: int, timeout: float, window: int = ACK_WINDOW):
        self._pending: Deque[Any] = deque()
        self._window = window
        # The producer resolves every record within delivery_timeout_ms (the timeout):
        # acknowledged, or failed once its retries ran out.
        self._wait = timeout + 5
        self.first_id = first_id
        self.next_id = first_id  # the oldest record not counted yet
        self.acknowledged = 0
        self.missing: List[List[int]] = []  # ascending [first, last] ids of records not acknowledged
        self.failures: Counter = Counter()  # records by the kind of error that failed them
        self.examples: Dict[type, BaseException] = {}  # the first error of each kind

    def add(self, future: Any) -> None:
        pending = self._pending
        pending.append(future)
        while pending and pending[0].is_done:
            self._count(pending.popleft())
        if len(pending) > self._window:
            try:
                pending[0].get(timeout=self._wait)
            except KafkaError:
                pass  # a failed record is counted below; one still open stops the send
            if not pending[0].is_done:
                raise KafkaTimeoutError(f"a record was not answered within {self._wait:g}s")
            while pending and pending[0].is_done:
                self._count(pending.popleft())

    def settle(self) -> None:
        """Count what the broker answered since; a record still open was not acknowledged."""
        while self._pending:
            future = self._pending.popleft()
            if future.is_done:
                self._count(future)
            else:
                self._miss()

    @property
    def first_failure(self) -> Optional[BaseException]:
        return next(iter(self.examples.values()), None)

    def missing_ids(self, end: int) -> Iterator[int]:
        """The ids before ``end`` not acknowledged, ascending: those counted so, then every one
        not counted (never handed to the client)."""
        for first, last in self.missing:
            yield from range(first, last + 1)
        yield from range(self.next_id, end)

    def _count(self, future: Any) -> None:
        error = future.exception
        if error is None:
            self.acknowledged += 1
            self.next_id += 1
            return
        self.failures[type(error)] += 1
        self.examples.setdefault(type(error), error)
        self._miss()

    def _miss(self) -> None:
        if self.missing and self.missing[-1][1] == self.next_id - 1:
            self.missing[-1][1] = self.next_id
        else:
            self.missing.append([self.next_id, self.next_id])
        self.next_id += 1


def _not_acknowledged(config: ProducerConfig, outcomes: _Outcomes, interrupted: Optional[KafkaError]) -> str:
    """The one line of a send that left records unacknowledged: how many of how many, which
    ids, the commonest reason among them (a broker's refusal such as NotEnoughReplicasError, or
    a timeout) and how many were acknowledged."""
    missing = config.count - outcomes.acknowledged
    kinds = Counter(outcomes.failures)
    examples = dict(outcomes.examples)
    unexplained = missing - sum(kinds.values())  # never sent, or no answer: the interruption's
    if interrupted is not None and unexplained:
        kinds[type(interrupted)] += unexplained
        examples.setdefault(type(interrupted), interrupted)
    reason = _reason(examples[kinds.most_common(1)[0][0]]) if kinds else "no answer"
    ids = _id_ranges(outcomes.missing_ids(outcomes.first_id + config.count))
    return (
        f"{missing} of {config.count} records were not acknowledged by {config.kafka.topic} within "
        f"{config.timeout:g}s (ids {ids}; {reason}); {outcomes.acknowledged} were"
    )


def _reason(error: BaseException) -> str:
    """``describe`` for kafka-python's errors, which put ``[Error <code>]`` before their name.

    >>> from kafka.errors import NotEnoughReplicasError
    >>> _reason(NotEnoughReplicasError("NOT_ENOUGH_REPLICAS"))
    'NotEnoughReplicasError: NOT_ENOUGH_REPLICAS'
    """
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = re.sub(rf"^(\[Error -?\d+\] )?{name}(: |$)", "", text)
    return f"{name}: {text}" if text else name


def _id_ranges(ids: Iterable[int], most: int = 3) -> str:
    """Ascending ``ids`` as ranges, the first ``most`` of them.

    >>> _id_ranges([4, 5, 6, 9, 11, 12])
    '4-6, 9, 11-12'
    >>> _id_ranges([1, 3, 5, 7], most=2)
    '1, 3 and 2 ranges more'
    """
    ranges: List[List[int]] = []
    for record_id in ids:
        if ranges and record_id == ranges[-1][1] + 1:
            ranges[-1][1] = record_id
        else:
            ranges.append([record_id, record_id])
    shown = ", ".join(f"{low}-{high}" if high > low else str(low) for low, high in ranges[:most])
    return shown + (f" and {len(ranges) - most} ranges more" if len(ranges) > most else "")


def transactional_id(topic: str, run_id: str) -> str:
    """The Kafka transactional id of a run: every attempt of the run has the same one.

    >>> transactional_id("input-data", "4wjLXfN6Ds0IqcJTRmGUfd")
    'pipeline-produce.input-data.4wjLXfN6Ds0IqcJTRmGUfd'
    """
    return f"pipeline-produce.{topic}.{run_id}"


def _transaction_ms(config: ProducerConfig) -> int:
    """Long enough for the whole run, bounded by the broker's maximum. An attempt killed and
    never retried leaves its transaction open this long (read_committed readers wait for it)."""
    expected = config.count / config.rate if config.rate else 0.0
    return min(MAX_TRANSACTION_MS, max(60_000, int((expected + 2 * config.timeout) * 1000)))


def _send_transaction(
    config: ProducerConfig, producer: KafkaProducer, start_id: int, emit: Callable[[str], None]
) -> int:
    """The run's records as one transaction: all committed, or none."""
    kafka = config.kafka
    run_header = [(RUN_HEADER, str(config.run_id).encode("utf-8"))]
    interval = 1.0 / config.rate if config.rate else 0.0
    next_send = time.monotonic()
    outcomes = _Outcomes(start_id, config.timeout)
    try:
        producer.begin_transaction()
        for record in run_records(
            config.count, start_id, str(config.run_id), config.seed, config.run_start, config.rate
        ):
            if interval:
                next_send += interval
                time.sleep(max(0.0, next_send - time.monotonic()))
            outcomes.add(
                producer.send(
                    kafka.topic, key=str(record["id"]).encode("utf-8"), value=encode(record), headers=run_header
                )
            )
        producer.flush(timeout=config.timeout)
        outcomes.settle()
        if outcomes.acknowledged != config.count:
            raise outcomes.first_failure or KafkaTimeoutError("not acknowledged in time")
        producer.commit_transaction()
    except KafkaError as error:
        try:
            producer.abort_transaction()
        except KafkaError:
            pass  # the next attempt's init_transactions aborts it, or the transaction times out
        raise ProduceError(
            f"run {config.run_id}: none of {config.count} records committed to {kafka.topic} "
            f"({describe(error)}); a retry with the same run id sends them again",
            0,
            config.count,
        ) from None
    finally:
        _close(producer, config)
    emit(f"run {config.run_id}: ids {start_id}-{start_id + config.count - 1} committed in one transaction")
    return config.count


def _scan_tail(kafka: KafkaSettings, timeout: float, tail: int = 100, run_id: Optional[str] = None) -> Tuple[int, int]:
    """The highest record id among the last ``tail`` committed records of each partition, and
    how many of those carry ``run_id`` in their run header (0 without one)."""
    consumer = KafkaConsumer(
        isolation_level="read_committed",
        enable_auto_commit=False,
        request_timeout_ms=max(int(timeout * 1000), 31000),
        bootstrap_timeout_ms=int(timeout * 1000),
        client_id="pipeline-next-id",
        **kafka.client_options(),
    )
    marker = run_id.encode("utf-8") if run_id else None
    try:
        partitions = [TopicPartition(kafka.topic, p) for p in consumer.partitions_for_topic(kafka.topic) or ()]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)  # read_committed: the last stable offsets
        starts = consumer.beginning_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in remaining:
            consumer.seek(tp, max(starts[tp], ends[tp] - tail))
        highest, of_run = 0, 0
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                highest = max([highest, *(_record_id(record.value) for record in records)])
                if marker is not None:
                    of_run += sum(1 for record in records if (RUN_HEADER, marker) in (record.headers or []))
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        if remaining:
            # A partial scan could miss the highest id and reuse it: better to stop and say so.
            raise KafkaUnavailableError(
                f"could not read the end of {kafka.topic} on {kafka.bootstrap_servers} within {timeout:g}s "
                "to find the next id; give --start-id, or a longer --timeout"
            )
        return highest, of_run
    finally:
        consumer.close()


def _record_id(payload: Optional[bytes]) -> int:
    try:
        record_id = json.loads(payload) if payload else None
        record_id = record_id.get("id") if isinstance(record_id, dict) else None
    except ValueError:
        return 0
    return record_id if isinstance(record_id, int) and not isinstance(record_id, bool) else 0
